"""The flow's Conformer encoder over the code embeddings (CosyVoice's ``ConformerEncoder`` from ESPnet/WeNet).

A linear input layer with LayerNorm, the ESPnet relative positional encoding (sinusoids of the relative
positions ``T-1 .. -(T-1)``, the input scaled by ``sqrt(d)``), pre-norm blocks of relative-position
self-attention (Transformer-XL's ``pos_bias_u`` / ``pos_bias_v``) and a SiLU feed-forward, with the macaron
feed-forward and the convolution module when the weights have them (CosyVoice-300M-25Hz has neither), and a
final LayerNorm. Submodule names are CosyVoice's, so ``flow.pt``'s ``encoder.*`` keys load as they are.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def relative_positions(size: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """(1, 2 size - 1, dim) sinusoids of the relative positions size-1, ..., 0, ..., -(size-1)."""
    position = torch.arange(size - 1, -size, -1, dtype=torch.float32, device=device).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * -(math.log(10000.0) / dim))
    pe = torch.zeros(2 * size - 1, dim, device=device)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe.unsqueeze(0)


class InputLayer(nn.Module):
    """``embed``: Linear + LayerNorm, then the input scaled by sqrt(dim) and the relative position table."""

    def __init__(self, input_size: int, dim: int):
        super().__init__()
        self.dim = dim
        self.out = nn.Sequential(nn.Linear(input_size, dim), nn.LayerNorm(dim, eps=1e-5))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.out(x) * math.sqrt(self.dim)
        return x, relative_positions(x.shape[1], self.dim, x.device).to(x.dtype)


class RelPositionAttention(nn.Module):
    """Multi-head self-attention with relative positions: scores = ((q + u) k^T + shift((q + v) p^T)) / sqrt(d)."""

    def __init__(self, heads: int, dim: int, key_bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"cosyvoice encoder: {heads} heads do not divide width {dim}")
        self.heads, self.d_k = heads, dim // heads
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim, bias=key_bias)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)
        self.linear_pos = nn.Linear(dim, dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(heads, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, H, d_k)
        return x.view(x.shape[0], -1, self.heads, self.d_k)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), mask (B, 1, T) True where real, pos (1, 2T-1, D)."""
        batch, size = x.shape[:2]
        q = self._split(self.linear_q(x))
        k = self._split(self.linear_k(x)).transpose(1, 2)
        v = self._split(self.linear_v(x)).transpose(1, 2)
        p = self._split(self.linear_pos(pos)).transpose(1, 2)         # (1, H, 2T-1, d_k)
        content = torch.matmul((q + self.pos_bias_u).transpose(1, 2), k.transpose(-2, -1))
        position = torch.matmul((q + self.pos_bias_v).transpose(1, 2), p.transpose(-2, -1))  # (B, H, T, 2T-1)
        # query i, key j sits at relative position i - j: column (T - 1) - i + j of the table
        rows = torch.arange(size, device=x.device)
        index = (size - 1 - rows[:, None] + rows[None, :]).expand(batch, self.heads, size, size)
        scores = (content + torch.gather(position, -1, index)) / math.sqrt(self.d_k)
        padded = ~mask.unsqueeze(1)                                    # (B, 1, 1, T)
        attn = torch.softmax(scores.masked_fill(padded, -float("inf")), dim=-1).masked_fill(padded, 0.0)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(batch, size, self.heads * self.d_k)
        return self.linear_out(out)


class FeedForward(nn.Module):
    def __init__(self, dim: int, units: int):
        super().__init__()
        self.w_1 = nn.Linear(dim, units)
        self.activation = nn.SiLU()
        self.w_2 = nn.Linear(units, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.activation(self.w_1(x)))


class ConvolutionModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, norm, SiLU, pointwise conv; padded frames zeroed."""

    def __init__(self, dim: int, kernel_size: int, norm: str):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"cosyvoice encoder: the conv module's kernel must be odd, got {kernel_size}")
        self.pointwise_conv1 = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise_conv = nn.Conv1d(dim, dim, kernel_size, padding=(kernel_size - 1) // 2, groups=dim)
        self.use_layer_norm = norm == "layer_norm"
        self.norm = nn.LayerNorm(dim) if self.use_layer_norm else nn.BatchNorm1d(dim)
        self.pointwise_conv2 = nn.Conv1d(dim, dim, 1)
        self.activation = nn.SiLU()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2).masked_fill(~mask, 0.0)
        x = self.depthwise_conv(nn.functional.glu(self.pointwise_conv1(x), dim=1))
        x = self.norm(x.transpose(1, 2)).transpose(1, 2) if self.use_layer_norm else self.norm(x)
        x = self.pointwise_conv2(self.activation(x)).masked_fill(~mask, 0.0)
        return x.transpose(1, 2)


class ConformerLayer(nn.Module):
    """Pre-norm: [macaron FF x 0.5] -> self-attention -> [conv module] -> FF (x 0.5 with macaron) [-> norm]."""

    def __init__(self, dim: int, heads: int, units: int, key_bias: bool, macaron: bool, conv: bool,
                 kernel_size: int, conv_norm: str):
        super().__init__()
        self.self_attn = RelPositionAttention(heads, dim, key_bias)
        self.feed_forward = FeedForward(dim, units)
        self.feed_forward_macaron = FeedForward(dim, units) if macaron else None
        self.conv_module = ConvolutionModule(dim, kernel_size, conv_norm) if conv else None
        self.norm_ff = nn.LayerNorm(dim, eps=1e-12)
        self.norm_mha = nn.LayerNorm(dim, eps=1e-12)
        self.ff_scale = 0.5 if macaron else 1.0
        if macaron:
            self.norm_ff_macaron = nn.LayerNorm(dim, eps=1e-12)
        if conv:
            self.norm_conv = nn.LayerNorm(dim, eps=1e-12)
            self.norm_final = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        if self.feed_forward_macaron is not None:
            x = x + self.ff_scale * self.feed_forward_macaron(self.norm_ff_macaron(x))
        x = x + self.self_attn(self.norm_mha(x), mask, pos)
        if self.conv_module is not None:
            x = x + self.conv_module(self.norm_conv(x), mask)
        x = x + self.ff_scale * self.feed_forward(self.norm_ff(x))
        return self.norm_final(x) if self.conv_module is not None else x


class ConformerEncoder(nn.Module):
    """(B, T, input_size) + lengths -> (B, T, dim)."""

    def __init__(self, input_size: int, dim: int, heads: int, units: int, blocks: int, key_bias: bool = True,
                 macaron: bool = False, conv: bool = False, kernel_size: int = 15, conv_norm: str = "batch_norm"):
        super().__init__()
        self.embed = InputLayer(input_size, dim)
        self.encoders = nn.ModuleList(ConformerLayer(dim, heads, units, key_bias, macaron, conv, kernel_size,
                                                     conv_norm) for _ in range(blocks))
        self.after_norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]).unsqueeze(1)  # (B, 1, T)
        x, pos = self.embed(x)
        for layer in self.encoders:
            x = layer(x, mask, pos)
        return self.after_norm(x)
