"""Accuracy and confusion matrix of one paralinguistic tag type (gender, age, emotion, ...).

The original ``tools/compute-acc.py`` takes the first ``<...>`` tag of each line and divides matches by the
number of hypotheses. Here the caller extracts the label of the right tag type (so multi-label outputs
such as ``<AGE> <GENDER>`` score each field separately) and passes it as a bare or bracketed label;
both sides go through :func:`osum.tasks.labels.canonical`. A missing hypothesis (None or empty) counts as
wrong and shows as ``<NONE>``. ``chance_level`` is the majority-class baseline: the share of the most
frequent reference label, which the accuracy must beat to show the model learnt something.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from osum.tasks.labels import canonical

NONE_LABEL = "<NONE>"


class TagAccuracy:
    """Accumulates (reference, hypothesis) label pairs of tag type ``kind``."""

    def __init__(self, kind: str, labels: list[str] | None = None) -> None:
        self.kind = kind
        self.labels = [canonical(kind, label) for label in labels or []]
        self._counts: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def add(self, ref_label: str | None, hyp_label: str | None) -> None:
        """Count one pair; a None reference (sample without this label) is skipped."""
        if not ref_label:
            return
        hyp = canonical(self.kind, hyp_label) if hyp_label else NONE_LABEL
        self._counts[canonical(self.kind, ref_label)][hyp] += 1

    @property
    def n(self) -> int:
        """Number of scored pairs."""
        return sum(sum(row.values()) for row in self._counts.values())

    @property
    def correct(self) -> int:
        """Number of pairs whose hypothesis equals the reference."""
        return sum(row[ref] for ref, row in self._counts.items())

    @property
    def accuracy(self) -> float:
        """``correct / n`` (0 when nothing was scored)."""
        return self.correct / self.n if self.n else 0.0

    @property
    def chance_level(self) -> float:
        """Share of the most frequent reference label (0 when nothing was scored)."""
        return max(sum(row.values()) for row in self._counts.values()) / self.n if self.n else 0.0

    @property
    def confusion(self) -> dict[str, dict[str, int]]:
        """``{ref: {hyp: count}}`` of the observed pairs."""
        return {ref: dict(row) for ref, row in self._counts.items()}

    def recall(self) -> dict[str, float]:
        """Per reference label: share of its samples predicted correctly."""
        return {ref: row[ref] / sum(row.values()) for ref, row in self._counts.items()}

    def as_dict(self) -> dict[str, object]:
        """Summary numbers and the confusion matrix, JSON-ready."""
        return {
            "kind": self.kind,
            "accuracy": self.accuracy,
            "n": self.n,
            "chance_level": self.chance_level,
            "recall": self.recall(),
            "confusion": self.confusion,
        }

    def _axes(self) -> tuple[list[str], list[str]]:
        """Row labels (declared, then other references) and columns (rows, other hypotheses, ``<NONE>``)."""
        rows = self.labels + sorted(set(self._counts) - set(self.labels))
        seen_hyps = {hyp for row in self._counts.values() for hyp in row}
        cols = rows + sorted(seen_hyps - set(rows) - {NONE_LABEL})
        if NONE_LABEL in seen_hyps:
            cols.append(NONE_LABEL)
        return rows, cols

    def confusion_table(self) -> str:
        """Fixed-width confusion matrix (rows = reference, columns = hypothesis) with per-class recall."""
        rows, cols = self._axes()
        corner = "ref \\ hyp"
        table = [[corner, *cols, "recall"]]
        for ref in rows:
            row = self._counts.get(ref, Counter())
            total = sum(row.values())
            recall = f"{100 * row[ref] / total:.1f}%" if total else "-"
            table.append([ref, *(str(row[hyp]) for hyp in cols), recall])
        widths = [max(len(line[c]) for line in table) for c in range(len(table[0]))]
        lines = [
            "  ".join(
                cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(line, widths))
            )
            for line in table
        ]
        title = (
            f"{self.kind}: accuracy {100 * self.accuracy:.2f}% (n={self.n}), "
            f"chance {100 * self.chance_level:.2f}%"
        )
        return "\n".join([title, *lines])
