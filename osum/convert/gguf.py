"""GGUF causal LM (SmolLM2, a Llama) -> a transformers ``Qwen2ForCausalLM`` with identical logits, or the Llama."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from osum.convert.packages import find_gguf
from osum.models.llm import DTYPES
from osum.models.weights import assert_complete


def _qwen2_config(llama_config):
    from transformers import Qwen2Config

    cfg = llama_config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    if getattr(cfg, "mlp_bias", False):
        raise ValueError("Llama with MLP biases cannot be expressed as Qwen2")
    if getattr(cfg, "pretraining_tp", 1) not in (1, None):
        raise ValueError("pretraining_tp > 1 is not supported")
    extra = {} if head_dim == cfg.hidden_size // cfg.num_attention_heads else {"head_dim": head_dim}
    return Qwen2Config(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        hidden_act=cfg.hidden_act,
        max_position_embeddings=cfg.max_position_embeddings,
        rms_norm_eps=cfg.rms_norm_eps,
        rope_parameters=dict(cfg.rope_parameters),
        tie_word_embeddings=cfg.tie_word_embeddings,
        use_sliding_window=False,
        sliding_window=None,
        attention_dropout=getattr(cfg, "attention_dropout", 0.0),
        bos_token_id=cfg.bos_token_id,
        eos_token_id=cfg.eos_token_id,
        pad_token_id=cfg.pad_token_id,
        **extra,
    )


def llama_to_qwen2(llama_model) -> torch.nn.Module:
    """Copy a ``LlamaForCausalLM`` into a ``Qwen2ForCausalLM`` (zero q/k/v biases unless the Llama has
    attention biases): same shapes, rope, eps, vocab and tying, hence identical logits."""
    from transformers import Qwen2ForCausalLM

    config = _qwen2_config(llama_model.config)
    if any(t != "full_attention" for t in config.layer_types):
        raise AssertionError("Qwen2 config unexpectedly uses sliding-window attention")
    qwen = Qwen2ForCausalLM(config).to(llama_model.dtype).eval()
    state = dict(llama_model.state_dict())
    for key, value in qwen.state_dict().items():
        if key not in state and re.search(r"self_attn\.[qkv]_proj\.bias$", key):
            state[key] = torch.zeros_like(value)
    if config.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    state = {k: v for k, v in state.items() if not k.endswith("rotary_emb.inv_freq")}
    assert_complete(qwen, state)
    qwen.load_state_dict(state, strict=True)
    qwen.generation_config = llama_model.generation_config
    return qwen


def _clean_llama(llama_model) -> torch.nn.Module:
    """The GGUF-loaded Llama re-instantiated without its GGUF quantization_config."""
    from transformers import LlamaConfig, LlamaForCausalLM

    values = {k: v for k, v in llama_model.config.to_dict().items() if k != "quantization_config"}
    clean = LlamaForCausalLM(LlamaConfig.from_dict(values)).to(llama_model.dtype).eval()
    clean.load_state_dict(llama_model.state_dict(), strict=True)
    clean.generation_config = llama_model.generation_config
    return clean


def load_gguf(gguf: Path, dtype: str = "float32"):
    """Model (dequantized) and tokenizer of a GGUF file via transformers' GGUF loader."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=DTYPES[dtype])
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return model.eval(), tokenizer


def convert_smollm2_gguf(src: str, out: Path, arch: str = "qwen2", dtype: str = "float32") -> Path:
    """Convert a GGUF causal LM into a local ``Qwen2ForCausalLM`` (default) or ``LlamaForCausalLM``."""
    if arch not in ("qwen2", "llama"):
        raise ValueError(f"unknown --arch {arch!r}")
    llama, tokenizer = load_gguf(find_gguf(src), "float32")
    model = llama_to_qwen2(llama) if arch == "qwen2" else _clean_llama(llama)
    if not tokenizer.chat_template:
        raise ValueError("the GGUF carries no chat template")
    model.to(DTYPES[dtype]).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return Path(out)

