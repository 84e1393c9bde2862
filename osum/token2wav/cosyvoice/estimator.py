"""The flow's velocity estimator: CosyVoice's ``ConditionalDecoder``, a 1-D U-Net after Matcha-TTS.

Input channels ``[x_t, mu, speaker (repeated over time), prompt condition]`` (4 x 80). Down blocks (a ResNet
block fed the flow time, transformer blocks, a stride-2 conv but in the last), mid blocks, up blocks (the
skip concatenated, then a transposed conv but in the last), a final block and a 1x1 projection. Blocks: Conv1d
-> GroupNorm(8) -> Mish; transformer blocks as diffusers' ``BasicTransformerBlock`` (pre-LayerNorm, bias-free
q/k/v, GELU feed-forward). Submodule names are CosyVoice's and diffusers', so ``flow.pt``'s
``decoder.estimator.*`` keys load as they are.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_sinusoids(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """(B,) flow times -> (B, dim): [sin, cos] of scale * t at dim / 2 log-spaced frequencies (Matcha's)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device).float() * -(math.log(10000) / (half - 1)))
    args = scale * t.reshape(-1).unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat((args.sin(), args.cos()), dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class Block1D(nn.Module):
    def __init__(self, dim: int, dim_out: int, groups: int = 8):
        super().__init__()
        self.block = nn.Sequential(nn.Conv1d(dim, dim_out, 3, padding=1), nn.GroupNorm(groups, dim_out), nn.Mish())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.block(x * mask) * mask


class ResnetBlock1D(nn.Module):
    def __init__(self, dim: int, dim_out: int, time_dim: int, groups: int = 8):
        super().__init__()
        self.mlp = nn.Sequential(nn.Mish(), nn.Linear(time_dim, dim_out))
        self.block1 = Block1D(dim, dim_out, groups)
        self.block2 = Block1D(dim_out, dim_out, groups)
        self.res_conv = nn.Conv1d(dim, dim_out, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.block1(x, mask) + self.mlp(t).unsqueeze(-1)
        return self.block2(h, mask) + self.res_conv(x * mask)


class Downsample1D(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample1D(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(dim, dim, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Attention(nn.Module):
    """diffusers' ``Attention`` as the decoder uses it: bias-free q/k/v, ``to_out.0`` projection, additive mask."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x (B, T, dim), bias (B, 1, T, T) additive."""
        batch, size, _ = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(batch, size, self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.to_q(x)), heads(self.to_k(x)), heads(self.to_v(x)),
                                             attn_mask=bias)
        return self.to_out[0](out.transpose(1, 2).reshape(batch, size, -1))


class GELUProjection(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x))


class FeedForward(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.net = nn.ModuleList([GELUProjection(dim, inner), nn.Identity(), nn.Linear(inner, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class TransformerBlock(nn.Module):
    """x + attn1(norm1(x)), then + ff(norm3(x)) (diffusers' names: no cross-attention, so no norm2)."""

    def __init__(self, dim: int, heads: int, head_dim: int, ff_inner: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_inner)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x), bias)
        return x + self.ff(self.norm3(x))


def _attention_bias(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, T) 0/1 mask -> (B, 1, T, T) additive bias: -1e10 at padded keys (CosyVoice's ``mask_to_bias``)."""
    keys = mask.bool().repeat(1, mask.shape[-1], 1).to(mask.dtype)
    return ((1.0 - keys) * -1.0e10).unsqueeze(1)


class ConditionalDecoder(nn.Module):
    """(x, mask, mu, t, spks, cond) -> velocity (B, out_channels, T)."""

    def __init__(self, in_channels: int, out_channels: int, channels: tuple[int, ...], heads: int, head_dim: int,
                 n_blocks: int, num_mid_blocks: int, ff_inner: int):
        super().__init__()
        channels = tuple(channels)
        self.in_channels = in_channels
        time_dim = channels[0] * 4
        self.time_mlp = TimestepEmbedding(in_channels, time_dim)

        def transformers(dim: int) -> nn.ModuleList:
            inner = ff_inner * dim // channels[0]  # 4 x dim: ff_inner is measured at channels[0]
            return nn.ModuleList(TransformerBlock(dim, heads, head_dim, inner) for _ in range(n_blocks))

        self.down_blocks = nn.ModuleList()
        out = in_channels
        for i, width in enumerate(channels):
            last = i == len(channels) - 1
            down = nn.Conv1d(width, width, 3, padding=1) if last else Downsample1D(width)
            self.down_blocks.append(nn.ModuleList([ResnetBlock1D(out, width, time_dim), transformers(width), down]))
            out = width
        self.mid_blocks = nn.ModuleList(
            nn.ModuleList([ResnetBlock1D(channels[-1], channels[-1], time_dim), transformers(channels[-1])])
            for _ in range(num_mid_blocks))
        ups = channels[::-1] + (channels[0],)
        self.up_blocks = nn.ModuleList()
        for i in range(len(ups) - 1):
            last = i == len(ups) - 2
            width = ups[i + 1]
            up = nn.Conv1d(width, width, 3, padding=1) if last else Upsample1D(width)
            self.up_blocks.append(nn.ModuleList([ResnetBlock1D(2 * ups[i], width, time_dim), transformers(width), up]))
        self.final_block = Block1D(ups[-1], ups[-1])
        self.final_proj = nn.Conv1d(ups[-1], out_channels, 1)

    @staticmethod
    def _transformers(blocks: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bias = _attention_bias(mask).to(x.dtype)
        h = x.transpose(1, 2).contiguous()
        for block in blocks:
            h = block(h, bias)
        return h.transpose(1, 2).contiguous()

    def forward(self, x: torch.Tensor, mask: torch.Tensor, mu: torch.Tensor, t: torch.Tensor,
                spks: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        t = self.time_mlp(timestep_sinusoids(t, self.in_channels).to(t.dtype))
        x = torch.cat([x, mu, spks.unsqueeze(-1).expand(-1, -1, x.shape[-1]), cond], dim=1)
        hiddens, masks = [], [mask]
        for resnet, blocks, down in self.down_blocks:
            x = self._transformers(blocks, resnet(x, masks[-1], t), masks[-1])
            hiddens.append(x)
            x = down(x * masks[-1])
            masks.append(masks[-1][:, :, ::2])
        masks = masks[:-1]
        for resnet, blocks in self.mid_blocks:
            x = self._transformers(blocks, resnet(x, masks[-1], t), masks[-1])
        for resnet, blocks, up in self.up_blocks:
            mask_up, skip = masks.pop(), hiddens.pop()
            x = torch.cat([x[:, :, : skip.shape[-1]], skip], dim=1)
            x = up(self._transformers(blocks, resnet(x, mask_up, t), mask_up) * mask_up)
        x = self.final_block(x, mask_up)
        return self.final_proj(x * mask_up) * mask
