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
              dtype: str = "float32", attn_implementation: str = "sdpa", tokenizer=None) -> nn.Module:
    """From a local folder (``path``) with its weights, or from a config dict with random weights. A folder's
    table grows to ``vocab_size`` for the tokenizer's added tokens (``grow_rows``)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ValueError(f"model.llm.dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if path:
        llm = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype], attn_implementation=attn_implementation)
        rows = llm.get_input_embeddings().num_embeddings
        if rows < vocab_size:  # a tokenizer with added tokens (osum.convert add-tags)
            log.info("growing the embedding table of %s from %d to %d rows for the tokenizer's added tokens",
                     path, rows, vocab_size)
            grow_rows(llm, rows, vocab_size, tokenizer)
        return llm
    if not config:
        raise ValueError("model.llm needs either path (a local Hugging Face folder) or config (sizes)")
    cfg = dict(config)
    model_type = cfg.pop("model_type", "qwen2")
    cfg.setdefault("vocab_size", vocab_size)
    hf_config = AutoConfig.for_model(model_type, **cfg)
    hf_config._attn_implementation = attn_implementation
    return AutoModelForCausalLM.from_config(hf_config, dtype=DTYPES[dtype])


@torch.no_grad()
def grow_rows(llm: nn.Module, rows: int, vocab_size: int, tokenizer=None) -> None:
    """Grow the input (and an untied output) table from ``rows`` to ``vocab_size`` rows. Each new row is the mean
    of the old rows of its token's word (``<FEMALE>``: the pieces of "female"), or of all old rows where its word
    has none: label tags start apart, as their words are (the voice path scores clips by the cosine to these rows:
    rows all equal would score every label alike). The same rows on every rebuild, so a checkpoint that leaves out
    the frozen base finds them again."""
    llm.resize_token_embeddings(vocab_size, mean_resizing=False)
    words = {} if tokenizer is None else {i: [j for j in word_pieces(tokenizer, i) if j < rows]
                                          for i in range(rows, vocab_size)}
    tables = {id(m.weight): m.weight for m in (llm.get_input_embeddings(), llm.get_output_embeddings()) if m is not None}
    for weight in tables.values():
        weight[rows:] = weight[:rows].mean(0)
        for i, pieces in words.items():
            if pieces:
                weight[i] = weight[pieces].mean(0)


def word_pieces(tokenizer, token_id: int) -> list[int]:
    """The ids of an added token's word under the tokenizer: its text without the angle brackets, lower case,
    underscores as spaces (``<FEMALE>`` -> the pieces of "female")."""
    word = str(tokenizer.convert_ids_to_tokens(token_id)).strip("<>").replace("_", " ").lower()
    return tokenizer.encode(word, add_special_tokens=False) if word else []


def apply_lora(llm: nn.Module, r: int, alpha: int, dropout: float, target_modules: list[str],
               trainable_tokens: list[int] | None = None) -> nn.Module:
    """Wrap ``llm`` with peft LoRA adapters; peft freezes the base weights. ``trainable_tokens``: token ids whose
    embedding rows (and tied output rows) train in full (peft's trainable tokens)."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(task_type="CAUSAL_LM", r=r, lora_alpha=alpha, lora_dropout=dropout,
                     target_modules=list(target_modules), trainable_token_indices=trainable_tokens or None)
    return get_peft_model(llm, cfg)


def trainable_token_ids(tokenizer, spec: str | list[str] | None) -> list[int]:
    """``model.llm.lora.trainable_tokens`` -> token ids: ``"tags"`` (every label tag the tokenizer has as an added
    token, see ``osum.convert.tokens``), a list of token strings (each must be one token), or none."""
    from osum.tasks.labels import every_tag

    if not spec:
        return []
    if spec == "tags":
        added = tokenizer.get_added_vocab()
        return sorted(added[t] for t in every_tag() if t in added)
    if isinstance(spec, str):
        raise ValueError(f"model.llm.lora.trainable_tokens: {spec!r} is not 'tags' or a list of tokens")
    ids = []
    for token in spec:
        pieces = tokenizer.encode(token, add_special_tokens=False)
        if len(pieces) != 1:
            raise ValueError(f"model.llm.lora.trainable_tokens: {token!r} is {len(pieces)} tokens of this tokenizer")
        ids.append(pieces[0])
    return ids


def base_model(llm: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (or ``llm`` itself)."""
    return llm.get_base_model() if hasattr(llm, "get_base_model") else llm
