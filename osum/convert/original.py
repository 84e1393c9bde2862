"""An original OSUM / OSUM-EChat ``.pt`` -> a Lightning checkpoint of the configured backbone
(the tensor mapping is ``osum.models.original``; the checkpoint format is ``osum.models.artifacts``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from osum.models.artifacts import save_checkpoint
from osum.models.backbone import build_backbone
from osum.models.original import ImportReport, import_original, read_original
from osum.text import text_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def compose_run_config(config: str, overrides: Sequence[str] = ()) -> dict:
    """The resolved run config of ``configs/train.yaml`` composed with ``overrides`` (as on the
    ``osum.train`` command line) and ``config``: a model config name under ``configs/model``, or a YAML
    file (a run's saved ``config.yaml``, or a bare model config) merged over the composition, after
    which dotted ``key.sub=value`` overrides are applied once more so that they win over the file."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    is_file = Path(config).suffix in (".yaml", ".yml")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*([] if is_file else [f"model={config}"]), *overrides])
    if is_file:
        loaded = OmegaConf.load(config)
        if "defaults" in loaded:
            raise ValueError(f"{config} has a Hydra defaults list: pass its name under configs/model instead")
        dotted = [o for o in overrides if re.match(r"^[\w-]+\.[\w.-]+=", o)]
        OmegaConf.set_struct(cfg, False)
        cfg = OmegaConf.merge(cfg, loaded if "model" in loaded else {"model": loaded}, OmegaConf.from_dotlist(dotted))
    return OmegaConf.to_container(cfg, resolve=True)


def import_original_checkpoint(src: str, config: str, out: Path, overrides: Sequence[str] = (),
                               allow_partial: bool = False, lora_alpha: float | None = None) -> ImportReport:
    """Build the configured backbone, load an original ``.pt`` into it, save it as a checkpoint with the run's
    model, optimiser and text configs (what any stage's ``load_from_checkpoint`` and ``load_backbone`` read)."""
    cfg = compose_run_config(config, overrides)
    backbone, _ = build_backbone(cfg["model"])
    if lora_alpha is None:
        lora_alpha = (cfg["model"]["llm"].get("lora") or {}).get("alpha")
    report = import_original(backbone, read_original(src), allow_partial=allow_partial, lora_alpha=lora_alpha)
    hparams = {"model": cfg["model"], "optim": cfg["optim"], "scheduler": cfg["scheduler"], "text": text_config(cfg),
               "run_dir": None, "faults": cfg.get("faults")}
    save_checkpoint(backbone, hparams, out)
    return report
