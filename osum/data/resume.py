"""Keeps the data stream's position in the Lightning checkpoint, for exact resume.

Every training batch carries its reader's state after it. This callback remembers the state of the
last *trained* batch of every reader (prefetched batches do not count), gathers them from all ranks
when a checkpoint is written, and hands them back to the data module when a run resumes. Optionally
it writes a ledger of the sample keys trained at each step (``ledger: true``): an audit trail that
shows which data the model saw, and the ground truth of the resume tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch.distributed as dist

CHECKPOINT_KEY = "osum_data_stream"


class LoaderResume(L.Callback):
    def __init__(self, ledger: bool = False, ledger_dir: str | None = None):
        self.ledger, self.ledger_dir = ledger, ledger_dir
        self.states: dict[str, dict] = {}
        self.last_role: int | None = None
        self.workers = 1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        info = batch.get("loader_state") if isinstance(batch, dict) else None
        if info:
            self.states[str(info["role"])] = info["state"]
            self.last_role = int(info["role"])
        if self.ledger and isinstance(batch, dict):
            path = Path(self.ledger_dir or trainer.default_root_dir) / f"trained_keys_rank{trainer.global_rank}.txt"
            with open(path, "a") as f:
                f.write(f"{trainer.global_step}\t{' '.join(batch['keys'])}\n")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.workers = max(getattr(trainer.train_dataloader, "num_workers", 0), 1)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        mine = {"rank": trainer.global_rank, "world": trainer.world_size, "workers": self.workers,
                "next_role": 0 if self.last_role is None else (self.last_role + 1) % self.workers,
                "states": dict(self.states)}
        gathered: list = [mine]
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            gathered = [None] * trainer.world_size
            dist.all_gather_object(gathered, mine)
        checkpoint[CHECKPOINT_KEY] = sorted(gathered, key=lambda p: p["rank"])

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        saved = checkpoint.get(CHECKPOINT_KEY)
        datamodule = trainer.datamodule
        if saved and datamodule is not None and hasattr(datamodule, "resume_from"):
            datamodule.resume_from(saved)
            mine = next((p for p in saved if p["rank"] == trainer.global_rank), None)
            if mine and mine["world"] == trainer.world_size:
                self.states = dict(mine["states"])
                self.last_role = None if not self.states else (mine["next_role"] - 1) % mine["workers"]
