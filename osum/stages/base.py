"""What every stage shares: the backbone, global-token loss normalisation, optimiser, logging, skip totals,
and skipping steps whose loss or gradient is not finite."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist

from osum.data.skips import SkipCounter
from osum.models.backbone import build_backbone
from osum.stages.schedule import lr_factor

log = logging.getLogger("osum")


class NonFiniteError(RuntimeError):
    """Too many optimizer steps in a row had a NaN or inf loss or gradient."""


def task_metric_name(tag: str) -> str:
    """``"<TRANSCRIBE> <GENDER>"`` -> ``"TRANSCRIBE+GENDER"`` (safe in every logger)."""
    return "+".join(re.findall(r"<([^<>]+)>", tag)) or "unknown"


class StageBase(L.LightningModule):
    """A thin LightningModule over ``SpeechLLM``; subclasses only name their stage."""

    stage_name = "base"

    def __init__(self, model: Mapping[str, Any], optim: Mapping[str, Any], scheduler: Mapping[str, Any],
                 text: Mapping[str, Any] | None = None, run_dir: str | None = None,
                 faults: Mapping[str, Any] | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.backbone, self.tokenizer = build_backbone(model)
        self.optim_cfg, self.sched_cfg = dict(optim), dict(scheduler)
        self.run_dir = run_dir
        self.skips = SkipCounter()
        self._last_step_time: float | None = None
        self.max_nonfinite_in_row = int((faults or {}).get("max_nonfinite_in_row", 10))
        self._nonfinite_in_row = self._nonfinite_total = 0

    # ------------------------------------------------------------------ loss over the global batch
    def _global_tokens(self, n_tokens: torch.Tensor) -> torch.Tensor:
        n = n_tokens.detach().float().clone()
        if dist.is_available() and dist.is_initialized() and self.trainer.world_size > 1:
            dist.all_reduce(n)
        return n.clamp(min=1.0)

    def _step(self, batch: Mapping[str, Any], split: str) -> torch.Tensor:
        out = self.backbone(batch)
        bs = len(batch["keys"])
        if split == "train":
            # DDP averages gradients over ranks: scale so that the result is the mean over all supervised tokens.
            loss = out["loss_sum"] * self.trainer.world_size / self._global_tokens(out["n_tokens"])
            # the mean of these over ranks is the global token mean: the same value is logged on every rank
            self.log("train/loss", loss.detach(), prog_bar=True, batch_size=bs, sync_dist=True)
        else:
            loss = out["loss_sum"] / out["n_tokens"].clamp(min=1)
            self.log(f"{split}/loss", out["loss_sum"] / out["n_tokens"].clamp(min=1), on_epoch=True,
                     sync_dist=True, prog_bar=True, batch_size=bs)
        self.log(f"{split}/token_acc", out["n_correct"].float() / out["n_tokens"].clamp(min=1),
                 on_step=split == "train", on_epoch=split != "train", sync_dist=split != "train", batch_size=bs)
        for tag in sorted(set(batch["tasks"])):
            idx = [i for i, t in enumerate(batch["tasks"]) if t == tag]
            tokens = out["per_sample_tokens"][idx].sum().clamp(min=1)
            self.log(f"{split}/loss_{task_metric_name(tag)}", out["per_sample_loss"][idx].sum() / tokens,
                     on_step=False, on_epoch=True, sync_dist=split != "train", batch_size=len(idx))
        return loss

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        now = time.perf_counter()
        if self._last_step_time is not None:
            self.log("audio_s_per_s", batch["audio_seconds"] / max(now - self._last_step_time, 1e-6),
                     prog_bar=True, batch_size=len(batch["keys"]))
        self._last_step_time = now
        self.skips.merge(batch.get("skips") or {})
        loss = self._step(batch, "train")
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], prog_bar=True, batch_size=1)
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        self._last_step_time = None  # do not count validation time as training throughput
        return self._step(batch, "val")

    def on_train_end(self) -> None:
        log.info("rank %d: %s", self.global_rank, self.skips.summary())
        if self.run_dir:
            self.skips.write(Path(self.run_dir) / f"skipped_samples_rank{self.global_rank}.json")

    # ------------------------------------------------------------------ non-finite steps
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """A NaN/inf gradient (a non-finite loss gives one) on any rank: drop all gradients, so no update."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        finite = bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))
        if self.trainer.strategy.reduce_boolean_decision(not finite, all=False):
            optimizer.zero_grad(set_to_none=True)  # AdamW leaves parameters without a gradient untouched
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

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        o = self.optim_cfg
        decay, no_decay = [], []
        for name, p in self.backbone.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
        if not decay and not no_decay:
            raise ValueError("no trainable parameters: check model.freeze / model.unfreeze")
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": o.get("weight_decay", 0.01)},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=o["lr"], betas=tuple(o.get("betas", (0.9, 0.99))), eps=o.get("eps", 1e-6))
        s = self.sched_cfg
        total = self.trainer.max_steps if self.trainer.max_steps and self.trainer.max_steps > 0 else 100_000
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_factor(step, s.get("name", "cosine"), s.get("warmup_steps", 0), total,
                                        s.get("min_ratio", 0.0)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
