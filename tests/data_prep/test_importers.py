"""Corpus importers (Kaldi dir, JSONL manifest, original OSUM raw list) and the index CLI, on espeak-ng speech."""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep import import_jsonl, import_kaldi, import_osum_list, importing
from osum.data import index as index_cli
from osum.data.audio import decode_audio
from osum.data.index import read_index
from osum.data.mixture import TaskMixture
from osum.data.reader import RawSample, read_shard
from osum.data.skips import SkipCounter
from osum.tasks import TaskRegistry

SENTENCES = {"long": "he was not an ill disposed young man, unless to be rather cold hearted is to be ill disposed",
             "short": "turn on the kitchen light", "other": "what is two plus three"}


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """espeak-ng recordings (22.05 kHz WAV) of ``SENTENCES`` and a file that is not audio."""
    folder = tmp_path_factory.mktemp("speech")
    paths = {}
    for name, text in SENTENCES.items():
        paths[name] = folder / f"{name}.wav"
        subprocess.run(["espeak-ng", "-w", str(paths[name]), text], check=True)
    paths["broken"] = folder / "broken.wav"
    paths["broken"].write_bytes(b"RIFF this is not a wav file" * 10)
    return paths


def _read_back(out: Path) -> dict[str, RawSample]:
    skips = SkipCounter()
    samples = {raw.key: raw for shard in sorted(out.glob("*.tar")) for raw in read_shard(str(shard), skips)}
    assert skips.total == 0
    return samples


def _rejects(out: Path) -> dict[str, str]:
    lines = (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()
    return {row["key"]: row["reason"] for row in map(json.loads, lines)}


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _kaldi_dir(root: Path, speech: dict[str, Path]) -> Path:
    data = root / "kaldi"
    data.mkdir()
    _write(data / "wav.scp", [f"rec_long {speech['long']}",
                              f"rec_short sox {speech['short']} -t wav - |",
                              f"rec_other cat {speech['other']} |",
                              f"rec_broken {speech['broken']}"])
    _write(data / "segments", ["utt_a rec_long 0.1 1.0", "utt_b rec_long 1.0 -1", "utt_c rec_short 0 -1",
                               "utt_d rec_other 0.0 1.2", "utt_e rec_broken 0 1"])
    _write(data / "text", ["utt_a he was not", "utt_b an ill disposed young man", "utt_c turn on the kitchen light",
                           "utt_d what is two", "utt_e broken audio", "utt_f no audio at all"])
    _write(data / "utt2spk", ["utt_a spk1", "utt_b spk1", "utt_c spk2", "utt_d spk2", "utt_e spk3"])
    _write(data / "utt2gender", ["utt_a m", "utt_b m", "utt_c f", "utt_d f", "utt_e m"])
    _write(data / "utt2emotion", ["utt_a neutral", "utt_b Angry", "utt_c happy", "utt_d bored", "utt_e sad"])
    return data


def test_kaldi_import(tmp_path: Path, speech: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    data = _kaldi_dir(tmp_path, speech)
    out = tmp_path / "shards"
    import_kaldi.main([str(data), "--out", str(out), "--shard-size", "2", "--workers", "2"])
    printed = capsys.readouterr().out
    assert "imported 3 samples" in printed and "unknown_label" in printed and "undecodable_audio" in printed

    samples = _read_back(out)
    assert sorted(samples) == ["utt_a", "utt_b", "utt_c"]
    a, b, c = samples["utt_a"].meta, samples["utt_b"].meta, samples["utt_c"].meta
    assert a == {"txt": "he was not", "speaker": "spk1", "labels": {"gender": "MALE", "emotion": "NEUTRAL"},
                 "key": "utt_a", "duration": pytest.approx(0.9)}
    assert b["labels"]["emotion"] == "ANGER"  # an alias in canonical form
    long_seconds = sf.info(speech["long"]).duration
    assert b["duration"] == pytest.approx(long_seconds - 1.0, abs=1e-3)  # end -1: to the end of the recording
    assert c["duration"] == pytest.approx(sf.info(speech["short"]).duration, abs=1e-3)  # through the sox pipe
    audio, sample_rate = sf.read(io.BytesIO(samples["utt_a"].audio))
    assert sample_rate == 16000 and len(audio) == 14400 and sf.info(io.BytesIO(samples["utt_a"].audio)).format == "FLAC"

    assert _rejects(out) == {"utt_f": "missing_audio", "utt_d": "unknown_label", "utt_e": "undecodable_audio"}
    total = read_index(out)["total"]
    assert total["samples"] == 3 and total["seconds"] == pytest.approx(a["duration"] + b["duration"] + c["duration"], abs=1e-3)
    assert total["labels"]["gender"] == {"MALE": 2, "FEMALE": 1}
    assert sorted(p.name for p in out.glob("*.tar")) == ["shard-000000-000000.tar", "shard-000001-000000.tar"]


def test_kaldi_import_as_wav_rewrites_flac_slices(tmp_path: Path, speech: dict[str, Path]) -> None:
    data, out = _kaldi_dir(tmp_path, speech), tmp_path / "shards"
    import_kaldi.main([str(data), "--out", str(out), "--workers", "1"])
    flac = _read_back(out)
    import_kaldi.main([str(data), "--out", str(out), "--workers", "1", "--audio-format", "wav"])
    wav = _read_back(out)  # another format is another fingerprint: the finished FLAC slice is not kept
    assert sorted(wav) == sorted(flac) == ["utt_a", "utt_b", "utt_c"]
    for key, sample in wav.items():
        assert sf.info(io.BytesIO(sample.audio)).format == "WAV" and sample.meta == flac[key].meta
        assert np.abs(decode_audio(sample.audio) - decode_audio(flac[key].audio)).max() <= 1 / 32768 + 1e-9


def test_restart_keeps_finished_shards(tmp_path: Path, speech: dict[str, Path],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    items, parse_rejects = import_kaldi.kaldi_items(_kaldi_dir(tmp_path, speech))
    out = tmp_path / "shards"
    decode = importing.RecordingCache.audio

    def killed_at_utt_c(cache: importing.RecordingCache, source: importing.AudioSource):
        if source.path == "" and "short" in source.command:
            raise RuntimeError("import killed")
        return decode(cache, source)

    monkeypatch.setattr(importing.RecordingCache, "audio", killed_at_utt_c)
    with pytest.raises(RuntimeError, match="import killed"):
        importing.import_items(items, out, parse_rejects, shard_size=1)
    monkeypatch.undo()
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    assert sorted(first) == ["shard-000000-000000.tar", "shard-000001-000000.tar"]
    assert not list(out.glob("*.tmp")) and not (out / "index.json").exists()

    report = importing.import_items(items, out, parse_rejects, shard_size=1)
    assert report.reused_slices == 2 and report.slices == 5 and report.samples == 3
    assert {name: (out / name).stat().st_mtime_ns for name in first} == first

    lost = out / "shard-000001-000000.tar"
    lost_bytes = lost.read_bytes()
    lost.unlink()
    (out / ".import" / "shard-000001.done").unlink()
    report = importing.import_items(items, out, parse_rejects, shard_size=1)
    assert report.reused_slices == 4 and lost.read_bytes() == lost_bytes
    assert (out / "shard-000000-000000.tar").stat().st_mtime_ns == first["shard-000000-000000.tar"]
    assert len(_rejects(out)) == 3


def test_jsonl_import_cuts_and_validates(tmp_path: Path, speech: dict[str, Path]) -> None:
    manifest = tmp_path / "audio" / "manifest.jsonl"
    manifest.parent.mkdir()
    (manifest.parent / "long.wav").write_bytes(speech["long"].read_bytes())
    rows = [{"key": "cut", "audio": "long.wav", "start": 0.2, "end": 1.0, "txt": "he was", "task": "<transcribe><gender>",
             "labels": {"gender": "female", "events": []}, "words": [["he", 0.0, 0.3]], "domain": "books"},
            {"key": "whole", "audio": str(speech["short"]), "txt": "turn on the kitchen light", "domain": "command"},
            {"key": "too_long", "audio": "long.wav", "txt": "x"},
            {"key": "bad_task", "audio": "long.wav", "start": 0, "end": 1, "txt": "x", "task": "<DANCE>"},
            {"key": "no_text", "audio": "long.wav", "start": 0, "end": 1, "txt": " "},
            {"key": "past_end", "audio": "long.wav", "start": 30, "end": 31, "txt": "x"},
            {"audio": "long.wav"}]
    _write(manifest, [json.dumps(row) for row in rows] + ["{not json"])
    out = tmp_path / "shards"
    import_jsonl.main([str(manifest), "--out", str(out), "--max-seconds", "3", "--workers", "1"])

    samples = _read_back(out)
    assert sorted(samples) == ["cut", "whole"]
    cut = samples["cut"].meta
    assert cut["duration"] == pytest.approx(0.8) and cut["task"] == "<TRANSCRIBE> <GENDER>"
    assert cut["labels"] == {"gender": "FEMALE", "events": []} and cut["words"] == [["he", 0.0, 0.3]]
    assert "audio" not in cut and "start" not in cut and cut["domain"] == "books"
    assert _rejects(out) == {"too_long": "too_long", "bad_task": "unknown_task", "no_text": "empty_transcript",
                             "past_end": "bad_segment", "manifest.jsonl:7": "missing_key",
                             "manifest.jsonl:8": "malformed_line"}


def _original_shard(path: Path, key: str, wav: Path, target: str, task: str, extra: dict) -> None:
    """A shard in the original OSUM layout (reference section 3.2)."""
    members = {"wav": wav.read_bytes(), "txt": target.encode(), "task": task.encode(), "extra": json.dumps(extra).encode()}
    with tarfile.open(path, "w") as tar:
        for suffix, data in members.items():
            info = tarfile.TarInfo(f"{key}.{suffix}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_osum_raw_list(tmp_path: Path, speech: dict[str, Path]) -> None:
    extra = {"age": "<ADULT>", "gender": "<FEMALE>", "dataset": "demo"}
    raw_list = tmp_path / "data.list"
    _write(raw_list, [json.dumps({"key": "osum_1", "wav": str(speech["short"]), "txt": "turn on the kitchen light<ADULT>",
                                  "task": "<TRANSCRIBE> <AGE>", "lang": "en", "extra": extra}),
                      json.dumps({"key": "osum_2", "wav": str(speech["other"]), "txt": "what is two<CHILD>",
                                  "extra": {"age": "<TEENAGER>"}})])
    out = tmp_path / "shards"
    import_osum_list.main([str(raw_list), "--out", str(out), "--workers", "1"])

    meta = _read_back(out)["osum_1"].meta
    assert meta["target"] == "turn on the kitchen light<ADULT>" and meta["task"] == "<TRANSCRIBE> <AGE>"
    assert meta["labels"] == {"age": "ADULT", "gender": "FEMALE"} and meta["extra"] == extra and meta["lang"] == "en"
    assert "txt" not in meta
    assert _rejects(out) == {"osum_2": "unknown_label"}

    original = tmp_path / "original.tar"
    _original_shard(original, "osum_1", speech["short"], meta["target"], meta["task"], extra)
    original_meta = next(read_shard(str(original), SkipCounter())).meta
    assert {name: original_meta[name] for name in ("target", "task", "extra")} == {
        name: meta[name] for name in ("target", "task", "extra")}
    registry = TaskRegistry.from_config()
    mixture = TaskMixture(registry, {"<TRANSCRIBE>": 1.0})
    assert mixture.choose(meta, random.Random(0)).tag == "<TRANSCRIBE> <AGE>"


def test_index_cli(tmp_path: Path, speech: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "shards"
    items, parse_rejects = import_kaldi.kaldi_items(_kaldi_dir(tmp_path, speech))
    importing.import_items(items, out, parse_rejects, checks=importing.Checks(label_sets={
        "gender": ["MALE", "FEMALE"], "emotion": ["NEUTRAL", "ANGER", "HAPPY", "SAD", "BORED"]}))
    shutil.copytree(out, tmp_path / "copy")
    index_cli.main(["summary", str(out), str(tmp_path / "copy")])
    printed = capsys.readouterr().out
    assert "samples  4" in printed and "samples  8" in printed  # each directory, then both together
    assert "hours    0.00" in printed and "gender:" in printed and "emotion:" in printed
    male_line = next(line for line in printed.splitlines() if line.strip().startswith("MALE"))
    assert male_line.split()[1] == "2" and male_line.endswith(" h")

    written = read_index(out)
    (out / "index.json").unlink()
    index_cli.main(["rebuild", str(out)])
    assert read_index(out) == written
