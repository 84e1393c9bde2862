"""Shard sets with weights and temperature, per-set task mixtures, and the printed shares."""

from collections import Counter

import numpy as np
import pytest

from osum.data.index import build_index, write_index
from osum.data.shards import ShardWriter
from osum.data.sources import ShardSet, epoch_shards, parse_sets, shares, slot_counts

LABELS = {"gender": "FEMALE", "age": "ADULT", "emotion": "HAPPY", "style": "NEWS", "events": []}


def test_weights_and_temperature_set_the_shares():
    a = ShardSet("a", [f"a{i}" for i in range(10)], weight=1.0)
    b = ShardSet("b", [f"b{i}" for i in range(10)], weight=3.0)
    assert slot_counts([a, b]) == pytest.approx([5.0, 15.0])
    assert shares([a, b]) == pytest.approx({"a": 0.25, "b": 0.75})
    counts = Counter(s[0] for e in range(200) for s in epoch_shards([a, b], e, seed=0))
    assert counts["b"] / (counts["a"] + counts["b"]) == pytest.approx(0.75, abs=0.01)
    small = ShardSet("small", ["s0"], weight=1.0)
    big = ShardSet("big", [f"x{i}" for i in range(99)], weight=1.0)
    assert shares([small, big])["small"] == pytest.approx(0.01)
    assert shares([small, big], temperature=1e6)["small"] == pytest.approx(0.5, abs=0.01)  # flattened


def test_fractional_weights_see_different_shards_each_epoch():
    a = ShardSet("a", [f"a{i}" for i in range(20)], weight=0.1)
    b = ShardSet("b", [f"b{i}" for i in range(20)], weight=1.9)
    picks = [frozenset(s for s in epoch_shards([a, b], e, seed=1) if s.startswith("a")) for e in range(10)]
    assert all(len(p) in (1, 2, 3) for p in picks) and len(set(picks)) > 3
    assert epoch_shards([a, b], 4, seed=1) == epoch_shards([a, b], 4, seed=1)  # identical on every rank


def test_parse_sets_and_bad_entries(tmp_path):
    with ShardWriter(tmp_path / "s", max_samples=2) as w:
        for i in range(3):
            w.write(f"k{i}", np.zeros(1600, np.float32) + 0.1, 16000, {"txt": "one", "labels": LABELS})
    write_index(tmp_path / "s", build_index(w.stats))
    [one] = parse_sets(str(tmp_path / "s"))
    assert one.name == "train" and len(one.shards) == 2 and one.hours > 0
    sets = parse_sets([{"name": "x", "path": str(tmp_path / "s"), "weight": 2, "tasks": {"<GENDER>": 1}}])
    assert sets[0].weight == 2.0 and sets[0].tasks == {"<GENDER>": 1}
    with pytest.raises(ValueError, match=r"data.train\[0\]: expected keys"):
        parse_sets([{"name": "x", "paht": "y"}])


def test_per_set_task_mixture_in_the_stream(tmp_path, tokenizer_dir):
    from osum.data.datamodule import SpeechDataModule

    for name in ("asr", "ser"):
        with ShardWriter(tmp_path / name, max_samples=50) as w:
            for i in range(6):
                audio = (0.3 * np.sin(np.arange(12000) / 16000 * 2 * np.pi * 200)).astype(np.float32)
                w.write(f"{name}{i}", audio, 16000, {"txt": "one two", "labels": LABELS})
        write_index(tmp_path / name, build_index(w.stats))
    dm = SpeechDataModule(
        train=[{"name": "asr", "path": str(tmp_path / "asr"), "weight": 1.0},
               {"name": "ser", "path": str(tmp_path / "ser"), "weight": 1.0, "tasks": {"<EMOTION>": 1.0}}],
        valid=None, tokenizer=tokenizer_dir, tasks={"<TRANSCRIBE>": 1.0},
        template={"layout": "osum", "eos_token": "<|endoftext|>"}, rendering={},
        filters={}, batch={"max_samples": 4, "buffer_size": 4}, num_workers=0)
    text = dm.describe_mixture()
    assert "set asr: 50.0%" in text and "set ser: 50.0%" in text and "<EMOTION>: 50.0%" in text
    seen = {}
    for batch in dm.train_dataloader():
        for key, task in zip(batch["keys"], batch["tasks"]):
            seen[key] = task
        if len(seen) >= 12:
            break
    assert {t for k, t in seen.items() if k.startswith("ser")} == {"<EMOTION>"}
    assert {t for k, t in seen.items() if k.startswith("asr")} == {"<TRANSCRIBE>"}


def test_printed_shares_follow_field_availability(tmp_path, tokenizer_dir):
    """<S2TCHAT> needs `answer`: with 2 samples of 10 holding one, it serves 10%, not its weight's 50%."""
    from osum.data.datamodule import SpeechDataModule

    with ShardWriter(tmp_path / "s", max_samples=5) as w:
        for i in range(10):
            meta = {"txt": "one two", "labels": LABELS, **({"answer": "three"} if i < 2 else {})}
            w.write(f"k{i}", np.zeros(1600, np.float32) + 0.1, 16000, meta)
    write_index(tmp_path / "s", build_index(w.stats))

    def describe():
        return SpeechDataModule(
            train=str(tmp_path / "s"), valid=None, tokenizer=tokenizer_dir,
            tasks={"<TRANSCRIBE>": 1.0, "<TRANSCRIBE> <S2TCHAT>": 1.0},
            template={"layout": "osum", "eos_token": "<|endoftext|>"}, rendering={}, filters={}, batch={},
            num_workers=0).describe_mixture()

    text = describe()
    assert "<TRANSCRIBE> <S2TCHAT>: 10.0%" in text and "<TRANSCRIBE>: 90.0%" in text and "no field counts" not in text
    index = (tmp_path / "s" / "index.json").read_text()
    (tmp_path / "s" / "index.json").write_text(index.replace('"field_sets"', '"old_field_sets"'))  # an older index
    text = describe()
    assert "<TRANSCRIBE> <S2TCHAT>: 50.0%" in text and "no field counts in its index" in text
