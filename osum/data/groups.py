"""Batch groups: the group of each batch (one seeded draw per batch index, the same on every rank), and
which shard sets can produce a group (what its sub-stream reads)."""

from __future__ import annotations

import random
from collections.abc import Mapping

from osum.data.index import entries_for
from osum.data.processing import SampleProcessor
from osum.data.sources import ShardSet
from osum.tasks import UnknownTaskError


def draw_group(seed: int, batch_index: int, weights: Mapping[str, float]) -> str:
    """The batch group of a rank's ``batch_index``-th batch: the same draw on every rank, so that no rank
    runs a part of the network that another skips."""
    groups = sorted(weights)
    rng = random.Random(f"{seed}:output_type:{batch_index}")
    return rng.choices(groups, weights=[weights[g] for g in groups], k=1)[0]


def own_task_counts(shard_set: ShardSet) -> dict[str, int]:
    """Samples per own ``task`` field in the set, from its index (empty without one)."""
    counts: dict[str, int] = {}
    for entry in entries_for(shard_set.shards) or []:
        for tag, n in entry.get("tasks", {}).items():
            counts[tag] = counts.get(tag, 0) + n
    return counts


def can_produce(shard_set: ShardSet, processor: SampleProcessor, group: str) -> bool:
    """True when the set's task mixture has a task of ``group``, or its index counts samples whose own
    ``task`` field is of ``group``."""
    if any(processor.group_of(t) == group for t in processor.mixture_of(shard_set.shards[0]).tasks):
        return True
    for tag in own_task_counts(shard_set):
        try:
            if processor.group_of(processor.registry.get(tag)) == group:
                return True
        except UnknownTaskError:
            continue  # such samples are skipped as unknown_task wherever they are read
    return False


def group_sets(sets: list[ShardSet], processor: SampleProcessor, group: str) -> list[ShardSet]:
    """The shard sets the sub-stream of ``group`` reads; ``ValueError`` when none can produce it."""
    chosen = [s for s in sets if s.shards and can_produce(s, processor, group)]
    if not chosen:
        raise ValueError(f"data.batch_groups: no shard set of data.train can produce batch group {group!r} "
                         "(no task of it in data.tasks or in a set's tasks, and no sample with such a task)")
    return chosen
