"""Bad-input bookkeeping: a sample that cannot be used is skipped, counted by reason, logged once.

Every skip names the shard and key. Counts live per process (each DataLoader worker has its own
counter); they are carried to the main process inside batches (``batch["skips"]``) so that the run can
log totals and write them to the run directory at the end.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

log = logging.getLogger("osum.data")

KEPT_REASONS = ("cropped_too_long",)  # counted and logged like skips, but the sample was used


class BadSample(Exception):
    """A sample that cannot be used; ``reason`` is a short stable name used for counting."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


class SkipCounter:
    """Counts skipped samples by reason and logs the first few of each reason with shard and key."""

    def __init__(self, log_first: int = 5):
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}
        self.log_first = log_first
        self._unreported: Counter[str] = Counter()

    def skip(self, reason: str, shard: str, key: str | None, detail: str = "") -> None:
        self.counts[reason] += 1
        self._unreported[reason] += 1
        where = f"{shard}:{key}" if key else shard
        examples = self.examples.setdefault(reason, [])
        if len(examples) < self.log_first:
            examples.append(f"{where} {detail}".strip())
            verb = "kept changed" if reason in KEPT_REASONS else "skipped"
            log.warning("%s sample %s (%s)%s", verb, where, reason, f": {detail}" if detail else "")

    def take_unreported(self) -> dict[str, int]:
        """Counts since the last call (what a worker hands to the main process with a batch)."""
        out, self._unreported = dict(self._unreported), Counter()
        return out

    def merge(self, counts: dict[str, int]) -> None:
        self.counts.update(counts)

    @property
    def total(self) -> int:
        """Samples skipped (samples kept with a change, such as a crop, are not among them)."""
        return sum(n for r, n in self.counts.items() if r not in KEPT_REASONS)

    def _by_kind(self) -> tuple[dict[str, int], dict[str, int]]:
        """(skipped by reason, kept-with-a-change by reason), names sorted."""
        counts = sorted(self.counts.items())
        return ({r: n for r, n in counts if r not in KEPT_REASONS}, {r: n for r, n in counts if r in KEPT_REASONS})

    def summary(self) -> str:
        skipped, kept = self._by_kind()
        text = (f"{self.total} samples skipped ({', '.join(f'{r}={n}' for r, n in skipped.items())})"
                if skipped else "no samples skipped")
        return text + "".join(f"; {n} samples {r.replace('_', ' ')}" for r, n in kept.items())

    def write(self, path: str | Path) -> None:
        skipped, kept = self._by_kind()
        Path(path).write_text(json.dumps({"total": self.total, "by_reason": skipped, "kept_changed": kept,
                                          "examples": self.examples}, indent=2))
