"""Checks on a composed config that Hydra cannot make itself: values, combinations, resolution.

Unknown keys given on the command line are already refused by Hydra (the composed config is in struct
mode); this module refuses wrong values at start, naming the key, before any data or model is built.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

PRECISIONS = {"auto", "32-true", "32", "bf16-mixed", "bf16-true", "16-mixed", "16-true", "64-true"}


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key}: {message}")


def validate(cfg: DictConfig) -> None:
    """Resolve every interpolation and check the values that would otherwise fail late."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"config cannot be resolved: {e}") from None
    t = cfg.trainer
    _require(str(t.precision) in PRECISIONS, "trainer.precision", f"{t.precision!r} is not one of {sorted(PRECISIONS)}")
    _require(isinstance(t.max_steps, int) and t.max_steps > 0, "trainer.max_steps",
             f"must be a positive int (the train stream is infinite), got {t.max_steps!r}")
    _require(cfg.template.layout in ("osum", "chatml"), "template.layout", f"{cfg.template.layout!r} not osum|chatml")
    _require(float(cfg.optim.lr) > 0, "optim.lr", f"must be > 0, got {cfg.optim.lr}")
    _require(int(cfg.faults.max_nonfinite_in_row) > 0, "faults.max_nonfinite_in_row",
             f"must be > 0, got {cfg.faults.max_nonfinite_in_row}")
    _require(cfg.scheduler.name in ("cosine", "inverse_sqrt", "constant"), "scheduler.name",
             f"{cfg.scheduler.name!r} not cosine|inverse_sqrt|constant")
    if trains_speech_llm(cfg):
        _validate_speech_llm(cfg)


def trains_speech_llm(cfg: DictConfig) -> bool:
    """Whether the run's stage trains the speech LLM (``osum.stages.*``: understanding, tts, dialogue); the
    token2wav stages (``osum.token2wav.stages``) have their own networks, model and data keys."""
    return str(cfg.stage.get("_target_", "")).startswith("osum.stages.")


def _validate_speech_llm(cfg: DictConfig) -> None:
    """The checks of the speech LLM's model, template and data keys."""
    strides = list(cfg.template.strides)
    _require(strides == [2, *[s for s in cfg.model.adapter.strides if s != 1]], "template.strides",
             f"{strides} must be the encoder stride 2 followed by model.adapter.strides without 1s "
             f"({list(cfg.model.adapter.strides)})")
    codes = int(cfg.template.get("speech_codes", 4096))
    _require(int(cfg.model.speech_token_num) == codes + 1, "model.speech_token_num",
             f"must be template.speech_codes + 1 = {codes + 1} (codes and the boundary S), got {cfg.model.speech_token_num}")
    slots = int(cfg.model.get("utterance_slots", 0))
    _require(slots in (0, 1), "model.utterance_slots", f"must be 0 or 1, got {slots}")
    _require(int(cfg.template.get("utterance_slots", 0)) == slots, "template.utterance_slots",
             f"must equal model.utterance_slots ({slots}): the template lays out that many extra speech embeddings")
    if cfg.model.encoder_cache:
        _require(any(str(p).startswith("^encoder") for p in cfg.model.freeze), "model.encoder_cache",
                 "needs a frozen encoder (add '^encoder\\.' to model.freeze)")
        _require(not cfg.data.get("spec_augment"), "model.encoder_cache",
                 "cached encoder outputs cannot see SpecAugment: set data.spec_augment=null")
    _require(cfg.data.get("features", "loader") in ("loader", "model"), "data.features",
             f"{cfg.data.get('features')!r} not loader|model")
    _require(int(cfg.model.get("encoder_sub_batches", 1)) >= 1, "model.encoder_sub_batches", "must be >= 1")
    if float(cfg.model.get("ctc_weight", 0.0)) > 0:
        _require(bool(cfg.data.get("ctc_targets")), "model.ctc_weight", "needs data.ctc_targets=true (transcript ids)")
    _require(cfg.model.get("checkpoint_weights", "trainable") in ("trainable", "full"), "model.checkpoint_weights",
             f"{cfg.model.get('checkpoint_weights')!r} not trainable|full")
    for key in ("max_tokens", "max_frames", "max_samples", "buffer_size"):
        _require(int(cfg.data.batch[key]) > 0, f"data.batch.{key}", "must be > 0")
