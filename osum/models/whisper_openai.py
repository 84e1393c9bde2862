"""The Whisper encoder from an original openai-whisper checkpoint (``tiny.en.pt``, ``medium.pt`` ...).

Such a file is a dict with ``dims`` (``n_mels``, ``n_audio_ctx``, ``n_audio_state``, ``n_audio_head``,
``n_audio_layer`` and the decoder's sizes) and ``model_state_dict`` (``encoder.conv1``,
``encoder.positional_embedding``, ``encoder.blocks.N.attn.{query,key,value,out}``, ``attn_ln``,
``mlp.0``/``mlp.2``, ``mlp_ln``, ``encoder.ln_post``, then ``decoder.*``). The encoder tensors are
renamed onto :class:`osum.models.encoder.WhisperEncoder` (this module only reads them, so it needs no
import of the encoder); the decoder is ignored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

# (openai name relative to "encoder.", our name): regexes applied in order, the first match wins.
RENAMES: tuple[tuple[str, str], ...] = (
    (r"^positional_embedding$", "embed_positions.weight"),
    (r"^(conv[12])\.(weight|bias)$", r"\1.\2"),
    (r"^blocks\.(\d+)\.attn\.query\.", r"layers.\1.self_attn.q_proj."),
    (r"^blocks\.(\d+)\.attn\.key\.", r"layers.\1.self_attn.k_proj."),
    (r"^blocks\.(\d+)\.attn\.value\.", r"layers.\1.self_attn.v_proj."),
    (r"^blocks\.(\d+)\.attn\.out\.", r"layers.\1.self_attn.out_proj."),
    (r"^blocks\.(\d+)\.attn_ln\.", r"layers.\1.self_attn_layer_norm."),
    (r"^blocks\.(\d+)\.mlp\.0\.", r"layers.\1.fc1."),
    (r"^blocks\.(\d+)\.mlp\.2\.", r"layers.\1.fc2."),
    (r"^blocks\.(\d+)\.mlp_ln\.", r"layers.\1.final_layer_norm."),
    (r"^ln_post\.", "layer_norm."),
)


def rename_encoder_key(name: str) -> str | None:
    """``encoder.blocks.0.attn.query.weight`` -> ``layers.0.self_attn.q_proj.weight`` (None: no rule)."""
    if not name.startswith("encoder."):
        return None
    rest = name[len("encoder."):]
    for pattern, repl in RENAMES:
        if re.search(pattern, rest):
            return re.sub(pattern, repl, rest)
    return None


def encoder_state(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our encoder's state dict from an openai ``model_state_dict``; unknown encoder names are kept
    as they are (so that the load report lists them); decoder tensors are left out."""
    out = {}
    for name, tensor in model_state.items():
        if name.startswith("decoder."):
            continue
        out[rename_encoder_key(name) or name] = tensor
    return out


def read_checkpoint(path: str | Path) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    """``dims`` and ``model_state_dict`` of an openai-whisper ``.pt``."""
    ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        raise ValueError(f"{path}: not an openai-whisper checkpoint (expected keys 'dims' and 'model_state_dict')")
    return dict(ckpt["dims"]), ckpt["model_state_dict"]


def read_openai_encoder(path: str | Path) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    """The :class:`~osum.models.encoder.WhisperEncoder` sizes given by ``dims`` and the encoder tensors,
    renamed, of an openai-whisper ``.pt`` (``WhisperEncoder.from_pretrained`` builds and loads them)."""
    dims, model_state = read_checkpoint(path)
    width = dims["n_audio_state"]
    sizes = {"n_mels": dims["n_mels"], "d_model": width, "n_layers": dims["n_audio_layer"],
             "n_heads": dims["n_audio_head"], "ffn_dim": 4 * width,  # Whisper's MLP is always 4x wide
             "max_source_positions": dims["n_audio_ctx"]}
    return sizes, encoder_state(model_state)
