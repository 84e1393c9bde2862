"""The EChat importer: EChat raw lines (single and multi-turn) become dialogue samples; bad lines are rejects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from data_prep import import_echat
from osum.data.audio import decode_audio
from osum.data.reader import RawSample, read_shard
from osum.data.skips import SkipCounter


def _sine(path: Path, seconds: float, hz: float, sample_rate: int = 16000) -> str:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * hz * t), sample_rate)
    return path.name


def _lines(folder: Path) -> list[dict]:
    user, user_1, reply = (_sine(folder / "u0.wav", 0.6, 220), _sine(folder / "u1.wav", 0.4, 330, 22050),
                           _sine(folder / "a0.wav", 0.5, 440))
    return [
        {"key": "single", "wav": user, "txt": "<安慰鼓励>I am sorry to hear that, take a rest.",
         "task": "<S2TCHAT> <TEXT2TOKEN> <THINK>",
         "extra": {"age": "<YOUTH>", "gender": "<FEMALE>", "q_emotion": "<sad>", "caption": "<Cough>",
                   "question": "I feel tired today", "think_str": "the user sounds sad and coughs",
                   "speech_token": [1, 2, 4095], "a_wav_path": reply, "dataset": "fake"}},
        {"key": "two_turns", "wav": user, "txt": "Your name is Anna.", "task": "<S2TCHAT> <TEXT2TOKEN> <HISTORY>",
         "wav_1": user_1, "txt_1": "Nice to meet you, Anna.",
         "extra": {"gender": "男", "q_txt": "what is my name", "caption": "<NONE>", "speech_token": [7, 8],
                   "speech_token_1": [3, 4, 5], "a_wav_path": reply}},
        {"key": "no_reply", "wav": user, "task": "<S2TCHAT>", "extra": {"question": "hello"}},
        {"key": "lost_history", "wav": user, "txt": "Sure.",
         "extra": {"wav_1": "gone.wav", "txt_1": "Hi.", "a_wav_path": reply}},
    ]


def test_import_echat(tmp_path: Path) -> None:
    manifest = tmp_path / "echat.jsonl"
    manifest.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in _lines(tmp_path)),
                        encoding="utf-8")
    out = tmp_path / "shards"
    report = import_echat.main([str(manifest), "--out", str(out), "--workers", "1", "--reply-audio"])
    assert report.samples == 2

    rejects = {row["key"]: row for row in map(json.loads, (out / "rejects.jsonl").read_text().splitlines())}
    assert {key: row["reason"] for key, row in rejects.items()} == {"no_reply": "empty_answer",
                                                                    "lost_history": "missing_audio"}
    assert rejects["lost_history"]["detail"].startswith("history turn 1:")
    assert "gone.wav" in rejects["lost_history"]["detail"]
    assert "rejected 2 inputs" in report.summary()

    skips = SkipCounter()
    samples: dict[str, RawSample] = {raw.key: raw for shard in sorted(out.glob("*.tar"))
                                     for raw in read_shard(str(shard), skips)}
    assert skips.total == 0 and sorted(samples) == ["single", "two_turns"]

    single = samples["single"].meta
    assert single["txt"] == "I feel tired today" and single["answer"] == "I am sorry to hear that, take a rest."
    assert single["reply_emotion"] == "安慰鼓励"
    assert single["labels"] == {"age": "ADULT", "gender": "FEMALE", "emotion": "SAD", "events": ["COUGH"]}
    assert single["think"] == "the user sounds sad and coughs" and single["speech_tokens"] == [1, 2, 4095]
    assert single["echat_task"] == "<S2TCHAT> <TEXT2TOKEN> <THINK>" and "task" not in single
    assert single["domain"] == "fake" and "history" not in single
    assert abs(single["duration"] - 0.6) < 0.01
    assert abs(len(decode_audio(samples["single"].members["reply_flac"])) / 16000 - 0.5) < 0.01

    two = samples["two_turns"]
    assert two.meta["txt"] == "what is my name" and two.meta["answer"] == "Your name is Anna."
    assert two.meta["labels"] == {"gender": "男", "events": []}
    assert two.meta["history"] == [{"text": "Nice to meet you, Anna.", "speech_tokens": [3, 4, 5], "audio": "flac_1"}]
    assert abs(len(decode_audio(two.members["flac_1"])) / 16000 - 0.4) < 0.01  # resampled from 22.05 kHz


def test_parse_rejects(tmp_path: Path) -> None:
    def reason(line: dict, reply_member: str | None = None) -> str | None:
        item = import_echat.echat_item("m.jsonl:1", {"key": "k", "wav": "u.wav", "txt": "ok", **line}, tmp_path,
                                       reply_member)
        return item.reason if isinstance(item, import_echat.Reject) else None

    assert reason({}) is None
    assert reason({"wav_2": "a.wav", "txt_2": "hi"}) == "bad_history"  # turn 1 is missing
    assert reason({"txt_1": "hi"}) == "missing_audio"
    assert reason({"wav_1": "a.wav"}) == "bad_history"  # no assistant text
    assert reason({"extra": {"speech_token": [1, "2"]}}) == "bad_speech_tokens"
    assert reason({"extra": "oops"}) == "malformed_line"
    assert reason({}, reply_member="reply_flac") == "missing_audio"  # --reply-audio without a_wav_path
    assert reason({"txt": "<开心>"}) == "empty_answer"  # only a reply-emotion tag
    assert reason({"key": None}) == "missing_key"
