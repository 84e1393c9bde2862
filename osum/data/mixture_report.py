"""The training mixture as the run prints it at start: the expected share of each shard set and task.

A sample serves one task among those it has the fields for, so a task that needs a rare field (such as
``<S2TCHAT>``, which needs ``answer``) serves fewer samples than its weight says. The expected shares are
computed from each set's index (``field_sets``: samples by the fields they hold, and ``tasks``: samples
with their own task); a set without those counts falls back to the mixture's weights, and says so.
With ``data.batch_groups``, a task's share is its group's share of the batches times its share of the
samples inside the group (whose sub-stream reads only the sets that can produce the group).
"""

from __future__ import annotations

from collections.abc import Mapping

from osum.data.groups import group_sets, own_task_counts
from osum.data.index import entries_for
from osum.data.mixture import TaskMixture
from osum.data.processing import SampleProcessor
from osum.data.sources import ShardSet, shares
from osum.tasks import UnknownTaskError


def field_set_counts(shard_set: ShardSet) -> dict[frozenset[str], int] | None:
    """Samples without their own task, by the set of fields they hold; ``None`` without index counts."""
    entries = entries_for(shard_set.shards)
    if not entries or any("field_sets" not in e for e in entries):
        return None
    counts: dict[frozenset[str], int] = {}
    for entry in entries:
        for name, n in entry["field_sets"].items():
            key = frozenset(name.split(",")) if name else frozenset()
            counts[key] = counts.get(key, 0) + n
    return counts


def task_split(shard_set: ShardSet, mixture: TaskMixture) -> tuple[dict[str, float], bool]:
    """(task tag -> expected fraction of the set's samples serving it, from field counts?). The fractions
    sum to less than 1 when some samples serve no task of ``mixture``."""
    combos = field_set_counts(shard_set)
    if combos is None:
        return mixture.shares(), False
    registry, served = mixture.registry, {t.tag: 0.0 for t in mixture.tasks}
    own = own_task_counts(shard_set)
    for keys, n in combos.items():
        present = registry.fields_of_keys(keys)
        options = [(t, w) for t, w in zip(mixture.tasks, mixture.weights) if registry.can_serve(t, {}, present)]
        total = sum(w for _, w in options)
        for task, w in options:
            served[task.tag] += n * w / total
    for tag, n in own.items():
        try:
            task = registry.get(tag)
        except UnknownTaskError:
            continue
        if mixture.keep is None or mixture.keep(task):
            served[task.tag] = served.get(task.tag, 0.0) + n
    samples = sum(combos.values()) + sum(own.values())
    return {tag: n / samples for tag, n in served.items() if n} if samples else {}, True


def _size(s: ShardSet) -> str:
    return f"{s.hours:.2f} h" if s.hours else f"{len(s.shards)} shards"


def _fallback_note(counted: bool) -> str:
    return "" if counted else " (no field counts in its index: the mixture's weights, before field availability)"


def describe_sets(sets: list[ShardSet], processor: SampleProcessor, temperature: float) -> list[str]:
    """One stream over every set: each set's share of the epoch, then its tasks' expected shares."""
    lines = []
    set_shares = shares(sets, temperature)
    for s in sets:
        split, counted = task_split(s, processor.mixture_of(s.shards[0]))
        share = set_shares[s.name]
        lines.append(f"  set {s.name}: {share:.1%} ({_size(s)}, weight {s.weight:g}){_fallback_note(counted)}")
        lines += [f"    {tag}: {share * p:.1%}" for tag, p in split.items()]
        if counted and (rest := 1.0 - sum(split.values())) > 1e-9:
            lines.append(f"    (serving no task, skipped): {share * rest:.1%}")
    return lines


def describe_groups(sets: list[ShardSet], processor: SampleProcessor, temperature: float,
                    batch_groups: Mapping[str, float]) -> list[str]:
    """One sub-stream per batch group: the group's share of batches, its sets and its tasks' shares."""
    lines, weight_sum = [], sum(batch_groups.values())
    for group in sorted(batch_groups):
        group_share = batch_groups[group] / weight_sum
        mine = processor.for_group(group)
        chosen = group_sets(sets, mine, group)
        set_shares = shares(chosen, temperature)
        splits = {s.name: task_split(s, mine.mixture_of(s.shards[0])) for s in chosen}
        served = {s.name: set_shares[s.name] * sum(splits[s.name][0].values()) for s in chosen}
        total = sum(served.values()) or 1.0
        lines.append(f"  group {group}: {group_share:.1%} of batches")
        tasks: dict[str, float] = {}
        for s in chosen:
            split, counted = splits[s.name]
            lines.append(f"    set {s.name}: {served[s.name] / total:.1%} of the group's samples ({_size(s)}, "
                         f"weight {s.weight:g}){_fallback_note(counted)}")
            for tag, p in split.items():
                tasks[tag] = tasks.get(tag, 0.0) + set_shares[s.name] * p / total
        lines += [f"    {tag}: {group_share * p:.1%}" for tag, p in tasks.items()]
    return lines


def describe_mixture(sets: list[ShardSet], processor: SampleProcessor, temperature: float,
                     batch_groups: Mapping[str, float] | None) -> str:
    if batch_groups:
        head = ("training mixture (batch groups drawn per batch; inside a group, expected shares of its samples "
                "by the fields they hold):")
        return "\n".join([head, *describe_groups(sets, processor, temperature, batch_groups)])
    head = ("training mixture (sets: expected shares of the epoch's audio; tasks: of the samples, each serving "
            "one task it has the fields for):")
    return "\n".join([head, *describe_sets(sets, processor, temperature)])
