"""Real tiny checkpoints for the web demo tests, trained through `python -m osum.train` in a CPU minute or two.

* an **understanding** checkpoint: the mini recipe (the understanding stage: real Whisper tiny.en encoder, a small
  Qwen2 from scratch, its speech head frozen as that stage does) on the mini corpus's digit strings (ten words)
  with transcript and gender tag; its page offers understanding and S2T chat and shows S2S and TTS disabled;
* a **dialogue** checkpoint: the mini dialogue recipe from scratch on the mini corpus's clips made dialogue
  samples (a fixed short reply with its speech codes, a natural-language think, some samples with an earlier
  turn) plus TTS: its chats have a think section and a reply, S2S and TTS give speech codes;
* a token2wav **flow** model (codes -> mel) on noise clips whose codes match their length: spoken output.

Two speech LLMs, not one: a model trained for a minute from scratch answers every prompt with its most trained
layout, so one checkpoint would not both tag and think. The trainings teach each output type's layout, not good
answers; the tests check that the page shows what the model says, whatever it says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf
from speech_code_shards import write_code_split

from osum.data.audio import decode_audio
from osum.data.index import build_index, write_index
from osum.data.shards import ShardWriter

ROOT = Path(__file__).resolve().parents[2]
WHISPER = ROOT / "assets" / "whisper-tiny.en"
CODES = 32  # the speech codebook of the dialogue model and the flow model
FIRST_REPLY, LATER_REPLY = "sure.", "sure."
THINK = "calm"

UNDERSTANDING_RECIPE = """\
# @package _global_
# The web demo tests' understanding model: the mini recipe for a few steps, transcript and gender of digit strings.
defaults:
  - mini
  - _self_
recipe_name: web_understanding
data:
  num_workers: 0
  train:
    - {name: digits, path: "${paths.data_root}/digits/train", weight: 1.0, tasks: {"<TRANSCRIBE> <GENDER>": 1}}
  valid: "${paths.data_root}/digits/valid"
  batch: {max_samples: 8}
optim: {lr: 3.0e-3}
scheduler: {name: cosine, warmup_steps: 2, min_ratio: 0.3}
trainer: {max_steps: %(steps)d, val_check_interval: %(steps)d, limit_val_batches: 1}
callbacks:
  checkpoint: {every_n_train_steps: %(steps)d}
"""

DIALOGUE_RECIPE = """\
# @package _global_
# The web demo tests' dialogue model: the mini dialogue recipe from scratch (no understanding checkpoint) with a
# small speech codebook, on the mini corpus's clips made dialogue samples; every output type of a chat and TTS.
defaults:
  - mini_dialogue
  - _self_
recipe_name: web_dialogue
rendering: {think: language}
init_from: null
template: {speech_codes: %(codes)d}
model: {speech_token_num: %(codes_plus_one)d}
data:
  num_workers: 0
  train:
    - {name: web, path: "${paths.data_root}/web/train", weight: 1.0,
       tasks: {"<CHAT> <THINK>": 1, "<CHAT> <TEXT2TOKEN> <THINK>": 1, "<CHAT> <HISTORY>": 1,
               "<CHAT> <TEXT2TOKEN> <HISTORY>": 1, "<TEXT2TOKEN>": 1}}
  valid: "${paths.data_root}/web/valid"
  batch: {max_samples: 8}
  # output types drawn by batch index (first turns most), not in the order a long sort buffer brings them
  batch_groups: {s2t_chat_think: 2, speech2text_token_think: 2, speech2text_token_history: 0.5,
                 s2t_chat_history: 0.3, text2token: 1}
optim: {lr: 4.0e-3}
scheduler: {name: cosine, warmup_steps: 10, min_ratio: 0.5}
trainer: {max_steps: %(steps)d, val_check_interval: %(steps)d, limit_val_batches: 1}
callbacks:
  checkpoint: {every_n_train_steps: %(steps)d}
"""


def read_shards(folder: Path) -> list[tuple[str, bytes, dict]]:
    """(key, audio bytes, fields) of every audio sample of a shard folder, in order."""
    out = []
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: m for m in tar.getmembers()}
            for name in sorted(members):
                key, _, ext = name.partition(".")
                if ext in ("flac", "wav"):
                    fields = json.loads(tar.extractfile(members[f"{key}.json"]).read())
                    out.append((key, tar.extractfile(members[name]).read(), fields))
    return out


def text_codes(text: str, per_word: int = 8) -> list[int]:
    """A fixed short code sequence for a text (a pattern per text, as write_code_split makes them)."""
    return [int(c) for c in np.random.default_rng(len(text)).integers(0, CODES, per_word * len(text.split()))]


def write_digits_split(source: Path, out: Path) -> None:
    """The digit strings of the mini corpus split ``source`` (ten words: a minute of training learns to write some)."""
    with ShardWriter(out, max_samples=16) as w:
        for key, audio_bytes, fields in read_shards(source):
            if fields.get("domain") == "digits":
                w.write(key, decode_audio(audio_bytes), 16000, {k: v for k, v in fields.items()
                                                                if k not in ("key", "duration")})
    write_index(out, build_index(w.stats))


def write_dialogue_split(source: Path, out: Path) -> None:
    """The mini corpus split ``source`` as dialogue samples: each keeps its audio, transcript and labels and gains a
    reply (``answer``), the reply's codes (``speech_tokens``) and a think; every third sample also carries the
    previous clip as an earlier turn (``history``), as a dialogue corpus's later turns do. The reply and think are
    fixed strings, so that a few steps learn where each part of a turn goes."""
    with ShardWriter(out, max_samples=16) as w:
        previous = None
        for i, (key, audio_bytes, fields) in enumerate(read_shards(source)):
            audio = decode_audio(audio_bytes)
            meta = {k: fields[k] for k in ("txt", "labels", "speaker", "lang") if k in fields}
            history, answer = None, FIRST_REPLY
            if previous is not None and i % 3 == 2:
                meta["history"] = [{"text": FIRST_REPLY, "speech_tokens": text_codes(FIRST_REPLY)}]
                history, answer = [previous], LATER_REPLY
            meta.update(answer=answer, think=THINK, speech_tokens=text_codes(answer), reply_emotion="NEUTRAL")
            w.write(key, audio, 16000, meta, history_audio=history)
            previous = audio
    write_index(out, build_index(w.stats))


def train(*overrides: str, config_dir: Path | None = None) -> None:
    """`python -m osum.train` with one intra-op thread (on a shared CPU a second thread's waits cost seconds)."""
    args = [sys.executable, "-m", "osum.train", *(["--config-dir", str(config_dir)] if config_dir else [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*args, *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"osum.train failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")


def train_web_models(mini_data: Path, out: Path, understanding_steps: int = 160,
                     dialogue_steps: int = 120) -> dict[str, Path]:
    """Train the three models under ``out``; returns the paths {"understanding", "dialogue", "flow", "test_wav"}."""
    data, exp, conf = out / "data", out / "exp", out / "conf"
    data.mkdir(parents=True)
    (data / "mini").symlink_to(mini_data / "mini", target_is_directory=True)
    for split in ("train", "valid"):
        write_digits_split(mini_data / "mini" / split, data / "digits" / split)
    write_dialogue_split(mini_data / "mini" / "train", data / "web" / "train")
    write_dialogue_split(mini_data / "mini" / "valid", data / "web" / "valid")
    for split, n in (("train_codes", 4), ("valid_codes", 2)):  # the flow model's data
        write_code_split(data / "mini_tts" / split, n, codes=CODES)
    (conf / "recipe").mkdir(parents=True)
    (conf / "recipe" / "web_understanding.yaml").write_text(UNDERSTANDING_RECIPE % {"steps": understanding_steps})
    (conf / "recipe" / "web_dialogue.yaml").write_text(DIALOGUE_RECIPE % {
        "codes": CODES, "codes_plus_one": CODES + 1, "steps": dialogue_steps})
    common = [f"paths.data_root={data}", f"paths.exp_root={exp}"]
    train("+recipe=web_understanding", *common, config_dir=conf)
    train("+recipe=web_dialogue", *common, config_dir=conf)
    train("+recipe=mini_flow", *common, "trainer.max_steps=4", "trainer.limit_val_batches=1",
          "trainer.val_check_interval=4", "callbacks.checkpoint.every_n_train_steps=4", "data.num_workers=0",
          f"model.vocab_size={CODES}", "model.encoder_layers=1", "model.estimator_blocks=1", "model.encoder_dim=32",
          "model.estimator_dim=32", "model.speaker_dim=16", "data.batch_size=4")
    test_clips = read_shards(mini_data / "mini" / "test")
    test_key, test_audio, _ = next((c for c in test_clips if c[2].get("domain") == "digits"), test_clips[0])
    test_wav = out / f"{test_key}.wav"  # a held-out clip of the mini corpus as a user would upload it: a 16-bit WAV
    sf.write(test_wav, decode_audio(test_audio), 16000, subtype="PCM_16")
    runs = {"understanding": "web_understanding", "dialogue": "web_dialogue", "flow": "mini_flow"}
    return {k: exp / run / "checkpoints" / "last.ckpt" for k, run in runs.items()} | {"test_wav": test_wav}
