"""Preemption: SIGUSR1 or SIGTERM -> one checkpoint after the current step, a requeue under SLURM, an exit.

The signal handler only records the signal. After every training step the ranks agree whether any of
them saw one; if so all of them save one checkpoint together and stop before the next step, so no rank
is left waiting in a collective and the checkpoint holds whole steps. Under a SLURM batch job (srun,
not submitit, which requeues by itself) a SIGUSR1 (`#SBATCH --signal=SIGUSR1@90`: the time limit is
near) also makes global rank 0 requeue the job; a SIGTERM (scancel, preemption) does not. The process
exits with EXIT_PREEMPTED; the next start with `ckpt_path=auto` continues from the checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment

log = logging.getLogger("osum")

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped on purpose, resumable
SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class Preempted(SystemExit):
    """Raised on every rank once the preemption checkpoint is written; the process exits with EXIT_PREEMPTED."""

    def __init__(self) -> None:
        super().__init__(EXIT_PREEMPTED)


def slurm_job_to_requeue() -> str | None:
    """The (array-aware) id of this SLURM batch job, or None outside one or under submitit."""
    if not SLURMEnvironment.detect() or "SUBMITIT_EXECUTOR" in os.environ:
        return None
    if array_job := os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def scontrol_requeue(job_id: str) -> bool:
    try:
        result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.error("scontrol requeue %s failed: %s", job_id, e)
        return False
    if result.returncode != 0:
        log.error("scontrol requeue %s failed: %s", job_id, result.stderr.strip())
    return result.returncode == 0


class Preemption(L.Callback):
    """Owns SIGUSR1 and SIGTERM during training (Lightning restores the previous handlers when fit ends)."""

    def __init__(self, dirpath: str, filename: str = "preempted.ckpt", requeue: bool = True):
        self.path = Path(dirpath) / filename
        self.requeue = requeue
        self._received: signal.Signals | None = None
        self._stopping = False

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self._received = signal.Signals(signum)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            log.warning("training is not on the main thread: SIGUSR1/SIGTERM will not save a checkpoint")
            return
        for sig in SIGNALS:  # after Lightning installed its own handlers: these replace them
            signal.signal(sig, self._record)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._stopping or not trainer.strategy.reduce_boolean_decision(self._received is not None, all=False):
            return
        time_limit = trainer.strategy.reduce_boolean_decision(self._received == signal.SIGUSR1, all=False)
        trainer.save_checkpoint(self.path)
        job_id = slurm_job_to_requeue() if self.requeue and time_limit else None
        if trainer.is_global_zero:
            requeued = job_id is not None and scontrol_requeue(job_id)
            signame = self._received.name if self._received else "a signal to another rank"
            then = f"requeued SLURM job {job_id}" if requeued else "resume with ckpt_path=auto"
            log.warning("%s: saved %s at step %d; %s", signame, self.path, trainer.global_step, then)
        self._stopping = True

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        """Exit only now, once the step saved at its end has been logged too."""
        if self._stopping:
            raise Preempted()
