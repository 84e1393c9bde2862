"""Batch groups as sub-streams: a large set at a small group weight beside a small set at a large one.

The stream stops and resumes into the identical key sequence, and what it holds (pending batches and
buffered examples, read from the loader state every batch carries) stays within one sort buffer per
sub-stream, whatever the weights.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from osum.data.index import build_index, write_index
from osum.data.shards import ShardWriter

LABELS = {"gender": "MALE", "age": "ADULT", "emotion": "NEUTRAL", "style": "NEWS", "events": []}
BUFFER = 6


def write_set(out, prefix, n, meta, per_shard):
    with ShardWriter(out, prefix=prefix, max_samples=per_shard) as w:
        for i in range(n):
            audio = (0.3 * np.sin(np.arange(4000 + 160 * (i % 11)) / 16000 * 2 * np.pi * 200)).astype(np.float32)
            w.write(f"{prefix}{i:03d}", audio, 16000, {**meta, "labels": dict(LABELS)})
    write_index(out, build_index(w.stats))


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("groups")
    write_set(root / "big", "big", 120, {"txt": "one two three"}, per_shard=10)  # 12 shards
    write_set(root / "small", "small", 8, {"txt": "four", "answer": "five"}, per_shard=4)  # 2 shards
    return [{"name": "big", "path": str(root / "big"), "tasks": {"<TRANSCRIBE>": 1.0}},
            {"name": "small", "path": str(root / "small"), "tasks": {"<S2TCHAT>": 1.0}}]


def datamodule(sets, tokenizer_dir, saved=None):
    from osum.data.datamodule import SpeechDataModule

    dm = SpeechDataModule(train=sets, valid=None, tokenizer=tokenizer_dir, tasks={"<TRANSCRIBE>": 1.0},
                          template={"layout": "osum", "eos_token": "<|endoftext|>"}, rendering={}, filters={},
                          batch={"max_samples": 2, "buffer_size": BUFFER, "frame_groups": 1}, num_workers=2,
                          spec_augment={"num_time_masks": 1, "max_time": 5, "num_freq_masks": 1, "max_freq": 5},
                          task_groups={"chat": ["<S2TCHAT>"]}, batch_groups={"text": 0.15, "chat": 5.0}, seed=6)
    if saved:
        dm.resume_from(saved)
    return dm


class Run:
    """What LoaderResume keeps in a real run, plus what each worker holds after each batch."""

    def __init__(self):
        self.states, self.last, self.max_pending, self.max_buffered = {}, None, 0, 0

    def consume(self, dm, n):
        out = []
        for batch in itertools.islice(dm.train_dataloader(), n):
            info = batch["loader_state"]
            self.states[str(info["role"])], self.last = info["state"], info["role"]
            for sub in info["state"]["streams"].values():
                held = sub["batcher"]
                self.max_pending = max(self.max_pending, len(held["pending"]))
                self.max_buffered = max(self.max_buffered, sum(map(len, held["buffers"].values()))
                                        + sum(map(len, held["pending"])))
            out.append((batch["group"], tuple(batch["keys"]), round(float(batch["mel"].sum()), 3)))
        return out

    def saved(self):
        return [{"rank": 0, "world": 1, "workers": 2, "next_role": (self.last + 1) % 2, "states": self.states}]


def test_two_groups_of_very_different_weights_resume_exactly_with_bounded_buffers(sets, tokenizer_dir):
    reference_run = Run()
    reference = reference_run.consume(datamodule(sets, tokenizer_dir), 60)
    first = Run()
    got = first.consume(datamodule(sets, tokenizer_dir), 15)
    second = Run()
    got += second.consume(datamodule(sets, tokenizer_dir, first.saved()), 45)
    assert [g[1] for g in got] == [r[1] for r in reference]  # the same keys in the same batches
    assert got == reference  # and the same features (SpecAugment)
    groups = [g for g, _, _ in reference]
    assert set(groups) == {"text", "chat"} and groups.count("text") == 5
    assert all(k.startswith("small") == (g == "chat") for g, keys, _ in reference for k in keys)
    pending = max(r.max_pending for r in (reference_run, first, second))
    buffered = max(r.max_buffered for r in (reference_run, first, second))
    print(f"two batch groups (text 0.15 over 120 samples, chat 5 over 8), 2 workers, 60 batches, sort buffer "
          f"{BUFFER}: at most {pending} pending batches and {buffered} buffered examples in one sub-stream")
    assert pending <= BUFFER and buffered <= BUFFER  # one buffer's worth per sub-stream, whatever the weights


def test_batch_and_filter_groups_are_checked_at_start(sets, tokenizer_dir):
    from osum.data.datamodule import SpeechDataModule

    def make(**kw):
        args = dict(train=sets, valid=None, tokenizer=tokenizer_dir, tasks={"<TRANSCRIBE>": 1.0},
                    template={"layout": "osum", "eos_token": "<|endoftext|>"}, rendering={}, filters={},
                    batch={}, num_workers=0, task_groups={"chat": ["<S2TCHAT>"]})
        return SpeechDataModule(**{**args, **kw})

    with pytest.raises(ValueError, match="'s2t_chat'.*neither output types"):
        make(batch_groups={"text": 1.0, "s2t_chat": 1.0})
    with pytest.raises(ValueError, match="never be trained"):
        make(batch_groups={"text": 1.0})
    with pytest.raises(ValueError, match=r"data.filters.groups: \['speech2txt'\] are neither output types"):
        make(filters={"groups": {"speech2txt": {"max_target_tokens": 1500}}})
    text = make(batch_groups={"text": 1.0, "chat": 3.0}).describe_mixture()
    assert "group chat: 75.0% of batches" in text and "<S2TCHAT>: 75.0%" in text
