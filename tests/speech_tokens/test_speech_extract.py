"""`python -m osum.speech_tokens` end to end: train on two real shards, extract into new shards, encode a file."""

from __future__ import annotations

import hashlib
import io
import json
import runpy
import sys
import tarfile
from pathlib import Path

import pytest
import soundfile as sf
from speech_clips import bursts, sweep

from osum.data.audio import decode_audio
from osum.data.index import index_from_shards, read_index, write_index
from osum.data.reader import read_shard
from osum.data.shards import ShardWriter, audio_bytes
from osum.data.skips import SkipCounter
from osum.speech_tokens.cli import main
from osum.speech_tokens.features import n_codes
from osum.speech_tokens.tokenizer import SpeechTokenizer


def add_members(shard: Path, extra: list[tuple[str, bytes]]) -> None:
    """Rewrite ``shard`` with ``extra`` members appended (samples ShardWriter cannot write)."""
    with tarfile.open(shard) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(shard, "w") as tar:
        for name, data in members + extra:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def shard_dir(clips, tmp_path_factory) -> Path:
    """Two shards: 7 clips, a text-only sample, then a broken clip and an original-OSUM (wav + txt) sample."""
    root = tmp_path_factory.mktemp("shards") / "in"
    with ShardWriter(root, max_samples=4) as writer:
        for i, audio in enumerate([*clips, sweep(1.6, 100, 7000, 9), bursts(0.9, 8)]):
            writer.write(f"clip_{i}", audio, 16000, {"txt": f"clip number {i}", "lang": "en"})
        writer.write_text_only("text_only", {"question": "two plus two", "answer": "four"})
    add_members(root / "shard-000001.tar", [
        ("broken_0.flac", b"fLaC this is not audio"), ("broken_0.json", b'{"txt": "broken", "key": "broken_0"}'),
        ("orig_0.wav", audio_bytes(sweep(0.8, 300, 900, 7), 16000, "wav")), ("orig_0.txt", b"hello there")])
    write_index(root, index_from_shards(sorted(root.glob("shard-*.tar"))))
    return root


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def samples(folder: Path) -> dict[str, object]:
    skips = SkipCounter()
    out = {raw.key: raw for shard in sorted(folder.glob("shard-*.tar")) for raw in read_shard(str(shard), skips)}
    assert skips.total == 0
    return out


def test_train_extract_encode(shard_dir, whisper_dir, tmp_path, capsys, monkeypatch):
    before = digest(shard_dir)
    tok_dir, out_dir = tmp_path / "tok", tmp_path / "out"
    assert main(["train", "--encoder", str(whisper_dir), "--shards", str(shard_dir), "--out", str(tok_dir),
                 "--codes", "8", "--seed", "0", "--batch", "3"]) == 0
    printed = capsys.readouterr().out
    assert "clips      8  (1 samples skipped (undecodable_audio=1))" in printed
    assert "codes used, perplexity" in printed and "time" in printed
    tokenizer = SpeechTokenizer.load(tok_dir)
    assert tokenizer.codes == 8 and tokenizer.features.layer == 2 and tokenizer.features.final_norm

    assert main(["extract", "--tokenizer", str(tok_dir), "--shards", str(shard_dir), "--out", str(out_dir),
                 "--batch", "3"]) == 0
    printed = capsys.readouterr().out
    assert "10: 8 with speech_tokens" in printed and "1 without audio, 1 kept without speech_tokens" in printed
    assert "bad audio shard-000001.tar:broken_0 undecodable_audio" in printed
    assert digest(shard_dir) == before  # the input is untouched

    inputs, outputs = samples(shard_dir), samples(out_dir)
    assert list(outputs) == list(inputs) and len(outputs) == 10
    for key, raw in outputs.items():
        original = inputs[key]
        assert raw.audio == original.audio
        if key in ("text_only", "broken_0"):  # copied byte for byte
            assert raw.members == original.members and "speech_tokens" not in raw.meta
            continue
        audio = decode_audio(raw.audio)
        assert raw.meta["speech_tokens"] == tokenizer.encode(audio), key
        assert len(raw.meta["speech_tokens"]) == n_codes(len(audio))
        assert {k: v for k, v in raw.meta.items() if k not in ("speech_tokens", "extra")} == original.meta
        assert set(raw.members) == set(original.members) | ({"extra"} if key == "orig_0" else set())
    assert json.loads(outputs["orig_0"].members["extra"]) == {"speech_token": outputs["orig_0"].meta["speech_tokens"]}

    index = read_index(out_dir)
    assert [s["path"] for s in index["shards"]] == ["shard-000000.tar", "shard-000001.tar"]
    assert [s["samples"] for s in index["shards"]] == [4, 6]
    with_tokens = sum(n for fields, n in index["total"]["field_sets"].items() if "speech_tokens" in fields.split(","))
    assert with_tokens == 8
    assert index["total"]["seconds"] == pytest.approx(read_index(shard_dir)["total"]["seconds"], abs=0.01)

    wav = tmp_path / "a.wav"
    sf.write(wav, sweep(1.2, 400, 2000, 11), 16000)
    monkeypatch.setattr(sys, "argv", ["osum.speech_tokens", "encode", "--tokenizer", str(tok_dir), "--wav", str(wav)])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("osum.speech_tokens", run_name="__main__")
    assert done.value.code == 0
    expected = tokenizer.encode(decode_audio(wav.read_bytes()))
    assert capsys.readouterr().out.split() == [str(c) for c in expected] and len(expected) == 30

    assert main(["extract", "--tokenizer", str(tok_dir), "--shards", str(shard_dir), "--out", str(shard_dir)]) == 2
    assert "must differ from the input" in capsys.readouterr().err
    assert not list(out_dir.glob("*.tmp"))
    (out_dir / "shard-000009.tar").write_bytes(b"")  # not an output of this input: refused, not mixed in
    assert main(["extract", "--tokenizer", str(tok_dir), "--shards", str(shard_dir), "--out", str(out_dir)]) == 2
    assert "shard-000009.tar" in capsys.readouterr().err


def test_train_errors_are_reported(tmp_path, whisper_dir, capsys):
    assert main(["train", "--encoder", str(whisper_dir), "--shards", str(tmp_path / "nowhere"),
                 "--out", str(tmp_path / "tok")]) == 2
    assert "no such shard or shard directory" in capsys.readouterr().err


def test_extract_a_dialogue_reply_member_and_its_history(clips, whisper_dir, tmp_path, capsys):
    """``--member reply_flac``: the reply's codes become the sample's speech_tokens, each history turn naming a
    ``reply_audio`` member gets its own; the user audio is left as input; a missing member is reported."""
    src = tmp_path / "dialogue"
    history = [{"text": "hello", "reply_audio": "reply_flac_1"}, {"text": "again", "reply_audio": "reply_flac_2"}]
    with ShardWriter(src, max_samples=10) as w:
        w.write("d_0", clips[0], 16000, {"txt": "hi", "answer": "hello"}, extra_audio={"reply_flac": clips[1]})
        w.write("d_1", clips[0], 16000, {"txt": "hi", "answer": "bye", "history": history},
                history_audio=[clips[3], clips[4]], extra_audio={"reply_flac": clips[2], "reply_flac_1": clips[4]})
    write_index(src, index_from_shards(sorted(src.glob("shard-*.tar"))))
    tok_dir, out_dir = tmp_path / "tok", tmp_path / "out"
    assert main(["train", "--encoder", str(whisper_dir), "--shards", str(src), "--out", str(tok_dir),
                 "--codes", "8", "--max-clips", "4"]) == 0
    assert main(["extract", "--tokenizer", str(tok_dir), "--shards", str(src), "--out", str(out_dir),
                 "--member", "reply_flac"]) == 0
    printed = capsys.readouterr().out
    assert "missing_member" in printed and "d_1" in printed  # history turn 2 names a member the sample lacks
    tokenizer = SpeechTokenizer.load(tok_dir)
    out = {s.key: s for s in read_shard(str(out_dir / "shard-000000.tar"), SkipCounter())}
    assert out["d_0"].meta["speech_tokens"] == tokenizer.encode(clips[1])
    assert out["d_1"].meta["speech_tokens"] == tokenizer.encode(clips[2])
    assert out["d_1"].meta["history"][0]["speech_tokens"] == tokenizer.encode(clips[4])
    assert "speech_tokens" not in out["d_1"].meta["history"][1]
    assert decode_audio(out["d_1"].audio).shape == clips[0].shape  # the user audio is copied, not encoded
