"""Which task a sample serves (weighted choice among the tasks of the mixture that it can serve), and
which batch group a task belongs to.

A batch group's sub-stream uses the mixture restricted to the group's tasks (``TaskMixture.restricted``):
a sample that serves none of them, but some task of the whole mixture, is not for this group
(``NotForGroup``, skipped without being counted as bad); one that serves no task at all is a bad sample.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Mapping, Sequence

from osum.data.skips import BadSample
from osum.tasks import Task, TaskRegistry, UnknownTaskError


class NotForGroup(BadSample):
    """A sample that serves no task of the sub-stream's batch group (but may serve another group)."""

    def __init__(self, detail: str = ""):
        super().__init__("not_for_group", detail)


class TaskMixture:
    """Task tag string -> weight. A sample with its own ``task`` field keeps it."""

    whole: TaskMixture | None = None  # the unrestricted mixture, when this one is restricted to a group
    keep: Callable[[Task], bool] | None = None  # the restriction

    def __init__(self, registry: TaskRegistry, weights: Mapping[str, float]):
        if not weights:
            raise ValueError("data.tasks is empty: list task tag strings with weights")
        self.registry = registry
        self.tasks: list[Task] = []
        self.weights: list[float] = []
        for tag, w in weights.items():
            try:
                task = registry.get(tag)
            except UnknownTaskError as e:
                raise ValueError(f"data.tasks: {e}") from None
            if float(w) < 0:
                raise ValueError(f"data.tasks[{tag!r}] has negative weight {w}")
            if float(w) > 0:
                self.tasks.append(task)
                self.weights.append(float(w))

    def shares(self) -> dict[str, float]:
        total = sum(self.weights) or 1.0
        return {t.tag: w / total for t, w in zip(self.tasks, self.weights)}

    def restricted(self, keep: Callable[[Task], bool]) -> TaskMixture:
        """This mixture with only the tasks ``keep`` accepts (weights renormalised by the choice); may be
        empty (then only samples with their own accepted ``task`` field serve)."""
        out = copy.copy(self)
        out.tasks = [t for t in self.tasks if keep(t)]
        out.weights = [w for t, w in zip(self.tasks, self.weights) if keep(t)]
        out.whole, out.keep = self.whole or self, keep
        return out

    def servable(self, meta: Mapping, present: set[str]) -> list[tuple[Task, float]]:
        return [(t, w) for t, w in zip(self.tasks, self.weights) if self.registry.can_serve(t, meta, present)]

    def choose(self, meta: Mapping, rng: random.Random, present: set[str] | None = None) -> Task:
        """A task this sample can serve (``present``: its fields, see TaskRegistry.present_fields)."""
        if meta.get("task"):
            try:
                task = self.registry.get(str(meta["task"]))
            except UnknownTaskError:
                raise BadSample("unknown_task", str(meta["task"])[:60]) from None
            if self.keep is not None and not self.keep(task):
                raise NotForGroup(task.tag)
            return task
        present = self.registry.present_fields(meta) if present is None else present  # not once per task
        options = self.servable(meta, present)
        if not options:
            if self.whole is not None and self.whole.servable(meta, present):
                raise NotForGroup()
            raise BadSample("no_servable_task", "missing fields for every task of the mixture")
        tasks, weights = zip(*options)
        return rng.choices(tasks, weights=weights, k=1)[0]


def group_of_task(registry: TaskRegistry, task_groups: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """``data.task_groups`` (group name -> task tags) -> task tag -> group, checked: known tags, one
    group per task, one output type per group (a batch has one output type)."""
    result: dict[str, str] = {}
    for group, tags in task_groups.items():
        try:
            tasks = [registry.get(str(tag)) for tag in tags]
        except UnknownTaskError as e:
            raise ValueError(f"data.task_groups.{group}: {e}") from None
        if len({t.output_type for t in tasks}) > 1:
            raise ValueError(f"data.task_groups.{group}: its tasks have different output types")
        for task in tasks:
            if task.tag in result:
                raise ValueError(f"data.task_groups: {task.tag!r} is in both {result[task.tag]!r} and {group!r}")
            result[task.tag] = str(group)
    return result
