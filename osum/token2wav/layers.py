"""Building blocks shared by the token2wav networks: masks, ConvNeXt blocks, transformer layers, time and
position embeddings. Tensors are channel-first ``(B, C, T)`` unless a name says otherwise."""

from __future__ import annotations

import math

import torch
from torch import nn


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) bool, True at the first ``lengths[b]`` positions of each row."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def sinusoids(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features (..., dim) of real-valued ``positions`` (...,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=positions.device).float() / half)
    args = positions.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimeEmbedding(nn.Module):
    """Flow time ``t`` in [0, 1] -> (B, dim): sinusoids of ``1000 t`` through a small MLP."""

    def __init__(self, dim: int, freq_dim: int = 128):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoids(t * 1000.0, self.freq_dim))


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm (optionally modulated by a conditioning vector) -> MLP, residual, layer scale."""

    def __init__(self, dim: int, intermediate: int, kernel_size: int = 7, cond_dim: int | None = None,
                 layer_scale: float = 1e-1):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"ConvNeXtBlock: kernel_size must be odd, got {kernel_size}")
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=cond_dim is None)
        self.film = nn.Linear(cond_dim, 2 * dim) if cond_dim else None
        self.pw1, self.act, self.pw2 = nn.Linear(dim, intermediate), nn.GELU(), nn.Linear(intermediate, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, T); mask (B, T) bool; cond (B, cond_dim) when built with ``cond_dim``."""
        if mask is not None:
            x = x * mask[:, None, :]
        h = self.norm(self.dwconv(x).transpose(1, 2))  # (B, T, C)
        if self.film is not None:
            if cond is None:
                raise ValueError("ConvNeXtBlock built with cond_dim needs a conditioning vector")
            scale, shift = self.film(cond)[:, None, :].chunk(2, dim=-1)
            h = h * (1 + scale) + shift
        h = self.pw2(self.act(self.pw1(h))) * self.gamma
        return x + h.transpose(1, 2)


class TransformerBlock(nn.Module):
    """A pre-norm transformer layer over channel-first input, padding masked out of the attention."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"TransformerBlock: dim {dim} is not divisible by heads {heads}")
        self.layer = nn.TransformerEncoderLayer(dim, heads, ffn_dim, dropout, activation="gelu",
                                                batch_first=True, norm_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.layer(x.transpose(1, 2), src_key_padding_mask=~mask)
        return out.transpose(1, 2) * mask[:, None, :]
