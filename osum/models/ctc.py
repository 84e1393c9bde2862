"""Auxiliary CTC loss on the speech embeddings, scored against the LLM's own input embeddings.

The adapter output at each speech position is compared (dot product, learned scale) with every row of
the LLM's input-embedding table, plus a learned blank vector; CTC over the transcript's token ids then
pulls each speech embedding towards the embedding of the token spoken there. A frozen LLM reads such
inputs almost as it reads text, so the adapter finds the alignment far sooner than through the LLM's
cross-entropy alone (on CPU budgets that difference decides whether it is found at all).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EmbeddingCTC(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.blank = nn.Parameter(torch.zeros(hidden))
        self.log_scale = nn.Parameter(torch.zeros(()))

    def forward(self, speech: torch.Tensor, speech_lengths: torch.Tensor, table: torch.Tensor,
                targets: torch.Tensor, target_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean CTC loss per target token over the samples that have one and fit, their token count).

        ``speech`` (B, S, H), ``table`` (V, H) the text embeddings; blank is class V.
        """
        usable = (target_lengths > 0) & (target_lengths <= speech_lengths)
        n_tokens = target_lengths[usable].sum()
        if not bool(usable.any()):
            return speech.new_zeros(()), n_tokens
        x = speech[usable]
        weights = torch.cat([table, self.blank[None].to(table.dtype)]).to(x.dtype)
        logits = (x @ weights.t()).float() * self.log_scale.exp()
        log_probs = logits.log_softmax(-1).transpose(0, 1)  # (S, B, V + 1)
        loss = F.ctc_loss(log_probs, targets[usable], speech_lengths[usable], target_lengths[usable],
                          blank=table.shape[0], reduction="sum", zero_infinity=True)
        return loss / n_tokens.clamp(min=1), n_tokens
