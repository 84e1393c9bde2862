"""Whisper encoder that runs on the real audio length (no padding to 30 s).

Parameter names follow transformers' ``WhisperEncoder`` (``conv1``, ``conv2``, ``embed_positions``,
``layers.N.self_attn.{q,k,v,out}_proj``, ``fc1``, ``fc2``, ``layer_norm`` ...), so a local Hugging Face
Whisper folder loads directly. Unlike transformers' encoder, which accepts exactly 3000 mel frames,
this one slices the positional table to the input length and masks padded frames, giving for each
sample the same output as transformers' encoder on that sample's frames alone. ``length_groups``
splits a batch into sub-batches of similar audio length, so that the encoder computes few padded
frames even when the batch was bucketed for the LLM's sequence length.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's sinusoidal position table (sin half, then cos half)."""
    inc = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2, dtype=torch.float32))
    t = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, max_len) bool mask, True on real frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


EXACT_SPLIT_LIMIT = 1024  # samples per batch up to which length_groups finds the exact optimum


def length_groups(lengths: list[int], max_groups: int) -> list[list[int]]:
    """Indices of ``lengths`` split into at most ``max_groups`` groups of consecutive lengths (in sorted
    order) that minimise the padded total, sum over groups of size x longest: an exact dynamic program,
    vectorised over split points (O(max_groups) array operations on n x n). Batches of more than
    ``EXACT_SPLIT_LIMIT`` samples are cut into equal-count groups instead (near the optimum at that size)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n, k = len(order), max(1, min(max_groups, len(order)))
    if k == 1:
        return [order]
    if n > EXACT_SPLIT_LIMIT:
        return [part.tolist() for part in np.array_split(np.array(order), k)]
    sorted_len = np.array([lengths[i] for i in order], dtype=np.float64)
    ends, starts = np.arange(1, n + 1)[:, None], np.arange(n)[None, :]
    span_cost = np.where(starts < ends, (ends - starts) * sorted_len[ends - 1], np.inf)  # [end-1, start]
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    choices = []
    for _ in range(k):  # best[e]: cheapest split of the first e lengths into <= (round) groups
        total = best[None, :n] + span_cost
        choice = total.argmin(axis=1)
        new = np.concatenate([[0.0], total[np.arange(n), choice]])
        keep = new < best  # fewer groups stay when more would not pad less
        best = np.where(keep, new, best)
        choices.append(np.where(keep[1:], choice, -1))
    groups, end = [], n
    for choice in reversed(choices):
        start = int(choice[end - 1])
        if start < 0:
            continue
        groups.append(order[start:end])
        end = start
        if end == 0:
            break
    return groups[::-1]


class WhisperAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        h = self.n_heads

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, h, d // h).transpose(1, 2)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        mask = None if key_mask is None else key_mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class WhisperEncoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, ffn_dim: int):
        super().__init__()
        self.self_attn = WhisperAttention(d_model, n_heads)
        self.self_attn_layer_norm = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, d_model)
        self.final_layer_norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x), key_mask)
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class WhisperEncoder(nn.Module):
    """Conv front end (x2 downsampling, 100 -> 50 fps), pre-LN transformer, final LayerNorm."""

    def __init__(self, n_mels: int = 80, d_model: int = 384, n_layers: int = 4, n_heads: int = 6,
                 ffn_dim: int = 1536, max_source_positions: int = 1500, gradient_checkpointing: bool = False):
        super().__init__()
        self.n_mels, self.d_model, self.max_positions = n_mels, d_model, max_source_positions
        self.gradient_checkpointing = gradient_checkpointing
        self.conv1 = nn.Conv1d(n_mels, d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d_model, d_model, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(max_source_positions, d_model)
        with torch.no_grad():
            self.embed_positions.weight.copy_(sinusoids(max_source_positions, d_model))
        self.layers = nn.ModuleList(WhisperEncoderLayer(d_model, n_heads, ffn_dim) for _ in range(n_layers))
        self.layer_norm = nn.LayerNorm(d_model)

    @classmethod
    def from_hf_config(cls, config, **kwargs) -> WhisperEncoder:
        return cls(n_mels=config.num_mel_bins, d_model=config.d_model, n_layers=config.encoder_layers,
                   n_heads=config.encoder_attention_heads, ffn_dim=config.encoder_ffn_dim,
                   max_source_positions=config.max_source_positions, **kwargs)

    @classmethod
    def from_pretrained(cls, path: str | Path, strict: bool = True, **kwargs) -> WhisperEncoder:
        """Load from a local transformers Whisper folder (full model or encoder only) or an openai-whisper
        ``.pt``/``.pth`` file."""
        from transformers import WhisperConfig

        from osum.models.weights import load_folder_state_dict, load_with_report

        if Path(path).is_file() and Path(path).suffix in (".pt", ".pth"):
            from osum.models.whisper_openai import read_openai_encoder

            sizes, state = read_openai_encoder(path)
            enc = cls(**sizes, **kwargs)
            load_with_report(enc, state, strict=strict, what=f"openai Whisper encoder from {path}")
            return enc
        config = WhisperConfig.from_pretrained(path)
        enc = cls.from_hf_config(config, **kwargs)
        state = load_folder_state_dict(path)
        for prefix in ("model.encoder.", "encoder.", ""):
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if "conv1.weight" in sub:
                break
        else:
            raise ValueError(f"{path}: no Whisper encoder weights found (looked for model.encoder.conv1.weight)")
        sub = {k: v for k, v in sub.items() if not k.startswith(("decoder.", "embed_tokens", "proj_out"))}
        load_with_report(enc, sub, strict=strict, what=f"Whisper encoder from {path}")
        return enc

    @staticmethod
    def output_lengths(mel_lengths: torch.Tensor) -> torch.Tensor:
        return (mel_lengths + 1) // 2

    def forward(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mel (B, T, n_mels), right-padded with anything -> (B, ceil(T/2), d_model) and output lengths."""
        real = lengths_to_mask(mel_lengths, mel.shape[1])[:, None, :]
        x = F.gelu(self.conv1(mel.transpose(1, 2) * real.to(mel.dtype)))  # zero padding, as if each stood alone
        x = x * real.to(x.dtype)
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        t = x.shape[1]
        if t > self.max_positions:
            raise ValueError(f"audio of {t} encoder frames exceeds the encoder's {self.max_positions} positions "
                             f"({self.max_positions * 2 / 100:.0f} s); filter longer samples (data.max_seconds)")
        x = x + self.embed_positions.weight[:t].to(x.dtype)
        out_lengths = self.output_lengths(mel_lengths)
        key_mask = None if bool((out_lengths == t).all()) else lengths_to_mask(out_lengths, t)
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(layer, x, key_mask, use_reentrant=False)
            else:
                x = layer(x, key_mask)
        return self.layer_norm(x), out_lengths
