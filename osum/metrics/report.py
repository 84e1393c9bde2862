"""Evaluation report: the metric objects of every task, as ``report.json`` and a readable ``report.txt``.

Callers create metrics on first use and feed them::

    report = Report()
    report.metric("<TRANSCRIBE> <GENDER>", "wer", ErrorRate).add(ref_text, hyp_text, key)
    report.metric("<TRANSCRIBE> <GENDER>", "gender", TagAccuracy, kind="gender").add("MALE", "FEMALE")
    report.metric("<TRANSCRIBE>", "wer", ErrorRate, group="digits").add(ref_text, hyp_text)  # "wer/digits"
    report.write(out_dir)

The text table has one row per task and metric (value, n, and for tag accuracies the chance level and
whether the accuracy beats it), followed by the confusion tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from osum.metrics.exact import ExactMatch
from osum.metrics.tags import TagAccuracy
from osum.metrics.timestamps import AlignmentShift
from osum.metrics.wer import ErrorRate

Metric = ErrorRate | TagAccuracy | AlignmentShift | ExactMatch
M = TypeVar("M", ErrorRate, TagAccuracy, AlignmentShift, ExactMatch)
# The metric kinds the task registry names (osum.tasks.registry.METRIC_OF_FIELD) -> their classes.
METRIC_OF_KIND: dict[str, type[Metric]] = {"wer": ErrorRate, "alignment_shift": AlignmentShift, "exact": ExactMatch,
                                           "tag_accuracy": TagAccuracy}

_HEADER = ["task", "metric", "value", "n", "chance", "above chance", "detail"]


def _row(metric: Metric) -> list[str]:
    """Table cells after the task and metric name: value, n, chance, above chance, detail."""
    if isinstance(metric, ErrorRate):
        detail = f"{metric.unit}s={metric.ref_len} S={metric.sub} D={metric.dels} I={metric.ins}"
        return [f"{100 * metric.rate:.2f}%", str(len(metric.utts)), "-", "-", detail]
    if isinstance(metric, TagAccuracy):
        above = ("yes" if metric.accuracy > metric.chance_level else "no") if metric.n else "-"
        chance = f"{100 * metric.chance_level:.2f}%"
        return [f"{100 * metric.accuracy:.2f}%", str(metric.n), chance, above, f"kind={metric.kind}"]
    if isinstance(metric, AlignmentShift):
        detail = f"matched {metric.n_matched}/{metric.n_ref_words} words"
        return [f"{metric.mean_ms:.1f} ms", str(metric.n_utts), "-", "-", detail]
    return [f"{100 * metric.accuracy:.2f}%", str(metric.n), "-", "-", f"correct={metric.correct}"]


def _format_rows(rows: list[list[str]]) -> str:
    """Left-aligned fixed-width columns separated by two spaces."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


class TaskReport:
    """The metrics of one task, by name (``name`` or ``name/group``)."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.metrics: dict[str, Metric] = {}

    def metric(self, name: str, factory: Callable[..., M], group: str | None = None, **kwargs: Any) -> M:
        """The metric ``name`` (``name/group`` when ``group`` is set), made by ``factory(**kwargs)`` if new."""
        key = f"{name}/{group}" if group else name
        if key not in self.metrics:
            self.metrics[key] = factory(**kwargs)
        found = self.metrics[key]
        if isinstance(factory, type) and not isinstance(found, factory):
            raise TypeError(f"{self.task} / {key} is a {type(found).__name__}, not a {factory.__name__}")
        return cast(M, found)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{metric name: {"type": class name, **metric.as_dict()}}``."""
        return {name: {"type": type(m).__name__, **m.as_dict()} for name, m in self.metrics.items()}


class Report:
    """All tasks of one evaluation run, in the order they were first seen."""

    def __init__(self) -> None:
        self.tasks: dict[str, TaskReport] = {}

    def task(self, task: str) -> TaskReport:
        """The :class:`TaskReport` of ``task``, created on first use."""
        return self.tasks.setdefault(task, TaskReport(task))

    def metric(
        self, task: str, name: str, factory: Callable[..., M], group: str | None = None, **kwargs: Any
    ) -> M:
        """Shortcut for ``report.task(task).metric(name, factory, group, **kwargs)``."""
        return self.task(task).metric(name, factory, group, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """``{"tasks": {task: {metric name: {...}}}}``, JSON-serialisable."""
        return {"tasks": {task: tr.to_dict() for task, tr in self.tasks.items()}}

    def format_table(self) -> str:
        """The summary table, then one confusion table per tag accuracy."""
        rows = [_HEADER]
        confusions = []
        for task, tr in self.tasks.items():
            for name, m in tr.metrics.items():
                rows.append([task, name, *_row(m)])
                if isinstance(m, TagAccuracy):
                    confusions.append(f"[{task}] {name}\n{m.confusion_table()}")
        return "\n\n".join([_format_rows(rows), *confusions]) + "\n"

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``report.json`` and ``report.txt`` into ``out_dir`` (created if needed); return their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        json_path, txt_path = out / "report.json", out / "report.txt"
        json_path.write_text(
            json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        txt_path.write_text(self.format_table(), encoding="utf-8")
        return json_path, txt_path
