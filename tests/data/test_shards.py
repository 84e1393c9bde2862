"""ShardWriter (tar layout, atomic rename, determinism) and the shard-set index."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from osum.data.audio import decode_audio, pcm16_wav
from osum.data.index import build_index, index_from_shards, read_index, summary, write_index
from osum.data.reader import read_shard
from osum.data.shards import ShardWriter, audio_bytes
from osum.data.skips import SkipCounter


def _tone(seconds: float, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _write_samples(out_dir: Path, max_samples: int = 1000) -> ShardWriter:
    with ShardWriter(out_dir, max_samples=max_samples) as writer:
        writer.write("utt_a", _tone(1.5), 16000, {"txt": "héllo", "task": "<TRANSCRIBE>", "domain": "digits",
                                                  "labels": {"gender": "MALE", "events": ["BELL", "COUGH"]}})
        writer.write("utt_b", _tone(2.5, 22050), 22050, {"txt": "b", "labels": {"gender": "FEMALE", "events": []}})
        writer.write("utt_c", _tone(12.0), 16000, {"txt": "c", "domain": "command", "labels": {"gender": "MALE"}})
        writer.write_text_only("utt_d", {"txt": "only text", "task": "<T2T>"})
    return writer


def test_round_trip(tmp_path: Path) -> None:
    writer = _write_samples(tmp_path)
    assert [Path(p).name for p in writer.shards] == ["shard-000000.tar"]
    with tarfile.open(writer.shards[0]) as tar:
        names = tar.getnames()
        assert names == ["utt_a.flac", "utt_a.json", "utt_b.flac", "utt_b.json", "utt_c.flac", "utt_c.json",
                         "utt_d.json"]
        assert all(member.mtime == 0 for member in tar.getmembers())
        audio, sr = sf.read(io.BytesIO(tar.extractfile("utt_b.flac").read()), dtype="float32")
        meta_a = json.loads(tar.extractfile("utt_a.json").read().decode("utf-8"))
        meta_b = json.loads(tar.extractfile("utt_b.json").read().decode("utf-8"))
        meta_d = json.loads(tar.extractfile("utt_d.json").read().decode("utf-8"))
    assert sr == 16000 and audio.ndim == 1 and len(audio) == 40000  # 2.5 s resampled from 22.05 kHz
    assert meta_b["duration"] == pytest.approx(2.5) and meta_b["key"] == "utt_b"
    assert meta_a["txt"] == "héllo" and meta_a["labels"]["events"] == ["BELL", "COUGH"]
    assert meta_d == {"txt": "only text", "task": "<T2T>", "key": "utt_d"}


def test_flac_helper_decodes() -> None:
    audio, sr = sf.read(io.BytesIO(audio_bytes(_tone(0.5), 16000)), dtype="float32")
    assert sr == 16000 and np.abs(audio - _tone(0.5)).max() < 1e-3


def test_wav_shards_hold_the_same_samples_as_flac(tmp_path: Path) -> None:
    decoded = {}
    for fmt in ("flac", "wav"):
        with ShardWriter(tmp_path / fmt, audio_format=fmt) as writer:
            writer.write("utt", _tone(1.0, 22050), 22050, {"txt": "a"})
        with tarfile.open(writer.shards[0]) as tar:
            assert tar.getnames() == [f"utt.{fmt}", "utt.json"]
        (raw,) = read_shard(writer.shards[0], SkipCounter())
        decoded[fmt] = decode_audio(raw.audio)
    # libsndfile rounds float to 16 bits slightly differently for the two containers: at most 1 step
    assert len(decoded["wav"]) == 16000 and np.abs(decoded["wav"] - decoded["flac"]).max() <= 1 / 32768 + 1e-9
    with pytest.raises(ValueError, match="audio_format"):
        ShardWriter(tmp_path / "x", audio_format="mp3")


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT"])
def test_wav_fast_path_leaves_other_encodings_to_soundfile(subtype: str) -> None:
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([_tone(0.5), 0.5 * _tone(0.5)], axis=1), 16000, format="WAV", subtype=subtype)
    assert pcm16_wav(buffer.getvalue()) is None
    assert np.abs(decode_audio(buffer.getvalue()) - 0.75 * _tone(0.5)).max() < 1e-5  # decoded and downmixed


def test_wav_fast_path_reads_pcm16_exactly() -> None:
    data = audio_bytes(_tone(0.5), 16000, "wav")
    audio, sr = pcm16_wav(data)
    reference, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    assert sr == 16000 and np.array_equal(audio, reference)
    assert pcm16_wav(data[: len(data) // 2]) is None  # truncated: soundfile decides what is left


def test_shards_split_and_rename_atomically(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, max_samples=2) as writer:
        writer.write("k0", _tone(0.2), 16000, {})
        assert list(tmp_path.glob("*.tar")) == [] and [p.name for p in tmp_path.iterdir()] == ["shard-000000.tar.tmp"]
        for i in range(1, 5):
            writer.write(f"k{i}", _tone(0.2), 16000, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert [s["samples"] for s in writer.stats] == [2, 2, 1]


def test_failed_writer_leaves_no_partial_shard(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), ShardWriter(tmp_path) as writer:
        writer.write("k0", _tone(0.2), 16000, {})
        raise RuntimeError("importer crashed")
    assert list(tmp_path.iterdir()) == []


def test_bad_key_rejected(tmp_path: Path) -> None:
    with ShardWriter(tmp_path) as writer:
        with pytest.raises(ValueError, match="spk1.utt2"):
            writer.write("spk1.utt2", _tone(0.2), 16000, {})
        with pytest.raises(ValueError, match="a.b"):
            writer.write_text_only("a.b", {})


def test_deterministic_bytes(tmp_path: Path) -> None:
    first = _write_samples(tmp_path / "one").shards[0]
    second = _write_samples(tmp_path / "two").shards[0]
    assert Path(first).read_bytes() == Path(second).read_bytes()


def test_index_counts_and_summary(tmp_path: Path) -> None:
    writer = _write_samples(tmp_path, max_samples=3)
    index = build_index(writer.stats)
    write_index(tmp_path, index)
    loaded = read_index(tmp_path)
    assert [s["path"] for s in loaded["shards"]] == ["shard-000000.tar", "shard-000001.tar"]
    total = loaded["total"]
    assert total["samples"] == 4 and total["seconds"] == pytest.approx(16.0)
    assert total["hours"] == pytest.approx(16.0 / 3600, abs=1e-4)
    assert total["tasks"] == {"<TRANSCRIBE>": 1, "<T2T>": 1}
    assert total["labels"]["gender"] == {"MALE": 2, "FEMALE": 1}
    assert total["labels"]["events"] == {"BELL": 1, "COUGH": 1}
    assert total["domains"] == {"digits": 1, "command": 1}
    hist = total["duration_hist"]
    assert hist["edges"][-1] is None and hist["edges"][:3] == [0, 1, 2]
    assert hist["counts"][1] == 1 and hist["counts"][2] == 1 and hist["counts"][7] == 1  # 1.5 s, 2.5 s, 12 s
    assert loaded["shards"][1]["samples"] == 1  # the text-only sample
    assert index_from_shards(writer.shards) == index

    text = summary(loaded)
    assert "samples  4" in text and "FEMALE" in text and "digits" in text and "approximate" in text



def test_index_of_an_original_osum_shard(tmp_path: Path) -> None:
    """KEY.wav/.txt/.task members: the task is counted and the duration read from the audio header."""
    with tarfile.open(tmp_path / "orig.tar", "w") as tar:
        for key, seconds in (("a", 1.5), ("b", 2.5)):
            wav = io.BytesIO()
            sf.write(wav, _tone(seconds), 16000, format="WAV")
            for ext, data in (("wav", wav.getvalue()), ("txt", b"hello<GENDER><MALE>"), ("task", b"<TRANSCRIBE> <GENDER>")):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    total = index_from_shards([tmp_path / "orig.tar"])["total"]
    assert total["samples"] == 2 and total["seconds"] == pytest.approx(4.0)
    assert total["tasks"] == {"<TRANSCRIBE> <GENDER>": 2}
