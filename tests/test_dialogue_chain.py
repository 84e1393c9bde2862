"""The dialogue chain end to end through its command lines, as `make demo-chat` runs it at full size: a tiny
dialogue corpus (real TTS speech, voice cues, multi-turn) -> reply codes (`osum.speech_tokens extract --member
reply_flac`) -> the mini dialogue recipe for a few steps -> `osum.evaluate echat` (its table) -> a 2-turn S2S
session from `osum.infer --mode s2s` writing each turn's think, reply and wav."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from run_module import run
from speech_code_shards import write_code_split

ROOT = Path(__file__).resolve().parent
WHISPER = ROOT.parent / "assets" / "whisper-tiny.en"
pytestmark = pytest.mark.skipif(not (WHISPER / "config.json").exists(), reason="run `make assets`")
CODES = 32


def test_dialogue_chain_from_corpus_to_a_spoken_session(mini_data, tmp_path):
    from data_prep.dialogue_corpus import build

    root = tmp_path / "data"  # its own data root: the mini corpus (its tokenizer), a dialogue corpus of its own
    root.mkdir()
    (root / "mini").symlink_to(mini_data / "mini", target_is_directory=True)
    for split, n in (("train_codes", 4), ("valid_codes", 2)):  # text chat for the mixture; the flow's data
        write_code_split(root / "mini_tts" / split, n, codes=CODES)
    data = root / "mini_dialogue"
    build(data, seed=2, counts={"train": (6, 3), "valid": (2, 1), "test": (3, 2)}, workers=1)
    tokenizer = tmp_path / "speech_tokenizer"
    run("osum.speech_tokens", "train", "--encoder", str(WHISPER), "--shards", str(data / "train"), "--out",
        str(tokenizer), "--codes", str(CODES))
    for split in ("train", "valid", "test"):
        run("osum.speech_tokens", "extract", "--tokenizer", str(tokenizer), "--shards", str(data / split),
            "--out", str(data / f"{split}_codes"), "--member", "reply_flac")
    exp = tmp_path / "exp"
    common = [f"paths.data_root={root}", f"paths.exp_root={exp}", "trainer.max_steps=4", "trainer.limit_val_batches=1",
              "trainer.val_check_interval=4", "callbacks.checkpoint.every_n_train_steps=4", "data.num_workers=0"]
    run("osum.train", "+recipe=mini_dialogue", *common, "init_from=null", f"template.speech_codes={CODES}",
        f"model.speech_token_num={CODES + 1}", "data.batch.max_samples=4", "trainer.log_every_n_steps=1")
    rows = list(csv.DictReader(open(exp / "mini_dialogue" / "logs" / "metrics.csv")))
    tasks = {k for r in rows for k, v in r.items() if k.startswith("train/loss_CHAT") and v}
    assert tasks, "dialogue tasks train and are logged per task"
    run("osum.train", "+recipe=mini_flow", *common, f"model.vocab_size={CODES}", "model.encoder_layers=1",
        "model.estimator_blocks=1", "model.encoder_dim=32", "model.estimator_dim=32", "model.speaker_dim=16",
        "data.batch_size=4")
    ckpt, flow = exp / "mini_dialogue" / "checkpoints" / "last.ckpt", exp / "mini_flow" / "checkpoints" / "last.ckpt"

    out = tmp_path / "echat"
    proc = run("osum.evaluate", "echat", "--ckpt", f"tag={ckpt}", "--shards", str(data / "test_codes"),
               "--out", str(out), "--s2s", "2", "--flow", str(flow), "--asr", str(WHISPER))
    report = json.loads((out / "echat_report.json").read_text())["tag"]
    assert report["think_form"] == "tag" and report["cases"] == 5 and report["multi_turn"] == 2
    assert report["s2t_first_turns"]["think"]["n"] == 3  # first turns think; later turns are history tasks
    assert set(report["s2t"]["reply"]) >= {"address", "emotion", "event", "appropriate", "content", "memory"}
    assert report["memory_history"] is not None and report["memory_no_history"] is not None
    speech = report["s2s_speech"]  # judged, without codes, or too long for the ASR window (named)
    assert speech["n"] + speech["no_codes"] + len(speech["too_long"]) == 2
    assert 0 < report["chance"]["gender"] <= 100 and "| tag | tag |" in proc.stdout
    replies = [json.loads(line) for line in (out / "echat_replies.jsonl").read_text().splitlines()]
    assert len(replies) == 5 + 2 + 2  # S2T on every case, the multi-turn ones again without history, S2S on 2

    proc = run("osum.diagnose", "context", "--ckpt", str(ckpt), "--shards", str(data / "test_codes"))
    probes = json.loads(proc.stdout)  # does the model read its reply text, its think, its history?
    assert probes["speech_reads_text"]["n"] == 3 and probes["reply_reads_think"]["n"] == 3
    assert all(math.isfinite(probes[p][k]) and probes[p][k] > 0 for p, k in (
        ("speech_reads_text", "own_text"), ("speech_reads_text", "other_text"), ("reply_reads_think", "own_think"),
        ("reply_reads_think", "other_think")))
    memory = probes["memory_reads_history"]
    assert memory["n"] == 2 and {"as_is", "turn1_text_swapped", "turn1_audio_swapped"} <= set(memory)

    session = sorted((data / "sessions").glob("*/session.json"))[0].parent  # a multi-turn test dialogue as files
    clips, second = [str(session / "turn_1.flac"), str(session / "turn_2.flac")], tmp_path / "turns"
    proc = run("osum.infer", "--mode", "s2s", "--ckpt", str(ckpt), "--flow", str(flow), "--audio", clips[0],
               "--audio", clips[1], "--out-dir", str(second), "--max-reply-tokens", "40")
    turn1, turn2 = (json.loads((second / f"turn_{i}.json").read_text()) for i in (1, 2))
    assert turn1["output_type"] == "speech2text_token_think" and turn2["output_type"] == "speech2text_token_history"
    assert "turn 2 (speech2text_token_history, 2 kept)" in proc.stdout
    for turn in (turn1, turn2):
        assert turn["speech_codes"] is not None and all(0 <= c < CODES for c in turn["speech_codes"])
        assert not turn["speech_codes"] or Path(turn["wav"]).stat().st_size > 44
