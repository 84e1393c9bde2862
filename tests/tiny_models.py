"""The tiny random backbone config the model, stage and tool tests build (real transformers Qwen2, random Whisper)."""

from __future__ import annotations

import copy
from typing import Any

TINY_MODEL: dict[str, Any] = {
    "encoder": {"path": None, "config": {"n_mels": 80, "d_model": 32, "n_layers": 1, "n_heads": 4, "ffn_dim": 64}},
    "adapter": {"d_model": 32, "n_layers": 1, "n_heads": 4, "ffn_dim": 64, "dropout": 0.0, "strides": [1, 2, 2]},
    "llm": {"path": None, "dtype": "float32", "attn_implementation": "sdpa",
            "config": {"model_type": "qwen2", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "num_key_value_heads": 2, "intermediate_size": 64, "tie_word_embeddings": False},
            "lora": {"enabled": False}},
    "speech_token_num": 4097,
}


def tiny_model(tokenizer_dir: str, **changes: Any) -> dict[str, Any]:
    """A copy of ``TINY_MODEL`` with the tokenizer folder set and top-level keys replaced."""
    cfg = copy.deepcopy(TINY_MODEL)
    cfg["llm"]["tokenizer"] = tokenizer_dir
    cfg.update(copy.deepcopy(changes))
    return cfg
