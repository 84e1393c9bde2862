"""The adapter between the speech encoder and the LLM (reference section 1.3).

Causal conv stack (left padding only; strides 1, 2, 2: x4 fewer frames, 50 -> 12.5 fps), a small pre-LN
transformer (sinusoidal positions scaled by sqrt(d), ReLU feed-forward, final LayerNorm), and a linear
projection to the LLM width. Defaults are the original dimensions; every size is configurable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from osum.models.encoder import lengths_to_mask


def positional_table(length: int, dim: int) -> torch.Tensor:
    """Interleaved sin/cos table as in the original adapter's absolute positions."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


class CausalConvStack(nn.Module):
    """Conv1d(k3) layers with left padding 2 and GELU; output length ceil(T / prod(strides))."""

    def __init__(self, dim_in: int, dim: int, strides: tuple[int, ...] = (1, 2, 2), kernel: int = 3):
        super().__init__()
        self.strides, self.kernel = tuple(strides), kernel
        self.convs = nn.ModuleList(
            nn.Conv1d(dim_in if i == 0 else dim, dim, kernel, stride=s) for i, s in enumerate(self.strides))

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for s in self.strides:
            lengths = (lengths + s - 1) // s
        return lengths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        for conv in self.convs:
            x = F.gelu(conv(F.pad(x, (self.kernel - 1, 0))))
        return x.transpose(1, 2)


class Adapter(nn.Module):
    """Encoder frames (B, T, d_enc) -> LLM-width speech embeddings (B, ceil(T/4), d_llm)."""

    def __init__(self, d_enc: int, d_llm: int, d_model: int = 1024, n_layers: int = 4, n_heads: int = 4,
                 ffn_dim: int = 2560, dropout: float = 0.1, strides: tuple[int, ...] = (1, 2, 2),
                 max_positions: int = 5000):
        super().__init__()
        self.conv = CausalConvStack(d_enc, d_model, strides)
        self.n_layers = n_layers
        if n_layers > 0:
            self.input_layer = nn.Sequential(nn.Linear(d_model, d_model), nn.LayerNorm(d_model), nn.Dropout(dropout))
            self.register_buffer("pos", positional_table(max_positions, d_model), persistent=False)
            layer = nn.TransformerEncoderLayer(d_model, n_heads, ffn_dim, dropout, activation="relu",
                                               batch_first=True, norm_first=True)
            self.transformer = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
            self.final_norm = nn.LayerNorm(d_model)
        self.proj = nn.Linear(d_model, d_llm)
        self.scale = math.sqrt(d_model)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.conv.output_lengths(lengths)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x)
        out_lengths = self.output_lengths(lengths)
        if self.n_layers > 0:
            t = x.shape[1]
            x = self.input_layer(x) * self.scale + self.pos[:t].to(x.dtype)
            pad = ~lengths_to_mask(out_lengths, t)
            x = self.final_norm(self.transformer(x, src_key_padding_mask=pad if bool(pad.any()) else None))
        return self.proj(x), out_lengths
