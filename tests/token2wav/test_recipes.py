"""End to end: `python -m osum.train +recipe=mini_flow` and `+recipe=mini_vocoder` on tiny shards, then
``Token2Wav`` (and `python -m osum.token2wav`) synthesize from the checkpoints and from an export folder."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import VOCAB, speechlike

from osum.token2wav import Token2Wav
from osum.token2wav.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]
COMMON = ["trainer.max_steps=3", "trainer.val_check_interval=3", "trainer.limit_val_batches=1",
          "trainer.log_every_n_steps=1", "trainer.accelerator=cpu", "trainer.devices=1", "data.num_workers=0",
          "data.batch_size=2", "data.buffer_size=2", "callbacks.checkpoint.every_n_train_steps=3"]
TINY = {"mini_flow": ["model.encoder_dim=32", "model.encoder_layers=1", "model.estimator_dim=32",
                      "model.estimator_blocks=1", "model.heads=2", "model.speaker_dim=16", f"model.vocab_size={VOCAB}",
                      "model.steps=2"],
        "mini_vocoder": ["model.dim=32", "model.intermediate=64", "model.layers=2", "data.segment_seconds=0.4"]}


def start(recipe: str, data_root: Path, exp: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "osum.train", f"+recipe={recipe}", f"paths.data_root={data_root}",
            f"paths.exp_root={exp}", *COMMON, *TINY[recipe]]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def finish(recipe: str, proc: subprocess.Popen, exp: Path) -> Path:
    stdout, stderr = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"{recipe} failed ({proc.returncode}):\n{stdout[-3000:]}\n{stderr[-5000:]}")
    run_dir = exp / recipe
    rows = list(csv.DictReader(open(run_dir / "logs" / "metrics.csv")))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 3 and all(0 < v < 100 for v in losses)
    assert any(r.get("val/loss") for r in rows)
    skipped = json.loads((run_dir / "skipped_samples_rank0.json").read_text())
    assert skipped["by_reason"].get("no_audio", 0) >= 1  # the text-only sample, counted
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def checkpoints(tts_root, tmp_path_factory):
    exp = tmp_path_factory.mktemp("t2w_exp")
    runs = {recipe: start(recipe, tts_root, exp) for recipe in ("mini_flow", "mini_vocoder")}  # side by side
    flow, vocoder = (finish(recipe, proc, exp) for recipe, proc in runs.items())
    rows = list(csv.DictReader(open(exp / "mini_flow" / "logs" / "metrics.csv")))
    assert any(r.get("train/loss_flow") for r in rows) and any(r.get("train/loss_prior") for r in rows)
    return flow, vocoder


def test_trained_checkpoints_synthesize(checkpoints, tmp_path):
    flow, vocoder = checkpoints
    codes = [3, 17, 40, 40, 2, 63, 5, 9]
    with_gl = Token2Wav.load(flow, "griffin_lim")
    wav = with_gl(codes, speechlike(0.5, 7))
    assert wav.dtype == np.float32 and wav.shape == (640 * len(codes),) and np.isfinite(wav).all()

    synth = Token2Wav.load(flow, vocoder)
    assert synth.vocoder is not None
    wavs = synth.synthesize_batch([codes, codes[:3]], [None, speechlike(0.5, 8)])
    assert [w.shape for w in wavs] == [(640 * 8,), (640 * 3,)]
    assert np.allclose(synth(codes), wavs[0], atol=1e-5)  # batching and padding do not change the audio

    folder = synth.export(tmp_path / "export")
    again = Token2Wav.load(folder)  # the folder's own vocoder
    assert again.vocoder is not None and np.allclose(again(codes), wavs[0], atol=1e-6)

    with pytest.raises(ValueError, match="expected a flow"):
        Token2Wav.load(vocoder)
    with pytest.raises(ValueError, match="vocab_size"):
        synth([VOCAB + 1])


def test_cli_writes_wavs(checkpoints, tts_root, tmp_path, capsys):
    flow, vocoder = checkpoints
    out = tmp_path / "one.wav"
    cli_main(["--flow", str(flow), "--vocoder", str(vocoder), "--codes", "1 2 3 4", "--out", str(out)])
    audio, sr = sf.read(out)
    assert sr == 16000 and len(audio) == 4 * 640
    folder = tmp_path / "many"
    cli_main(["--flow", str(flow), "--codes-from-shards", str(tts_root / "mini_tts" / "valid_codes"), "--num", "2",
              "--self-reference", "--out", str(folder), "--steps", "2"])
    assert sorted(p.name for p in folder.glob("*.wav")) == ["utt010.wav", "utt011.wav"]
    assert "utt010.wav" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--codes must be"):
        cli_main(["--flow", str(flow), "--codes", "1 x", "--out", str(out)])
