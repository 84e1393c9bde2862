"""Length buckets: bounds from the shard index, grouping by those bounds, the buffer fallback; batch groups
mixed in the batch stream."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import torch

from osum.data.batching import Batcher, BatchLimits, batch_fits, cut_batches, frame_buckets
from osum.data.clips import Clip
from osum.data.index import build_index, duration_bounds, entries_for, new_shard_stats, write_index
from osum.data.processing import Example


def example(key: str, frames: int | list[int], length: int) -> Example:
    """An example with one clip per entry of ``frames`` (none for an empty list: text only)."""
    clips = [Clip(f"{key}.wav_{i}", n, n / 100, mel=torch.zeros(n, 80)) for i, n in enumerate(
        [frames] if isinstance(frames, int) else frames)]
    return Example(key, "s.tar", "<TRANSCRIBE>", "text", [1] * length, [1] * length, [-100] * length, clips,
                   sum(c.seconds for c in clips))


def index_with(durations_per_shard: list[list[float]]) -> dict:
    stats = []
    for i, durations in enumerate(durations_per_shard):
        s = new_shard_stats(f"shard-{i:06d}.tar")
        s["samples"], s["seconds"], s["durations"] = len(durations), sum(durations), list(durations)
        stats.append(s)
    return build_index(stats)


def test_bounds_split_the_index_into_equal_count_buckets():
    index = index_with([[1.5] * 30, [1.5] * 20 + [12.0] * 50])  # 50 in [1, 2) s, 50 in [10, 15) s
    assert duration_bounds(index["shards"], 2) == [2.0]  # the median falls at the top of the [1, 2) bin
    four = duration_bounds(index["shards"], 4)
    assert four[0] == pytest.approx(1.5) and four[1] == pytest.approx(2.0) and four[2] == pytest.approx(12.5)


def test_entries_for_needs_an_index_entry_for_every_shard(tmp_path: Path):
    write_index(tmp_path, index_with([[1.0], [2.0]]))
    for name in ("shard-000000.tar", "shard-000001.tar", "stray.tar"):
        (tmp_path / name).write_bytes(b"")
    entries = entries_for([str(tmp_path / "shard-000001.tar")])
    assert entries is not None and [e["path"] for e in entries] == ["shard-000001.tar"]
    assert entries_for([str(tmp_path / "shard-000000.tar"), str(tmp_path / "stray.tar")]) is None


def test_fixed_bounds_group_by_frames_then_batches_sort_by_llm_length():
    examples = [example(f"a{i}", 150, 40 + i) for i in range(6)] + [example(f"b{i}", 1200, 20) for i in range(6)]
    limits = BatchLimits(max_tokens=10_000, max_frames=100_000, max_samples=4, frame_bounds=(200,))
    groups = frame_buckets(examples, limits)
    assert [sorted(e.key[0] for e in g) for g in groups] == [["a"] * 6, ["b"] * 6]
    for batch in cut_batches(examples, limits):
        assert len({e.key[0] for e in batch}) == 1  # short and long audio never share a batch
        assert len(batch) <= 4


def test_without_bounds_each_buffer_splits_into_equal_groups():
    examples = [example(f"u{i}", 100 + 10 * i, 30) for i in range(9)]
    groups = frame_buckets(examples, BatchLimits(frame_groups=3, buckets="buffer"))
    assert [len(g) for g in groups] == [3, 3, 3]
    assert [e.frames for e in groups[0]] == [100, 110, 120]


def test_unknown_bucket_mode_names_the_key():
    with pytest.raises(ValueError, match="data.batch.buckets"):
        BatchLimits(buckets="sorted")


def test_frame_cost_counts_every_clip():
    """The encoder cost of a batch is its longest clip times its clips: a 3-clip example counts 3 clips."""
    limits = BatchLimits(max_tokens=10_000, max_frames=1000, max_samples=8)
    three = example("dialogue", [100, 200, 300], 40)
    assert three.frames == 600 and three.longest_clip == 300
    assert batch_fits([example("a", 300, 40)], example("b", 300, 40), limits)  # 2 clips x 300 frames
    assert not batch_fits([three], example("b", 300, 40), limits)  # 4 clips x 300 frames > 1000
    text_only = example("t2t", [], 40)
    assert text_only.frames == 0 and text_only.longest_clip == 0
    assert batch_fits([example("a", 300, 40)] * 3, text_only, limits)  # costs no frames


def test_batch_groups_are_mixed_in_the_batch_stream():
    """Examples of three batch groups arrive mixed (as a task mixture brings them); the batches must come out
    mixed too, not one group's batches in a run (each group cut when its own buffer was full gave runs as long
    as a buffer: in a dialogue run, ~100 steps of one output type, then ~100 of the next)."""
    groups = ["s2t_chat_think", "s2t_chat_history", "speech2text_token_history"]
    rng = random.Random(0)
    batcher = Batcher(BatchLimits(max_samples=2, buffer_size=60, frame_groups=1), random.Random(1))
    out = []
    for i in range(600):
        ex = example(f"k{i}", 100, 10 + i % 7)
        ex.group = rng.choice(groups)
        batcher.add(ex)
        while (batch := batcher.take()) is not None:
            assert len({e.group for e in batch}) == 1  # a batch stays homogeneous
            out.append(batch[0].group)
    assert len(out) >= 250
    longest_run = max(len(list(run)) for _, run in itertools.groupby(out))
    assert longest_run <= 10, out[:60]  # a shuffled mix; a run of a whole buffer was 30
    for start in range(0, len(out) - 30, 30):  # every buffer's worth of batches holds every group
        assert set(out[start : start + 30]) == set(groups)
