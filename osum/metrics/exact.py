"""Exact-match accuracy of whole answers, compared in :func:`osum.metrics.wer.normalize_text` form.

Case, punctuation and spacing do not matter. Tags are removed by default; pass ``remove_tags=False``
when the tags are the answer (otherwise ``"<HAPPY>"`` and ``"<SAD>"`` would both normalise to ``""``).
"""

from __future__ import annotations

from osum.metrics.wer import normalize_text


class ExactMatch:
    """Share of hypotheses whose normalised form equals the reference's."""

    def __init__(self, remove_tags: bool = True) -> None:
        self.remove_tags = remove_tags
        self.correct = 0
        self.n = 0

    def add(self, ref: str, hyp: str) -> bool:
        """Score one pair and return whether it matched."""
        match = normalize_text(ref, self.remove_tags) == normalize_text(hyp, self.remove_tags)
        self.correct += match
        self.n += 1
        return match

    @property
    def accuracy(self) -> float:
        """``correct / n`` (0 when nothing was scored)."""
        return self.correct / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, float | int]:
        """Summary numbers, JSON-ready."""
        return {"accuracy": self.accuracy, "n": self.n, "correct": self.correct}
