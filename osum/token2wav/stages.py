"""LightningModules of token2wav for `python -m osum.train`: ``FlowStage`` (codes -> mel) and ``VocoderStage``
(mel -> audio). Each keeps its network as ``backbone`` (what ``init_from`` loads into), logs ``train/loss``
with its parts and ``val/loss``, skips optimizer steps whose gradient is not finite, totals the data skips
into ``run_dir/skipped_samples_rank*.json``, and writes its configs under ``"token2wav"`` in every checkpoint
(what ``osum.token2wav.synthesizer.Token2Wav.load`` reads)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from osum.data.skips import SkipCounter
from osum.stages.faults import NonFiniteSteps
from osum.stages.schedule import adamw_with_schedule
from osum.token2wav.flow import FlowConfig, FlowModel
from osum.token2wav.mel import MelConfig
from osum.token2wav.vocoder import Vocoder, VocoderConfig, VocoderLoss

log = logging.getLogger("osum")

CHECKPOINT_KEY = "token2wav"
def split_model_config(model: Mapping[str, Any]) -> tuple[MelConfig, dict[str, Any]]:
    """(the ``mel`` config, the network's own keys) of a ``model`` config."""
    own = dict(model)
    return MelConfig.from_dict(own.pop("mel", None)), own


class Token2WavStage(NonFiniteSteps, L.LightningModule):
    """What both stages share: optimiser and schedule, skip totals, non-finite steps, the checkpoint record."""

    kind = "base"

    def __init__(self, model: Mapping[str, Any], optim: Mapping[str, Any], scheduler: Mapping[str, Any],
                 text: Mapping[str, Any] | None = None, run_dir: str | None = None,
                 faults: Mapping[str, Any] | None = None):
        super().__init__()
        self.save_hyperparameters("model", "optim", "scheduler")
        self.mel_cfg, self.net_cfg = split_model_config(model)
        self.optim_cfg, self.sched_cfg, self.run_dir = dict(optim), dict(scheduler), run_dir
        self.init_nonfinite(faults)
        self.skips = SkipCounter()
        self._last_step_time: float | None = None
        self.backbone: nn.Module = self.build()

    def build(self) -> nn.Module:
        raise NotImplementedError

    def config_record(self) -> dict[str, Any]:
        raise NotImplementedError

    def losses(self, batch: Mapping[str, Any], generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        bs = len(batch["keys"])
        now = time.perf_counter()
        if self._last_step_time is not None:
            self.log("audio_s_per_s", batch["audio_seconds"] / max(now - self._last_step_time, 1e-6),
                     prog_bar=True, batch_size=bs)
        self._last_step_time = now
        self.skips.merge(batch.get("skips") or {})
        parts = self.losses(batch, None)
        for name, value in parts.items():
            self.log(f"train/{'loss' if name == 'loss' else 'loss_' + name}", value.detach(),
                     prog_bar=name == "loss", batch_size=bs, sync_dist=True)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], prog_bar=True, batch_size=1)
        return parts["loss"]

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._last_step_time = None
        generator = torch.Generator().manual_seed(batch_idx)  # the same noise and times at every validation
        parts = self.losses(batch, generator)
        for name, value in parts.items():
            self.log(f"val/{'loss' if name == 'loss' else 'loss_' + name}", value, prog_bar=name == "loss",
                     batch_size=len(batch["keys"]), sync_dist=True)

    def on_train_end(self) -> None:
        log.info("rank %d: %s", self.global_rank, self.skips.summary())
        if self.run_dir:
            self.skips.write(Path(self.run_dir) / f"skipped_samples_rank{self.global_rank}.json")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = {"kind": self.kind, **self.config_record()}

    # ------------------------------------------------------------------ non-finite steps
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.skip_if_nonfinite(optimizer)

    def configure_optimizers(self):
        return adamw_with_schedule(self.backbone, self.optim_cfg, self.sched_cfg, self.trainer.max_steps)


class FlowStage(Token2WavStage):
    """Speech codes -> log mel (``osum.token2wav.flow``). Losses: ``train/loss`` = ``loss_flow`` +
    prior_weight x ``loss_prior``."""

    kind = "flow"

    def build(self) -> FlowModel:
        cfg = FlowConfig.from_dict(self.net_cfg)
        if cfg.n_mels != self.mel_cfg.n_mels or cfg.frames_per_code != self.mel_cfg.frames_per_code:
            raise ValueError(f"model: the flow's n_mels {cfg.n_mels} / frames_per_code {cfg.frames_per_code} differ "
                             f"from model.mel ({self.mel_cfg.n_mels} mels, {self.mel_cfg.frames_per_code} frames per code)")
        return FlowModel(cfg)

    def config_record(self) -> dict[str, Any]:
        return {"model": self.backbone.cfg.to_dict(), "mel": self.mel_cfg.to_dict()}

    def losses(self, batch: Mapping[str, Any], generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        if "codes" not in batch:
            raise ValueError("FlowStage needs batches with codes (data.mode=flow)")
        return self.backbone.loss(batch["codes"], batch["code_lengths"], batch["mel"], generator=generator,
                                  speakers=batch.get("speakers"))


class VocoderStage(Token2WavStage):
    """Log mel -> audio (``osum.token2wav.vocoder``). Losses: ``train/loss`` = stft_weight x (``loss_sc`` +
    ``loss_log_mag``) + mel_weight x ``loss_mel``."""

    kind = "vocoder"

    def build(self) -> Vocoder:
        cfg = VocoderConfig.from_dict(self.net_cfg)
        self.criterion = VocoderLoss(cfg, self.mel_cfg)
        return Vocoder(cfg, self.mel_cfg)

    def config_record(self) -> dict[str, Any]:
        return {"model": self.backbone.cfg.to_dict(), "mel": self.mel_cfg.to_dict()}

    def losses(self, batch: Mapping[str, Any], generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        if "audio" not in batch:
            raise ValueError("VocoderStage needs batches with audio segments (data.mode=vocoder)")
        return self.criterion(self.backbone(batch["mel"]), batch["audio"])
