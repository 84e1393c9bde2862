"""`python -m osum.train +recipe=<name> [key=value ...]`: compose the config, build, and fit.

Everything is wired here and nowhere else: the config picks the data module, the stage, the trainer,
its loggers and callbacks; this file only resolves the run directory and the checkpoint to resume.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from osum.config import ConfigError, validate

log = logging.getLogger("osum")


def resolve_precision(precision: str) -> str:
    if precision != "auto":
        return precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def resolve_ckpt(ckpt_path: str | None, run_dir: Path) -> str | None:
    """``auto``: the newest checkpoint in the run directory, or none (a fresh start)."""
    if ckpt_path != "auto":
        return ckpt_path
    ckpts = sorted((run_dir / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        log.info("ckpt_path=auto: no checkpoint in %s, starting fresh", run_dir / "checkpoints")
        return None
    log.info("ckpt_path=auto: resuming from %s", ckpts[-1])
    return str(ckpts[-1])


def run(cfg: DictConfig) -> dict:
    """Train one stage as configured; returns the final logged metrics."""
    validate(cfg)
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if int(__import__("os").environ.get("RANK", 0)) == 0:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    container = OmegaConf.to_container(cfg, resolve=True)
    datamodule = instantiate(cfg.data, _convert_="all")
    text = {"tokenizer": container["model"]["llm"]["tokenizer"], "template": container["template"],
            "rendering": container["rendering"]}
    stage = instantiate(cfg.stage, _convert_="all", model=container["model"], optim=container["optim"],
                        scheduler=container["scheduler"], text=text, run_dir=str(run_dir))
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer: L.Trainer = instantiate(cfg.trainer, precision=resolve_precision(str(cfg.trainer.precision)),
                                     logger=loggers or False, callbacks=callbacks, default_root_dir=str(run_dir))
    trainer.fit(stage, datamodule=datamodule, ckpt_path=resolve_ckpt(cfg.ckpt_path, run_dir))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if trainer.is_global_zero:
        log.info("finished: %s", {k: round(v, 4) for k, v in sorted(metrics.items())})
    return metrics


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except ConfigError as e:
        log.error("%s", e)
        sys.exit(2)


if __name__ == "__main__":
    main()
