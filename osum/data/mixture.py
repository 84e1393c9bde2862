"""Which task a sample serves (weighted choice among the tasks of the mixture that it can serve), and
which batch group a task belongs to."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from osum.data.skips import BadSample
from osum.tasks import Task, TaskRegistry, UnknownTaskError


class TaskMixture:
    """Task tag string -> weight. A sample with its own ``task`` field keeps it."""

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
        total = sum(self.weights)
        return {t.tag: w / total for t, w in zip(self.tasks, self.weights)}

    def choose(self, meta: Mapping, rng: random.Random, present: set[str] | None = None) -> Task:
        """A task this sample can serve (``present``: its fields, see TaskRegistry.present_fields)."""
        if meta.get("task"):
            try:
                return self.registry.get(str(meta["task"]))
            except UnknownTaskError:
                raise BadSample("unknown_task", str(meta["task"])[:60]) from None
        present = self.registry.present_fields(meta) if present is None else present  # not once per task
        options = [(t, w) for t, w in zip(self.tasks, self.weights) if self.registry.can_serve(t, meta, present)]
        if not options:
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
