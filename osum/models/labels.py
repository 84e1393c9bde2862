"""Label tags as tokens: which text tokens are labels of which kind, the losses over them, and the voice-label
bias that fuses an utterance embedding's label scores into the text head's logits.

Tags such as ``<FEMALE>`` are single tokens of the tokenizer (``python -m osum.convert add-tags`` where they are
not). ``LabelChoices`` holds each kind's label token ids: the label-choice loss (which label at a label position,
among its kind's), the voice-label loss (an utterance embedding scored against its labels' token embeddings),
and the monitoring of tag positions. ``label_bias`` turns utterance embeddings into additive logits on label
tokens, centred within each kind: the LLM decides when a label is said, the voice path shifts which one.

Both score a clip by ``voice_scores``: the cosine between its utterance embedding and a label's token embedding,
times ``VOICE_SCALE``. A raw dot product is unbounded: the utterance projection has a wide fan-in, so at a high
learning rate a few Adam steps moved the scores by tens: at lr 3e-3 the voice loss rose to 60 per clip against a
text loss of 4, and took the clipped gradient from the transcript.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from osum.tasks import TaskRegistry
from osum.tasks.labels import tag as tag_string

VOICE_SCALE = 10.0  # cosine -> logit: a two-label kind's scores differ by at most 20


def voice_scores(voice: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``VOICE_SCALE`` x the cosine of each utterance embedding (N, d) with each label embedding (..., d), in
    float32 (also under autocast): (N, ...). The label embeddings are read, not trained, through it."""
    with torch.autocast(voice.device.type, enabled=False):
        v = F.normalize(voice.float(), dim=-1)
        t = F.normalize(labels.detach().float(), dim=-1)
        return VOICE_SCALE * torch.einsum("nd,...d->n...", v, t)


@dataclass
class LabelChoices:
    """Which text tokens are label tags, and each kind's labels. At a position whose target is a label tag the
    label-choice loss is the cross-entropy among that kind's labels only (``<MALE>`` against ``<FEMALE>``): it
    trains which label, not whether a tag comes now, so weighting it does not make transcripts end early."""

    kind_of_id: torch.Tensor  # (V,) kind index per text token id; -1: not a label tag
    ids: torch.Tensor  # (K, M) each kind's label token ids, padded with -1
    id_of_label: tuple[dict[str, int], ...] = ()  # per kind: label ("FEMALE") -> its tag's token id

    def kinds(self, targets: torch.Tensor) -> torch.Tensor:
        """The kind index of each target token id (-1: not a label tag, ids outside the table included)."""
        table = self.kind_of_id.to(targets.device)
        return torch.where(targets < len(table), table[targets.clamp(max=len(table) - 1)], -1)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed label-choice cross-entropy and the number of label positions among (N, V) logits."""
        ids = self.ids.to(targets.device)
        kinds = self.kinds(targets)
        at = kinds >= 0
        if not bool(at.any()):
            return logits.new_zeros((), dtype=torch.float32), at.sum()
        candidates = ids[kinds[at]]  # (n, M)
        scores = logits[at].float().gather(1, candidates.clamp(min=0)).masked_fill(candidates < 0, float("-inf"))
        which = (candidates == targets[at][:, None]).float().argmax(1)
        return F.cross_entropy(scores, which, reduction="sum"), at.sum()

    def voice_loss(self, voice: torch.Tensor, label_ids: torch.Tensor,
                   table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The voice-label loss: each clip's utterance embedding (N, d) scored (``voice_scores``) against the token
        embeddings ``table`` of each kind's labels; ``label_ids`` (N, K) holds the clip's label token id per kind
        (-1: unknown). Summed cross-entropy, and per kind the labelled clips and the correct argmaxes (K,)."""
        ids = self.ids.to(voice.device)
        known = label_ids >= 0  # (N, K)
        loss = voice.new_zeros((), dtype=torch.float32)
        counts, hits = known.sum(0), torch.zeros(ids.shape[0], device=voice.device)
        for k in range(ids.shape[0]):
            rows = known[:, k]
            if not bool(rows.any()):
                continue
            candidates = ids[k][ids[k] >= 0]
            scores = voice_scores(voice[rows], table[candidates])  # (n, labels of kind k)
            which = (candidates[None] == label_ids[rows, k][:, None]).float().argmax(1)
            loss = loss + F.cross_entropy(scores, which, reduction="sum")
            hits[k] = (scores.argmax(1) == which).sum()
        return loss, counts, hits


def tag_token_kinds(tokenizer, rendering: Mapping[str, Any]) -> tuple[list[str], LabelChoices | None]:
    """Label kinds, and for the label tags that are one token of this tokenizer their token ids per kind
    (``LabelChoices``: monitoring, the label-choice and the voice-label losses); tags split into pieces are left out."""
    label_sets = TaskRegistry.from_config(**dict(rendering)).rendering.label_sets
    kinds = sorted(label_sets)
    kind_of_id = torch.full((len(tokenizer),), -1, dtype=torch.long)
    id_of_label: list[dict[str, int]] = []
    for k, kind in enumerate(kinds):
        id_of_label.append({})
        for label in label_sets[kind]:
            ids = tokenizer.encode(tag_string(label), add_special_tokens=False)
            if len(ids) == 1 and ids[0] < len(kind_of_id):
                kind_of_id[ids[0]] = k
                id_of_label[-1][label] = ids[0]
    if not any(id_of_label):
        return kinds, None
    table = torch.full((len(kinds), max(map(len, id_of_label))), -1, dtype=torch.long)
    for k, ids in enumerate(id_of_label):
        table[k, : len(ids)] = torch.tensor(list(ids.values()), dtype=torch.long)
    return kinds, LabelChoices(kind_of_id, table, tuple(id_of_label))


def label_bias(voice: torch.Tensor, ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """(N, V) additive logits: for each utterance embedding (N, d) and each kind's label ids (K, M, -1 padded), the
    scores ``voice_scores(voice, table[label])`` minus their mean over the kind's labels at those labels' columns,
    0 elsewhere.
    Centring leaves the kind's total as the LLM put it (to first order): the bias moves which label, not whether."""
    ids = ids.to(voice.device)
    valid = ids >= 0
    scores = voice_scores(voice, table[ids.clamp(min=0)])  # (N, K, M)
    mean = (scores * valid).sum(-1, keepdim=True) / valid.sum(-1, keepdim=True).clamp(min=1)
    centred = (scores - mean)[:, valid]  # (N, labels)
    return voice.new_zeros(voice.shape[0], table.shape[0], dtype=torch.float32).index_put(
        (torch.arange(voice.shape[0], device=voice.device)[:, None], ids[valid][None]), centred)
