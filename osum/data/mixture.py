"""Which task a sample serves: weighted choice among the tasks of the mixture that it can serve."""

from __future__ import annotations

import random
from collections.abc import Mapping

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

    def choose(self, meta: Mapping, rng: random.Random) -> Task:
        if meta.get("task"):
            try:
                return self.registry.get(str(meta["task"]))
            except UnknownTaskError:
                raise BadSample("unknown_task", str(meta["task"])[:60]) from None
        options = [(t, w) for t, w in zip(self.tasks, self.weights) if self.registry.can_serve(t, meta)]
        if not options:
            raise BadSample("no_servable_task", "missing fields for every task of the mixture")
        tasks, weights = zip(*options)
        return rng.choices(tasks, weights=weights, k=1)[0]
