"""`python -m osum.train +recipe=<name> [key=value ...]`: compose the config, build, and fit.

Everything is wired here and nowhere else: the config picks the data module, the stage, the trainer,
its strategy, loggers and callbacks; this file only resolves the run directory (one per job in a
multirun), the checkpoint to resume or the weights to start from, and the cluster environment.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from osum.callbacks.checkpoint import newest_valid_checkpoint
from osum.config import ConfigError, trains_speech_llm, validate
from osum.models.artifacts import load_initial_weights
from osum.text import text_config

log = logging.getLogger("osum")
# Per-task training losses are per rank on purpose (a task may be absent from a rank's batch; syncing
# keys that differ between ranks would hang): Lightning's advice to sync them does not apply.
warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting.*")


def resolve_precision(precision: str) -> str:
    if precision != "auto":
        return precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def resolve_ckpt(ckpt_path: str | None, run_dir: Path) -> str | None:
    """``auto``: the newest complete checkpoint in the run directory (broken ones skipped), or none."""
    if ckpt_path != "auto":
        return ckpt_path
    found = newest_valid_checkpoint(run_dir / "checkpoints")
    if found is None:
        log.info("ckpt_path=auto: no complete checkpoint in %s, starting fresh", run_dir / "checkpoints")
        return None
    log.info("ckpt_path=auto: resuming from %s", found)
    return str(found)


def use_job_dir(cfg: DictConfig) -> None:
    """In a multirun every job runs in its own sweep subdirectory, under its own run name (logger id)."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    job = HydraConfig.get()
    cfg.run_dir = job.runtime.output_dir
    cfg.run_name = f"{cfg.run_name}-{job.job.num}"


def cluster_plugins() -> list:
    """Under srun, Lightning's SLURM environment for ranks and addresses, without its own requeue handler:
    osum.callbacks.preemption.Preemption owns SIGUSR1/SIGTERM (recipes/mini/README.md, "Scale and faults")."""
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


@rank_zero_only
def write_config(cfg: DictConfig, run_dir: Path) -> None:
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, L.Trainer]:
    """The data module, the stage and the trainer (with its loggers, callbacks and plugins) that ``cfg`` names,
    writing into ``cfg.run_dir``."""
    container, run_dir = OmegaConf.to_container(cfg, resolve=True), str(Path(cfg.run_dir))
    datamodule = instantiate(cfg.data, _convert_="all")
    stage = instantiate(cfg.stage, _convert_="all", model=container["model"], optim=container["optim"],
                        scheduler=container["scheduler"],
                        text=text_config(container) if trains_speech_llm(cfg) else None, run_dir=run_dir,
                        faults=container["faults"])
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    plugins = [*instantiate(cfg.trainer.get("plugins") or []), *cluster_plugins()]
    trainer: L.Trainer = instantiate(cfg.trainer, precision=resolve_precision(str(cfg.trainer.precision)),
                                     logger=loggers or False, callbacks=callbacks, plugins=plugins,
                                     default_root_dir=run_dir)
    return datamodule, stage, trainer


def run(cfg: DictConfig) -> dict:
    """Train one stage as configured; returns the final logged metrics."""
    use_job_dir(cfg)
    validate(cfg)
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    datamodule, stage, trainer = build(cfg)
    write_config(cfg, run_dir)
    for logger in trainer.loggers:  # rank zero only, inside each logger
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    ckpt_path = resolve_ckpt(cfg.ckpt_path, run_dir)
    if cfg.init_from and ckpt_path is None:
        load_initial_weights(stage.backbone, cfg.init_from)
    elif cfg.init_from:
        log.info("resuming from %s: init_from=%s is not applied", ckpt_path, cfg.init_from)
    trainer.fit(stage, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    log.info("rank %d finished at step %d: %s", trainer.global_rank, trainer.global_step,
             {k: round(v, 4) for k, v in sorted(metrics.items())})
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
