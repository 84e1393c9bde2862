"""Optimizer steps whose gradient is not finite (a NaN/inf loss gives one): dropped on every rank (no update),
counted in ``train/skipped_nonfinite``, and after ``faults.max_nonfinite_in_row`` in a row a checkpoint and a
stop. A mixin for every stage's LightningModule: the speech LLM's and token2wav's."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


class NonFiniteError(RuntimeError):
    """Too many optimizer steps in a row had a NaN or inf loss or gradient."""


class NonFiniteSteps:
    """Call ``init_nonfinite(faults)`` in ``__init__`` and ``skip_if_nonfinite(optimizer)`` from
    ``on_before_optimizer_step``; ``on_train_batch_end`` stops the run when too many came in a row."""

    def init_nonfinite(self, faults: Mapping[str, Any] | None) -> None:
        self.max_nonfinite_in_row = int((faults or {}).get("max_nonfinite_in_row", 10))
        self._nonfinite_in_row = self._nonfinite_total = 0

    def skip_if_nonfinite(self, optimizer: torch.optim.Optimizer) -> None:
        """A NaN/inf gradient on any rank: drop all gradients, so no update (AdamW leaves parameters without a
        gradient untouched)."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        finite = bool(torch.isfinite(torch.nn.utils.get_total_norm(grads))) if grads else True
        if self.trainer.strategy.reduce_boolean_decision(not finite, all=False):
            optimizer.zero_grad(set_to_none=True)
            self._nonfinite_in_row += 1
            self._nonfinite_total += 1
        else:
            self._nonfinite_in_row = 0
        self.log("train/skipped_nonfinite", float(self._nonfinite_total), batch_size=1)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._nonfinite_in_row < self.max_nonfinite_in_row:
            return
        ckpt_dir = getattr(self.trainer.checkpoint_callback, "dirpath", None) or self.trainer.default_root_dir
        path = Path(ckpt_dir) / f"nonfinite-step{self.trainer.global_step:07d}.ckpt"
        self.trainer.save_checkpoint(path)
        raise NonFiniteError(f"{self._nonfinite_in_row} steps in a row had a NaN/inf loss or gradient (up to step "
                             f"{self.trainer.global_step}; {self._nonfinite_total} in all) and were skipped; saved "
                             f"{path} (weights from before them). Lower optim.lr, check the data, or raise "
                             "faults.max_nonfinite_in_row.")
