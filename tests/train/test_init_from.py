"""`init_from=PATH`: weights only, from a training checkpoint or an export folder, into the next stage's
backbone (here with LoRA added: its base layers take the loaded weights, its adapters start fresh)."""

import logging

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from osum.export import export
from osum.models.artifacts import load_initial_weights
from osum.models.backbone import build_backbone
from osum.text import text_config
from osum.train import run


@pytest.fixture
def stage1_ckpt(compose_train, tmp_path):
    """A Lightning checkpoint of a tiny stage without LoRA."""
    cfg = compose_train()
    c = OmegaConf.to_container(cfg, resolve=True)
    stage = instantiate(cfg.stage, _convert_="all", model=c["model"], optim=c["optim"], scheduler=c["scheduler"],
                        text=text_config(c))
    path = tmp_path / "stage1.ckpt"
    torch.save({"state_dict": stage.state_dict(), "hyper_parameters": dict(stage.hparams), "global_step": 9,
                "loops": {}, "pytorch-lightning_version": L.__version__}, path)
    return path, stage.backbone


@pytest.mark.parametrize("source", ["checkpoint", "export"])
def test_weights_load_across_a_lora_wrapper(source, stage1_ckpt, compose_train, tmp_path):
    path, stage1 = stage1_ckpt
    if source == "export":
        path = export(path, tmp_path / "export")
    cfg = compose_train("model.llm.lora.enabled=true")
    backbone, _ = build_backbone(OmegaConf.to_container(cfg.model, resolve=True))
    missing, unexpected = load_initial_weights(backbone, path)
    assert not unexpected and missing and all("lora_" in k or k.endswith("lm_head.weight") for k in missing)
    q_proj = backbone.llm.get_base_model().model.layers[0].self_attn.q_proj
    torch.testing.assert_close(q_proj.base_layer.weight, stage1.llm.model.layers[0].self_attn.q_proj.weight)
    torch.testing.assert_close(backbone.adapter.state_dict(), stage1.adapter.state_dict())


def test_init_from_starts_a_run(stage1_ckpt, compose_train, caplog):
    path, _ = stage1_ckpt
    with caplog.at_level(logging.INFO):
        run(compose_train("trainer.max_steps=1", f"init_from={path}", "model.llm.lora.enabled=true"))
    assert any(f"init_from {path}: loaded" in r.getMessage() for r in caplog.records)


def test_frozen_base_tensors_left_out_are_not_reported_missing(stage1_ckpt, compose_train, tmp_path):
    """A trainable-only checkpoint names the frozen tensors it left out; init_from does not call them missing."""
    path, _ = stage1_ckpt
    checkpoint = torch.load(path, weights_only=False)
    dropped = [k for k in checkpoint["state_dict"] if k.startswith("backbone.encoder.")]
    for k in dropped:
        del checkpoint["state_dict"][k]
    checkpoint["osum_base_weights"] = {"keys": dropped, "encoder": None, "llm": None}
    torch.save(checkpoint, tmp_path / "trainable.ckpt")
    backbone, _ = build_backbone(OmegaConf.to_container(compose_train().model, resolve=True))
    missing, unexpected = load_initial_weights(backbone, tmp_path / "trainable.ckpt")
    assert dropped and not missing and not unexpected
