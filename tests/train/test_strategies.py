"""Strategies and memory switches as config choices: strategy=ddp|fsdp|deepspeed_zero2, LLM activation checkpointing."""

import importlib.util

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy
from omegaconf import OmegaConf
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer

from osum.models.backbone import build_backbone
from osum.models.llm import base_model


def test_ddp_choice(compose_train):
    strategy = instantiate(compose_train("strategy=ddp").trainer.strategy)
    assert isinstance(strategy, DDPStrategy)
    assert strategy._ddp_kwargs["find_unused_parameters"] is False
    assert strategy.process_group_backend is None  # Lightning picks nccl on GPU, gloo on CPU


def test_fsdp_choice_wraps_decoder_layers(compose_train):
    cfg = compose_train("strategy=fsdp", "trainer.strategy.state_dict_type=full")
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy) and strategy._state_dict_type == "full"
    assert Qwen2DecoderLayer in strategy.kwargs["auto_wrap_policy"]._module_classes


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="optional: pip install deepspeed")
def test_deepspeed_zero2_choice(compose_train):
    strategy = instantiate(compose_train("strategy=deepspeed_zero2").trainer.strategy)
    assert strategy.config["zero_optimization"]["stage"] == 2


def test_llm_gradient_checkpointing_changes_memory_not_results(compose_train):
    results = []
    for on in (False, True):
        cfg = compose_train(f"model.llm.gradient_checkpointing={on}")
        torch.manual_seed(0)
        backbone, _ = build_backbone(OmegaConf.to_container(cfg.model, resolve=True))
        assert base_model(backbone.llm).is_gradient_checkpointing is on
        ids = torch.randint(0, 300, (2, 12))
        out = backbone.train()(input_ids=ids, text_targets=ids)
        out["text"].loss_sum.backward()
        results.append((out["text"].loss_sum.detach(), backbone.llm.get_input_embeddings().weight.grad.clone()))
    torch.testing.assert_close(results[0], results[1])
