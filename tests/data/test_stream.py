"""The data path: real shards stream into batches; every kind of bad sample is skipped and counted."""

import io
import json
import random
import tarfile

import numpy as np
import pytest
import soundfile as sf
import torch

from osum.data.batching import BatchLimits
from osum.data.features import apply_spec_masks, log_mel, log_mel_batch
from osum.data.mixture import TaskMixture
from osum.data.plan import shards_for
from osum.data.processing import Filters, SampleProcessor
from osum.data.reader import read_shard
from osum.data.shardlist import resolve_shards
from osum.data.shards import ShardWriter
from osum.data.skips import SkipCounter
from osum.data.stream import ShardStream
from osum.tasks import TaskRegistry
from osum.template import SequenceBuilder

LABELS = {"gender": "MALE", "age": "ADULT", "emotion": "NEUTRAL", "style": "NEWS", "events": []}


def tone(seconds=1.0, freq=220.0):
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def good_meta(i):
    return {"txt": f"one two {['three', 'four'][i % 2]}", "labels": dict(LABELS), "domain": "digits"}


def flac(audio, sr=16000, fmt="FLAC"):
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format=fmt)
    return buf.getvalue()


def add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def processor(tokenizer, tasks=None):
    registry = TaskRegistry.from_config()
    mixture = TaskMixture(registry, tasks or {"<TRANSCRIBE>": 1.0, "<TRANSCRIBE> <GENDER>": 1.0})
    return SampleProcessor(SequenceBuilder(tokenizer), registry, mixture, Filters(max_seconds=5.0))


@pytest.fixture(scope="module")
def bad_shard(tmp_path_factory):
    """One shard with one good sample and one sample of every bad kind."""
    path = tmp_path_factory.mktemp("bad") / "bad.tar"
    nan = tone()
    nan[100] = np.nan
    cases = {
        "good": (flac(tone()), good_meta(0)),
        "undecodable": (b"not audio at all", good_meta(1)),
        "empty": (flac(np.zeros(0, np.float32), fmt="WAV"), good_meta(2)),
        "silent": (flac(np.zeros(16000, np.float32)), good_meta(3)),
        "nan": (None, good_meta(4)),
        "lowrate": (flac(tone(), sr=4000), good_meta(5)),
        "toolong": (flac(tone(6.0)), good_meta(6)),
        "emptytxt": (flac(tone()), {**good_meta(7), "txt": "  "}),
        "unknowntask": (flac(tone()), {**good_meta(8), "task": "<DANCE>"}),
        "unknownlabel": (flac(tone()), {**good_meta(9), "labels": {**LABELS, "gender": "ROBOT"}}),
        "noaudio": (None, good_meta(10)),
    }
    with tarfile.open(path, "w") as tar:
        for key, (audio, meta) in cases.items():
            if key == "nan":
                buf = io.BytesIO()
                sf.write(buf, nan, 16000, format="WAV", subtype="FLOAT")
                add(tar, f"{key}.wav", buf.getvalue())
            elif audio is not None:
                add(tar, f"{key}.{'wav' if key == 'empty' else 'flac'}", audio)
            add(tar, f"{key}.json", json.dumps(meta).encode())
        add(tar, "malformed.flac", flac(tone()))
        add(tar, "malformed.json", b"{not json")
        add(tar, "nojson.flac", flac(tone()))
    return str(path)


EXPECTED = {"undecodable_audio": 1, "empty_audio": 1, "silent_audio": 1, "nonfinite_audio": 1, "bad_sample_rate": 1,
            "too_long": 1, "unknown_task": 1, "unknown_label": 1, "missing_audio": 1, "malformed_json": 1,
            "missing_json": 1}


def test_each_bad_kind_skipped_with_reason_and_count(bad_shard, tokenizer, caplog):
    stream = ShardStream([bad_shard], processor(tokenizer, {"<TRANSCRIBE>": 1.0}), BatchLimits(), pad_id=0,
                         infinite=False)
    with caplog.at_level("WARNING", logger="osum.data"):
        batches = list(stream)
    keys = [k for b in batches for k in b["keys"]]
    assert keys == ["good"]
    skipped: dict = {}
    for b in batches:
        for r, n in b["skips"].items():
            skipped[r] = skipped.get(r, 0) + n
    # empty transcript: no task of the mixture can be served
    assert skipped == {**EXPECTED, "no_servable_task": 1}
    assert "bad.tar:undecodable" in caplog.text and "(undecodable_audio)" in caplog.text


def test_truncated_tar_keeps_what_came_before(tmp_path, tokenizer):
    with ShardWriter(tmp_path / "ok", max_samples=100) as w:
        for i in range(6):
            w.write(f"u{i}", tone(1.0 + 0.1 * i), 16000, good_meta(i))
    data = (tmp_path / "ok" / "shard-000000.tar").read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) * 2 // 3])
    skips = SkipCounter()
    got = [s.key for s in read_shard(str(cut), skips)]
    assert 1 <= len(got) < 6 and got == [f"u{i}" for i in range(len(got))]
    assert skips.counts["truncated_or_corrupt_tar"] == 1


def test_missing_shards_fail_at_start_with_list(tmp_path):
    (tmp_path / "a.tar").write_bytes(b"")
    listing = tmp_path / "list.txt"
    listing.write_text("a.tar\nmissing1.tar\nmissing2.tar\n")
    with pytest.raises(FileNotFoundError, match=r"2 of 3 shard\(s\) missing.*missing1.tar.*missing2.tar"):
        resolve_shards(str(listing))


def test_shard_split_covers_all_once_per_epoch():
    shards = [f"s{i}" for i in range(10)]
    for epoch in range(3):
        got = [s for c in range(4) for s in shards_for(shards, epoch, 7, True, c, 4, cycle=True)]
        assert sorted(got) == shards
    assert shards_for(shards, 0, 7, True, 0, 4, True) != shards_for(shards, 1, 7, True, 0, 4, True)
    assert shards_for(["a", "b"], 0, 0, False, 3, 4, cycle=True) == ["b"]  # fewer shards than readers


def test_batches_respect_budget_and_are_right_padded(tmp_path, tokenizer):
    rng = random.Random(0)
    with ShardWriter(tmp_path, max_samples=100) as w:
        for i in range(40):
            w.write(f"u{i:03d}", tone(rng.uniform(0.5, 3.0)), 16000, good_meta(i))
    limits = BatchLimits(max_tokens=1500, max_frames=2000, max_samples=8, buffer_size=16)
    stream = ShardStream(resolve_shards(str(tmp_path)), processor(tokenizer), limits, pad_id=0, infinite=False)
    batches = list(stream)
    assert sorted(k for b in batches for k in b["keys"]) == [f"u{i:03d}" for i in range(40)]
    for b in batches:
        n, width = b["input_ids"].shape
        assert n <= 8 and n * width <= 1500 and n * b["mel"].shape[1] <= 2000
        for i in range(n):
            real = int((b["text_targets"][i] != -100).nonzero().max()) + 1  # last supervised position = end of sample
            assert (b["text_targets"][i, real:] == -100).all()
        assert b["mel_lengths"].max() == b["mel"].shape[1]


def test_log_mel_matches_whisper_feature_extractor():
    from transformers import WhisperFeatureExtractor

    audio = tone(2.0, 330.0) + 0.01 * np.random.default_rng(0).standard_normal(32000).astype(np.float32)
    ref = WhisperFeatureExtractor(feature_size=80)(audio, sampling_rate=16000, return_tensors="pt").input_features[0]
    ours = log_mel(audio)
    assert ours.shape == (200, 80)
    # the extractor pads to 30 s, which changes the clamp-at-max-minus-8 floor only where values are tiny
    # the last frame differs by construction: its window reaches past the real end (reflection vs zero padding)
    torch.testing.assert_close(ours[:199], ref[:, :199].T, atol=2e-3, rtol=1e-3)


def test_over_long_audio_is_cropped_only_for_utterance_labels(tmp_path, tokenizer):
    """Over filters.max_seconds: a gender task keeps the first 5 s (counted as a crop), ASR skips."""
    with ShardWriter(tmp_path, max_samples=100) as w:
        for i in range(2):
            w.write(f"long{i}", tone(7.0), 16000, good_meta(i))
        w.write("short", tone(1.0), 16000, good_meta(2))  # its batch carries the counts of the long ones
    for tasks, kept in (({"<GENDER>": 1.0}, 3), ({"<TRANSCRIBE>": 1.0}, 1)):
        stream = ShardStream(resolve_shards(str(tmp_path)), processor(tokenizer, tasks), BatchLimits(), pad_id=0,
                             infinite=False)
        counts = SkipCounter()
        batches = list(stream)
        for b in batches:
            counts.merge(b["skips"])
        assert sum(len(b["keys"]) for b in batches) == kept
        if kept == 3:
            assert sorted(int(n) for b in batches for n in b["mel_lengths"]) == [100, 500, 500]  # 100 frames/s
            assert counts.counts == {"cropped_too_long": 2} and counts.total == 0
            assert "2 samples cropped too long" in counts.summary()
        else:
            assert counts.counts == {"too_long": 2} and counts.total == 2


def test_model_side_features_ship_waveforms_with_the_same_masks(tmp_path, tokenizer):
    with ShardWriter(tmp_path, max_samples=100) as w:
        for i in range(6):
            w.write(f"u{i}", tone(0.5 + 0.3 * i), 16000, good_meta(i))
    spec = {"num_time_masks": 2, "max_time": 50, "num_freq_masks": 2, "max_freq": 10}
    batches = {}
    for where in ("loader", "model"):
        proc = processor(tokenizer)
        proc.spec_aug, proc.features = spec, where
        limits = BatchLimits(max_tokens=4000, max_frames=4000, max_samples=6, buffer_size=6, frame_groups=1)
        [batches[where]] = list(ShardStream(resolve_shards(str(tmp_path)), proc, limits, pad_id=0, infinite=False))
    loader, model = batches["loader"], batches["model"]
    assert model["mel"] is None and loader.get("audio") is None
    assert model["keys"] == loader["keys"] and torch.equal(model["input_ids"], loader["input_ids"])
    assert torch.equal(model["mel_lengths"], loader["mel_lengths"])
    mel, frames = log_mel_batch(model["audio"], model["audio_lengths"])
    torch.testing.assert_close(apply_spec_masks(mel, model["spec_masks"]), loader["mel"], atol=1e-6, rtol=1e-6)


def test_ctc_ids_only_where_the_transcript_is_the_target(tokenizer):
    from osum.data.reader import RawSample

    registry = TaskRegistry.from_config()
    raw = RawSample("k", "s.tar", audio=flac(tone()), meta=good_meta(0))
    got = {}
    for task in ("<TRANSCRIBE> <GENDER>", "<GENDER>"):
        proc = SampleProcessor(SequenceBuilder(tokenizer), registry, TaskMixture(registry, {task: 1.0}),
                               Filters(max_seconds=5.0), ctc_targets=True)
        got[task] = proc(raw, random.Random(0)).clips[-1].ctc_ids
    assert got["<TRANSCRIBE> <GENDER>"] and got["<GENDER>"] is None
