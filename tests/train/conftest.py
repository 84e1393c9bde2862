"""Tiny CPU training runs of the mini recipe (model=tiny, the tiny corpus), as subprocesses or in-process."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def train_overrides(mini_data, tmp_path) -> list[str]:
    """A deterministic CPU run writing under tmp_path/exp, one metrics row per step, flushed every step."""
    return ["+recipe=mini", "model=tiny", f"paths.data_root={mini_data}", f"paths.exp_root={tmp_path / 'exp'}",
            "trainer.accelerator=cpu", "trainer.devices=1", "trainer.deterministic=true",
            "trainer.log_every_n_steps=1", "trainer.val_check_interval=1000", "trainer.limit_val_batches=0",
            "trainer.enable_model_summary=false", "data.num_workers=0", "data.batch.max_samples=2",
            "data.batch.buffer_size=4", "callbacks.progress.refresh_rate=0",
            "+logger.csv.flush_logs_every_n_steps=1"]


@pytest.fixture
def compose_train(train_overrides) -> Callable[..., DictConfig]:
    """``compose_train(*overrides)``: the composed config of a tiny run, for in-process tests."""

    def compose_train_(*overrides: str) -> DictConfig:
        with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
            return compose("train", [*train_overrides, *overrides])

    return compose_train_


@pytest.fixture
def start_training(train_overrides, tmp_path) -> Callable[..., subprocess.Popen]:
    """``start(*overrides, name=..., env=...)``: `python -m osum.train` in the background; output in tmp_path/name."""

    def start(*overrides: str, name: str = "train.out", env: dict[str, str] | None = None) -> subprocess.Popen:
        out = open(tmp_path / name, "w")  # closed by finish()
        proc = subprocess.Popen([sys.executable, "-m", "osum.train", *train_overrides, *overrides], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})})
        proc.out = out
        return proc

    return start


def _finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    """Wait for ``proc``; its exit status and output."""
    try:
        rc = proc.wait(timeout)
    finally:
        proc.kill()
        proc.out.close()
    return rc, Path(proc.out.name).read_text()


def _wait_until(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 120) -> None:
    """Poll ``condition`` while ``proc`` runs; fail if it ends or times out first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"exited ({proc.returncode}) before the condition held:\n"
                                 f"{Path(proc.out.name).read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def _logged_losses(run_dir: Path) -> dict[int, float]:
    """train/loss per step from the CSV log (a step logged again after a resume keeps its last value)."""
    path = run_dir / "logs" / "metrics.csv"
    if not path.exists():
        return {}
    return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(open(path)) if r.get("train/loss")}


@pytest.fixture
def finish() -> Callable[..., tuple[int, str]]:
    return _finish


@pytest.fixture
def wait_until() -> Callable[..., None]:
    return _wait_until


@pytest.fixture
def logged_losses() -> Callable[[Path], dict[int, float]]:
    return _logged_losses
