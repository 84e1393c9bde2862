"""The utterance path: one embedding per clip for who is speaking and how, apart from the adapter's frames.

Gender, age, emotion and style are properties of the whole utterance. A frozen Whisper encoder holds them (a
linear probe on its mean-pooled output finds them), but its pooled outputs share a large common component: a
speaker's difference is a small shift along few feature dimensions, and a projection learned from a weak
signal sees nearly the same vector for every clip. The path therefore standardises each feature by running
statistics over the training clips (what a probe's scaler does), then projects to the LLM width. The
statistics are buffers (saved with the model, equal in training and inference, deterministic per clip).
"""

from __future__ import annotations

import torch
from torch import nn

from osum.models.encoder import lengths_to_mask


class UtteranceEmbedding(nn.Module):
    """Encoder frames (B, T, d_enc) and lengths -> (B, d_llm): mean over real frames, standardised, projected."""

    def __init__(self, d_enc: int, d_llm: int, momentum: float = 0.05, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(d_enc))
        self.register_buffer("running_var", torch.ones(d_enc))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))  # clips the statistics have seen
        self.proj = nn.Linear(d_enc, d_llm)

    @torch.no_grad()
    def _update(self, pooled: torch.Tensor) -> None:
        if pooled.shape[0] < 2:
            return
        mean, var = pooled.float().mean(0), pooled.float().var(0)
        m = 1.0 if int(self.seen) == 0 else self.momentum  # the first batch sets the statistics
        self.running_mean.lerp_(mean, m)
        self.running_var.lerp_(var, m)
        self.seen += pooled.shape[0]

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        real = lengths_to_mask(lengths, frames.shape[1])[..., None].to(frames.dtype)
        pooled = (frames * real).sum(1) / lengths.clamp(min=1)[:, None].to(frames.dtype)
        if self.training:
            self._update(pooled)
        z = (pooled.float() - self.running_mean) / torch.sqrt(self.running_var + self.eps)
        return self.proj(z.to(self.proj.weight.dtype))
