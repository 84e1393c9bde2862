"""End to end through the entry points: `python -m osum.train +recipe=mini`, `osum.decode`, config errors."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ASSET = ROOT / "assets" / "whisper-tiny.en" / "config.json"
needs_assets = pytest.mark.skipif(not ASSET.exists(), reason="run `make assets` (real Whisper tiny.en weights)")


def run(*args, cwd=ROOT, check=True):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@needs_assets
def test_two_steps_of_mini_recipe_then_decode(mini_data, tmp_path):
    exp = tmp_path / "exp"
    run("osum.train", "+recipe=mini", f"paths.data_root={mini_data}", f"paths.exp_root={exp}", "trainer.max_steps=2",
        "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1", "data.num_workers=0",
        "data.batch.max_samples=4", "callbacks.checkpoint.every_n_train_steps=2")
    run_dir = exp / "mini"
    assert (run_dir / "config.yaml").exists()
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.exists()
    rows = list(csv.DictReader(open(run_dir / "logs" / "metrics.csv")))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert losses and all(loss == loss and loss > 0 for loss in losses)
    assert any(r.get("val/loss") for r in rows)
    assert any(r.get("train/label_choice_loss") for r in rows)  # the recipe weights the label choice
    assert any(r.get("train/voice_label_loss") for r in rows) and any(r.get("val/voice_acc_gender") for r in rows)
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))  # TensorBoard next to the CSV by default
    skipped = json.loads((run_dir / "skipped_samples_rank0.json").read_text())
    assert skipped["total"] == 0

    out = tmp_path / "decode"
    proc = run("osum.decode", "--ckpt", str(ckpt), "--shards", str(mini_data / "mini" / "test"), "--out", str(out),
               "--max-new-tokens", "6", "--batch-size", "3")
    report = json.loads((out / "report.json").read_text())
    assert "<TRANSCRIBE>" in report["tasks"] and "wer" in report["tasks"]["<TRANSCRIBE>"]
    assert "<TRANSCRIBE> <GENDER>" in report["tasks"] and "gender" in report["tasks"]["<GENDER>"]  # and X-only
    hyps = [json.loads(line) for line in open(out / "hyp.jsonl")]
    assert len({h["key"] for h in hyps}) == 6 and all("ref" in h and "hyp" in h for h in hyps)
    assert "<TRANSCRIBE>" in proc.stdout


@needs_assets
def test_features_on_the_model_train_through_the_entry_point(mini_data, tmp_path):
    run("osum.train", "+recipe=mini", f"paths.data_root={mini_data}", f"paths.exp_root={tmp_path}", "trainer.max_steps=2",
        "trainer.limit_val_batches=0", "trainer.log_every_n_steps=1", "data.num_workers=0", "data.batch.max_samples=4",
        "data.features=model",
        "model.encoder_cache=false", "data.spec_augment={num_time_masks: 2, max_time: 50, num_freq_masks: 2, max_freq: 10}")
    rows = list(csv.DictReader(open(tmp_path / "mini" / "logs" / "metrics.csv")))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert losses and all(0 < loss < 100 for loss in losses)


def test_wrong_key_is_named():
    proc = run("osum.train", "+recipe=mini", "trainer.max_stepz=3", check=False)
    assert proc.returncode != 0
    assert "max_stepz" in proc.stderr


def test_wrong_value_is_named(tmp_path):
    proc = run("osum.train", "+recipe=mini", "template.layout=llama", f"paths.exp_root={tmp_path}", check=False)
    assert proc.returncode != 0
    assert "template.layout" in proc.stderr + proc.stdout


def test_cfg_job_prints_composed_config():
    proc = run("osum.train", "+recipe=mini", "optim.lr=3e-4", "--cfg", "job")
    assert "recipe_name: mini" in proc.stdout and "lr: 0.0003" in proc.stdout
    assert "_target_: osum.stages.understanding.UnderstandingStage" in proc.stdout
