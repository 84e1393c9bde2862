"""Exact resume of the data stream: stopped mid-epoch and resumed, it continues the very same stream."""

import itertools

import numpy as np
import pytest
from torch.utils.data import DataLoader

from osum.data.batching import BatchLimits
from osum.data.mixture import TaskMixture
from osum.data.plan import ALL, resume_plan
from osum.data.processing import Filters, SampleProcessor
from osum.data.shardlist import resolve_shards
from osum.data.shards import ShardWriter
from osum.data.stream import ShardStream
from osum.tasks import TaskRegistry
from osum.template import SequenceBuilder

LABELS = {"gender": "MALE", "age": "ADULT", "emotion": "NEUTRAL", "style": "NEWS", "events": []}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(0)
    with ShardWriter(out, max_samples=7) as w:  # uneven: 7, 7, 7, 7, 2
        for i in range(30):
            n = int(16000 * rng.uniform(0.3, 1.5))
            audio = (0.3 * np.sin(np.arange(n) / 16000 * 2 * np.pi * 200)).astype(np.float32)
            w.write(f"u{i:03d}", audio, 16000, {"txt": " ".join(["one", "two", "three"][: 1 + i % 3]),
                                                "labels": dict(LABELS)})
    return resolve_shards(str(out))


def make_stream(shards, tokenizer, plan=None, buffer_size=5):
    registry = TaskRegistry.from_config()
    mixture = TaskMixture(registry, {"<TRANSCRIBE>": 1.0, "<TRANSCRIBE> <GENDER>": 1.0})
    processor = SampleProcessor(SequenceBuilder(tokenizer), registry, mixture, Filters(),
                                spec_aug={"num_time_masks": 1, "max_time": 10, "num_freq_masks": 1, "max_freq": 5})
    return ShardStream(shards, processor, BatchLimits(max_tokens=10_000, max_frames=100_000, max_samples=3,
                                                      buffer_size=buffer_size), pad_id=0, seed=3, resume=plan)


class Trainer:
    """What LoaderResume does in a real run: remember the state of each consumed batch's reader."""

    def __init__(self, workers):
        self.workers, self.states, self.last = workers, {}, None

    def consume(self, loader, n):
        out = []
        for batch in itertools.islice(loader, n):
            info = batch["loader_state"]
            self.states[str(info["role"])] = info["state"]
            self.last = info["role"]
            out.append((tuple(batch["keys"]), batch["mel"].sum().item(), batch["input_ids"].sum().item()))
        return out

    def saved(self):
        return [{"rank": 0, "world": 1, "workers": self.workers, "next_role": (self.last + 1) % self.workers,
                 "states": self.states}]


@pytest.mark.parametrize("stop_at", [3, 8])
def test_two_worker_loader_resumes_the_same_stream(shards, tokenizer, stop_at):
    loader = lambda s: DataLoader(s, batch_size=None, num_workers=2)  # noqa: E731
    reference = Trainer(2).consume(loader(make_stream(shards, tokenizer)), 24)
    first = Trainer(2)
    got = first.consume(loader(make_stream(shards, tokenizer)), stop_at)
    plan = resume_plan(first.saved(), 0, 1, 2, shards, 3, True)
    assert plan.exact is not None
    got += Trainer(2).consume(loader(make_stream(shards, tokenizer, plan)), 24 - stop_at)
    assert [g[0] for g in got] == [r[0] for r in reference]  # same keys in the same batches, none twice
    assert got == reference  # and the same features (SpecAugment) and token ids
    seen = [k for keys, _, _ in reference for k in keys]
    assert len(set(seen[:30])) >= 25  # it is a real stream over epochs, not a repeated batch


def test_other_world_size_restarts_epoch_without_finished_shards(shards, tokenizer):
    first = Trainer(2)
    first.consume(DataLoader(make_stream(shards, tokenizer), batch_size=None, num_workers=2), 12)
    plan = resume_plan(first.saved(), 0, 1, 1, shards, 3, True)
    assert plan.exact is None and "restarting stream epoch" in plan.note
    assert plan.restart[ALL].finished and plan.restart[ALL].finished < set(shards)
    batches = Trainer(1).consume(make_stream(shards, tokenizer, plan), 6)
    first_shards = {k for keys, _, _ in batches for k in keys}
    assert first_shards  # continues


def test_output_type_per_batch_is_keyed_by_batch_index(tmp_path, tokenizer):
    """Two output types: every batch is homogeneous and its type is the seeded draw for its index."""
    from osum.data.shards import ShardWriter
    from osum.tasks import Task

    with ShardWriter(tmp_path, max_samples=8) as w:
        for i in range(24):
            audio = (0.3 * np.sin(np.arange(8000 + 400 * i) / 16000 * 2 * np.pi * 200)).astype(np.float32)
            w.write(f"u{i:03d}", audio, 16000, {"txt": "one two", "answer": "three", "labels": dict(LABELS)})
    tasks = [Task.from_tag("ASR", "<TRANSCRIBE>"), Task.from_tag("chat", "<S2TCHAT>", output_type="s2t_chat")]
    registry = TaskRegistry(tasks, {"<TRANSCRIBE>": ["Transcribe."], "<S2TCHAT>": ["Answer."]},
                            TaskRegistry.from_config().rendering)
    mixture = TaskMixture(registry, {"<TRANSCRIBE>": 1.0, "<S2TCHAT>": 1.0})
    processor = SampleProcessor(SequenceBuilder(tokenizer), registry, mixture, Filters())
    weights = {"text": 0.5, "s2t_chat": 0.5}
    for workers in (0, 2):
        stream = ShardStream(resolve_shards(str(tmp_path)), processor, BatchLimits(max_samples=3, buffer_size=6),
                             pad_id=0, seed=5, group_weights=weights)
        loader = DataLoader(stream, batch_size=None, num_workers=workers)
        batches = list(itertools.islice(loader, 16))
        assert [b["output_type"] for b in batches] == [stream.group_of(i) for i in range(16)]
        assert {b["output_type"] for b in batches} == {"text", "s2t_chat"}
        for b in batches:
            assert {registry.get(t).output_type for t in b["tasks"]} == {b["output_type"]}


def test_resume_when_the_buffer_spans_several_epochs(shards, tokenizer):
    """A sort buffer larger than the data holds the same samples from several stream epochs."""
    def stream(plan=None):
        return make_stream(shards, tokenizer, plan, buffer_size=70)

    reference = Trainer(1).consume(stream(), 30)
    first = Trainer(1)
    got = first.consume(stream(), 12)
    got += Trainer(1).consume(stream(resume_plan(first.saved(), 0, 1, 1, shards, 3, True)), 18)
    assert got == reference


def test_task_groups_keep_tag_tasks_in_their_own_batches(tmp_path, tokenizer):
    """X-only tasks grouped as `tags`: no batch mixes them with transcripts; the draw picks groups."""
    from osum.data.mixture import group_of_task
    from osum.data.shards import ShardWriter

    with ShardWriter(tmp_path, max_samples=8) as w:
        for i in range(24):
            audio = (0.3 * np.sin(np.arange(8000 + 400 * i) / 16000 * 2 * np.pi * 200)).astype(np.float32)
            w.write(f"u{i:03d}", audio, 16000, {"txt": "one two", "labels": dict(LABELS)})
    registry = TaskRegistry.from_config()
    groups = group_of_task(registry, {"tags": ["<GENDER>", "<AGE>"]})
    mixture = TaskMixture(registry, {"<TRANSCRIBE>": 1.0, "<GENDER>": 1.0, "<AGE>": 1.0})
    processor = SampleProcessor(SequenceBuilder(tokenizer), registry, mixture, Filters(), task_groups=groups)
    stream = ShardStream(resolve_shards(str(tmp_path)), processor, BatchLimits(max_samples=3, buffer_size=6),
                         pad_id=0, seed=3, group_weights={"text": 0.5, "tags": 0.5})
    batches = list(itertools.islice(iter(stream), 12))
    kinds = [{"tags" if t in groups else "text" for t in b["tasks"]} for b in batches]
    assert all(len(k) == 1 for k in kinds)
    assert [k.pop() for k in kinds] == [stream.group_of(i) for i in range(12)]
    with pytest.raises(ValueError, match="in both"):
        group_of_task(registry, {"a": ["<GENDER>"], "b": ["<GENDER>"]})
    with pytest.raises(ValueError, match="task_groups.a"):
        group_of_task(registry, {"a": ["<NOPE>"]})


def test_a_state_saved_before_sub_streams_resumes_the_same_stream(shards, tokenizer):
    """Checkpoints written before batch groups became sub-streams hold one reader's fields per worker."""
    reference = Trainer(1).consume(make_stream(shards, tokenizer), 10)
    first = Trainer(1)
    got = first.consume(make_stream(shards, tokenizer), 4)
    [saved] = first.saved()
    for role, state in saved["states"].items():
        saved["states"][role] = {**state.pop("streams")[ALL], **state}  # the old layout: no "streams"
    got += Trainer(1).consume(make_stream(shards, tokenizer, resume_plan([saved], 0, 1, 1, shards, 3, True)), 6)
    assert got == reference
