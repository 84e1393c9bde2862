"""The LLM side: any Hugging Face causal LM (Qwen2 first) and LoRA through peft (its tokenizer: ``osum.text``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_llm(path: str | None, config: Mapping[str, Any] | None, vocab_size: int,
              dtype: str = "float32", attn_implementation: str = "sdpa") -> nn.Module:
    """From a local folder (``path``) with its weights, or from a config dict with random weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ValueError(f"model.llm.dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if path:
        return AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype], attn_implementation=attn_implementation)
    if not config:
        raise ValueError("model.llm needs either path (a local Hugging Face folder) or config (sizes)")
    cfg = dict(config)
    model_type = cfg.pop("model_type", "qwen2")
    cfg.setdefault("vocab_size", vocab_size)
    hf_config = AutoConfig.for_model(model_type, **cfg)
    hf_config._attn_implementation = attn_implementation
    return AutoModelForCausalLM.from_config(hf_config, dtype=DTYPES[dtype])


def apply_lora(llm: nn.Module, r: int, alpha: int, dropout: float, target_modules: list[str]) -> nn.Module:
    """Wrap ``llm`` with peft LoRA adapters; peft freezes the base weights."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(task_type="CAUSAL_LM", r=r, lora_alpha=alpha, lora_dropout=dropout,
                     target_modules=list(target_modules))
    return get_peft_model(llm, cfg)


def base_model(llm: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (or ``llm`` itself)."""
    return llm.get_base_model() if hasattr(llm, "get_base_model") else llm
