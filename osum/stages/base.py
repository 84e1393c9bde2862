"""What every stage shares: the backbone, global-token loss normalisation, optimiser, logging, skip totals,
and skipping steps whose loss or gradient is not finite."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Container, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist

from osum.data.features import HOP, apply_spec_masks, log_mel_batch
from osum.data.skips import SkipCounter
from osum.models.artifacts import leave_out_frozen_base, restore_frozen_base
from osum.models.backbone import build_backbone
from osum.models.labels import LabelChoices, tag_token_kinds
from osum.stages.faults import NonFiniteError, NonFiniteSteps  # noqa: F401  (NonFiniteError: re-exported)
from osum.stages.schedule import adamw_with_schedule
from osum.tasks import TaskRegistry
from osum.tasks.registry import UTTERANCE_LABELS
from osum.template import SpeechVocab

log = logging.getLogger("osum")

HEADS = ("text", "speech")
# Losses beside the heads', weighted by model.loss_weights (0: off): tags, the label-choice loss at label positions;
# voice, the voice-label loss of every labelled clip's utterance embedding (LabelChoices in osum.models.labels)
EXTRA_LOSSES = ("tags", "voice")


def per_task(tasks: list[str], out: Mapping[str, Any]) -> dict[str, tuple[float, float, float]]:
    """Summed loss, supervised tokens and correct tokens per task of a batch (both heads together)."""
    loss, tokens, correct = (sum(getattr(out[h], f) for h in HEADS).float()
                             for f in ("per_sample_loss", "per_sample_tokens", "per_sample_correct"))
    result = {}
    for tag in sorted(set(tasks)):
        idx = [i for i, t in enumerate(tasks) if t == tag]
        result[tag] = (float(loss[idx].sum()), float(tokens[idx].sum()), float(correct[idx].sum()))
    return result


def clip_label_ids(batch: Mapping[str, Any], kinds: list[str], choices: LabelChoices) -> torch.Tensor | None:
    """(N, K): each clip's label tag token id per kind, from its sample's ``labels``; -1 where unknown: a history
    clip, a kind the sample lacks or holds several of, a label that is not one token, the events of a cropped
    clip (they may lie in the cut part). None for a batch without clips."""
    keys = batch.get("clip_keys")
    if not keys:
        return None
    out = torch.full((len(keys), len(kinds)), -1, dtype=torch.long)
    cropped = batch.get("cropped") or [False] * len(batch["keys"])
    for i, (key, row) in enumerate(zip(keys, batch["clip_sample"].tolist())):
        if key != batch["keys"][row]:  # a history turn's clip: its labels are not the sample's
            continue
        for k, kind in enumerate(kinds):
            values = TaskRegistry.labels_of(batch["meta"][row], kind)
            if len(values) != 1 or (kind not in UTTERANCE_LABELS and cropped[row]):
                continue
            out[i, k] = choices.id_of_label[k].get(values[0], -1)
    return out


def model_inputs(batch: Mapping[str, Any], n_mels: int, cached: Container[str] = ()) -> dict[str, Any]:
    """A loader batch -> the tensors ``SpeechLLM.forward`` takes. With ``data.features: model`` the batch holds
    waveforms: their log-mel is computed here on the batch's device (float32 even under autocast) with the
    SpecAugment masks the loader drew, only for the clips whose key is not in ``cached`` (the frozen encoder's
    outputs of those are kept: their rows stay zero, at their lengths), so from the second epoch on no clip costs a
    log-mel."""
    mel, mel_lengths = batch.get("mel"), batch.get("mel_lengths")
    keys = batch.get("clip_keys", batch.get("keys"))
    if mel is None and batch.get("audio") is not None:
        audio, lengths = batch["audio"], batch["audio_lengths"]
        need = list(range(len(lengths))) if keys is None else [i for i, k in enumerate(keys) if k not in cached]
        with torch.autocast(device_type=audio.device.type, enabled=False):
            if len(need) == len(lengths):
                mel, mel_lengths = log_mel_batch(audio, lengths, n_mels)
            else:
                mel_lengths = lengths.to(audio.device) // HOP
                mel = audio.new_zeros(len(lengths), audio.shape[1] // HOP, n_mels, dtype=torch.float32)
                if need:
                    idx = torch.tensor(need, device=audio.device)
                    part, _ = log_mel_batch(audio[idx, : int(lengths[idx].max())], lengths[idx], n_mels)
                    mel[idx, : part.shape[1]] = part
            if batch.get("spec_masks") is not None:
                mel = apply_spec_masks(mel, batch["spec_masks"])
    return {"input_ids": batch["input_ids"], "text_targets": batch["text_targets"],
            "speech_targets": batch.get("speech_targets"), "mel": mel, "mel_lengths": mel_lengths,
            "clip_keys": keys, "ctc_targets": batch.get("ctc_targets"), "ctc_lengths": batch.get("ctc_lengths")}


def task_metric_name(tag: str) -> str:
    """``"<TRANSCRIBE> <GENDER>"`` -> ``"TRANSCRIBE+GENDER"`` (safe in every logger)."""
    return "+".join(re.findall(r"<([^<>]+)>", tag)) or "unknown"


class StageBase(NonFiniteSteps, L.LightningModule):
    """A thin LightningModule over ``SpeechLLM``; subclasses only name their stage."""

    stage_name = "base"

    def __init__(self, model: Mapping[str, Any], optim: Mapping[str, Any], scheduler: Mapping[str, Any],
                 text: Mapping[str, Any] | None = None, run_dir: str | None = None,
                 faults: Mapping[str, Any] | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.backbone, self.tokenizer = build_backbone(model)
        self.backbone.check_vocab(SpeechVocab(int(((text or {}).get("template") or {}).get("speech_codes", 4096))))
        weights = dict(model.get("loss_weights") or {})
        unknown = sorted(set(weights) - {*HEADS, *EXTRA_LOSSES})
        if unknown:
            raise ValueError(f"model.loss_weights: unknown key(s) {unknown}; the keys are {[*HEADS, *EXTRA_LOSSES]}")
        self.loss_weights = {h: float(weights.get(h, 1.0)) for h in HEADS}
        self._idle: dict[int, torch.nn.Parameter] | None = None  # parameters no micro-batch of this step used
        self.loss_weights.update({k: float(weights.get(k, 0.0)) for k in EXTRA_LOSSES})  # off unless asked
        self.tag_kinds, self._labels = tag_token_kinds(self.tokenizer, (text or {}).get("rendering") or {})
        for key in EXTRA_LOSSES:
            if self.loss_weights[key] and self._labels is None:
                raise ValueError(f"model.loss_weights.{key}: no label tag is a single token of this tokenizer")
        if self.backbone.voice_fusion and self._labels is None:
            raise ValueError("model.voice_fusion: no label tag is a single token of this tokenizer")
        self.backbone.use_label_ids(self._labels.ids if self._labels is not None else None)
        if self.loss_weights["voice"] and self.backbone.utterance is None:
            raise ValueError("model.loss_weights.voice trains the utterance embedding: set model.utterance_slots: 1")
        self.optim_cfg, self.sched_cfg = dict(optim), dict(scheduler)
        self.run_dir = run_dir
        self.skips = SkipCounter()
        self._last_step_time: float | None = None
        self.init_nonfinite(faults)
        self._val_sums: dict[str, list[float]] = {}

    # ------------------------------------------------------------------ loss over the global batch
    def _global_tokens(self, n_tokens: torch.Tensor) -> torch.Tensor:
        """Supervised tokens per head over all ranks: one all-reduce of a small vector."""
        n = n_tokens.detach().float().clone()
        if dist.is_available() and dist.is_initialized() and self.trainer.world_size > 1:
            dist.all_reduce(n)
        return n

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        now = time.perf_counter()
        bs = len(batch["keys"])
        if self._last_step_time is not None:
            self.log("audio_s_per_s", batch["audio_seconds"] / max(now - self._last_step_time, 1e-6),
                     prog_bar=True, batch_size=bs)
        self._last_step_time = now
        self.skips.merge(batch.get("skips") or {})
        choices = self._labels if self.loss_weights["tags"] else None
        out = self.backbone(**model_inputs(batch, self.backbone.encoder.n_mels, self.backbone.cached_clip_keys()), label_choices=choices)
        heads = [out[h] for h in HEADS]
        voice = None
        if self.loss_weights["voice"] and "voice" in out:
            voice = self._labels.voice_loss(out["voice"], clip_label_ids(batch, self.tag_kinds, self._labels),
                                            self.backbone.text_embed.weight)
        none = heads[0].n_tokens.new_zeros(())
        choice_count = out["text"].n_choices if choices is not None else none
        voice_count = voice[1].sum() if voice is not None else none
        tokens = self._global_tokens(torch.stack([h.n_tokens for h in heads] + [choice_count, voice_count]))
        # DDP averages gradients over ranks: scale so that each head's loss is its mean over all its supervised
        # tokens; the mean over ranks of what is logged is then the global mean, the same on every rank.
        loss = heads[0].loss_sum.new_zeros(())
        for name, head, n in zip(HEADS, heads, tokens.tolist()[: len(HEADS)]):
            if n > 0:
                head_loss = head.loss_sum * self.trainer.world_size / n
                loss = loss + self.loss_weights[name] * head_loss
                self.log(f"train/loss_{name}", head_loss.detach(), batch_size=bs, sync_dist=True)
                self.log(f"train/acc_{name}", head.n_correct.float() / head.n_tokens.clamp(min=1), batch_size=bs)
        if choices is not None and tokens[-2] > 0:  # which label, among its kind's (LabelChoices)
            choice_loss = out["text"].choice_loss_sum * self.trainer.world_size / tokens[-2]
            self.log("train/label_choice_loss", choice_loss.detach(), batch_size=bs, sync_dist=True)
            loss = loss + self.loss_weights["tags"] * choice_loss
        if voice is not None and tokens[-1] > 0:  # every labelled clip's voice embedding against its labels
            voice_loss = voice[0] * self.trainer.world_size / tokens[-1]
            self.log("train/voice_label_loss", voice_loss.detach(), batch_size=bs, sync_dist=True)
            loss = loss + self.loss_weights["voice"] * voice_loss
            for kind, n, hits in zip(self.tag_kinds, voice[1].tolist(), voice[2].tolist()):
                if n:
                    self.log(f"train/voice_acc_{kind}", hits / n, batch_size=1)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=bs, sync_dist=True)
        if "ctc_loss" in out:  # auxiliary: this rank's mean per transcript token, averaged over ranks by DDP
            self.log("train/ctc_loss", out["ctc_loss"].detach(), prog_bar=True, batch_size=bs)
            loss = loss + self.backbone.ctc_weight * out["ctc_loss"]
        self.log("train/token_acc", sum(h.n_correct for h in heads).float() / sum(h.n_tokens for h in heads).clamp(min=1),
                 batch_size=bs)
        for tag, (loss_sum, n, _) in per_task(batch["tasks"], out).items():  # this rank's batch only
            self.log(f"train/loss_{task_metric_name(tag)}", loss_sum / max(n, 1), batch_size=1)
        for kind, (t_loss, t_n, t_hits) in self._tag_stats(out["text"]).items():  # this rank's tags
            self.log(f"train/tag_loss_{kind}", t_loss / t_n, batch_size=1)
            self.log(f"train/tag_acc_{kind}", t_hits / t_n, batch_size=1)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], prog_bar=True, batch_size=1)
        return loss + self._touch_idle(out["used"])

    def _tag_stats(self, head) -> dict[str, tuple[float, float, float]]:
        """Cross-entropy sum, count and hits at the positions whose target is a label tag, per tag kind: the
        tags' own learning curve, apart from the transcript and the EOS that follows a tag."""
        if self._labels is None or head.token_targets.numel() == 0:
            return {}
        kinds = self._labels.kinds(head.token_targets)
        out = {}
        for k, kind in enumerate(self.tag_kinds):
            at = kinds == k
            n = int(at.sum())
            if n:
                out[kind] = (float(head.token_loss[at].sum()), float(n), float(head.token_hits[at].sum()))
        return out

    def _touch_idle(self, used: set[str]) -> torch.Tensor | float:
        """Steps may skip parts of the backbone (a text-only batch runs no encoder or adapter). DDP without its
        unused-parameter search expects a gradient for every trainable parameter, so under DDP the skipped
        ones get an exact zero through the graph; ``on_before_optimizer_step`` then drops those gradients, so
        the optimizer leaves them alone as a single process would. Every rank skips the same parts: the
        batch group, which decides them, is drawn alike on every rank."""
        idle = {id(p): p for p in self.backbone.idle_parameters(used)}
        self._idle = idle if self._idle is None else {k: p for k, p in self._idle.items() if k in idle}
        if not idle or self.trainer.world_size == 1:
            return 0.0
        return 0.0 * torch.stack([p.view(-1)[0].float() for p in idle.values()]).sum()

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._last_step_time = None  # do not count validation time as training throughput
        out = self.backbone(**model_inputs(batch, self.backbone.encoder.n_mels, self.backbone.cached_clip_keys()))
        sums = {f"task:{tag}": values for tag, values in per_task(batch["tasks"], out).items()}
        sums.update({f"head:{h}": (float(out[h].loss_sum), float(out[h].n_tokens), float(out[h].n_correct))
                     for h in HEADS})
        sums.update({f"tag:{kind}": values for kind, values in self._tag_stats(out["text"]).items()})
        if self.loss_weights["voice"] and "voice" in out:  # what the voice embedding alone says of each kind
            _, counts, hits = self._labels.voice_loss(out["voice"], clip_label_ids(batch, self.tag_kinds, self._labels),
                                                      self.backbone.text_embed.weight)
            sums.update({f"voice:{kind}": (0.0, float(n), float(h))
                         for kind, n, h in zip(self.tag_kinds, counts.tolist(), hits.tolist()) if n})
        for key, values in sums.items():
            acc = self._val_sums.setdefault(key, [0.0, 0.0, 0.0])
            for i, v in enumerate(values):
                acc[i] += v

    def on_validation_epoch_start(self) -> None:
        self._val_sums: dict[str, list[float]] = {}

    def on_validation_epoch_end(self) -> None:
        """Totals over all ranks, gathered once per validation (ranks may have run different batch counts)."""
        sums = self._val_sums
        if dist.is_available() and dist.is_initialized() and self.trainer.world_size > 1:
            gathered: list = [None] * self.trainer.world_size
            dist.all_gather_object(gathered, sums)
            sums = {}
            for part in gathered:
                for tag, values in part.items():
                    acc = sums.setdefault(tag, [0.0, 0.0, 0.0])
                    for i, v in enumerate(values):
                        acc[i] += v
        if not sums:
            return
        heads = {k.removeprefix("head:"): v for k, v in sums.items() if k.startswith("head:")}
        loss_sum, tokens, correct = (sum(v[i] for v in heads.values()) for i in range(3))
        self.log("val/loss", loss_sum / max(tokens, 1), prog_bar=True)
        self.log("val/token_acc", correct / max(tokens, 1))
        for name, (h_loss, h_tokens, h_correct) in heads.items():
            if h_tokens:
                self.log(f"val/loss_{name}", h_loss / h_tokens)
                self.log(f"val/acc_{name}", h_correct / h_tokens)
        for key, (t_loss, t_tokens, t_correct) in sums.items():
            if key.startswith("tag:") and t_tokens:
                self.log(f"val/tag_loss_{key[4:]}", t_loss / t_tokens)
                self.log(f"val/tag_acc_{key[4:]}", t_correct / t_tokens)
            if key.startswith("voice:") and t_tokens:
                self.log(f"val/voice_acc_{key[6:]}", t_correct / t_tokens)
            if key.startswith("task:"):
                self.log(f"val/loss_{task_metric_name(key.removeprefix('task:'))}", t_loss / max(t_tokens, 1))

    def on_train_end(self) -> None:
        log.info("rank %d: %s", self.global_rank, self.skips.summary())
        if self.run_dir:
            self.skips.write(Path(self.run_dir) / f"skipped_samples_rank{self.global_rank}.json")

    # ------------------------------------------------------------------ checkpoints without the frozen base
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Frozen pretrained tensors stay in their folders (``model.checkpoint_weights``, osum.models.artifacts)."""
        leave_out_frozen_base(checkpoint, self.backbone, self.hparams["model"])

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        restore_frozen_base(checkpoint, self.state_dict())  # the model was just built from the pretrained folders

    # ------------------------------------------------------------------ non-finite steps
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """A NaN/inf gradient (a non-finite loss gives one) on any rank: drop all gradients, so no update."""
        for p in (self._idle or {}).values():  # parts no micro-batch of this step ran: no update (see _touch_idle)
            p.grad = None
        self._idle = None
        self.skip_if_nonfinite(optimizer)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        return adamw_with_schedule(self.backbone, self.optim_cfg, self.sched_cfg, self.trainer.max_steps)
