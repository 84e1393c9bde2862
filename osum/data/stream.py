"""The streaming dataset: shards -> examples -> batches, split over ranks and DataLoader workers.

Shards are shuffled globally per epoch with the seed, then shard ``i`` of the epoch order goes to
reader ``i mod (world_size * num_workers)``. A training stream is infinite (epochs follow each other,
each with a new order), so every rank yields batches for as long as the trainer asks: no rank runs out
before another. Randomness per sample (task choice, prompt, SpecAugment) comes from an RNG keyed by
(seed, epoch, key), independent of which worker reads the sample.

Exact resume: every batch carries its reader's position after it (epoch, shard, groups read) and the
batcher's state as sample references. ``osum.data.resume.LoaderResume`` keeps the state of the last
trained batch of every reader in the checkpoint; a resumed stream fast-forwards each reader to its
position, rebuilds its batcher from the references, and rotates the worker roles so that the
DataLoader's round robin continues with the reader whose turn was next. With another world size or
worker count it restarts the saved epoch without the shards that were finished (see ``resume_plan``).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch
from torch.utils.data import IterableDataset, get_worker_info

from osum.data.batching import Batcher, BatchLimits, collate
from osum.data.processing import Example, SampleProcessor
from osum.data.reader import read_shard
from osum.data.skips import BadSample, SkipCounter
from osum.data.sources import ShardSet, epoch_shards

log = logging.getLogger("osum.data")


def rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def as_sets(shards: list[str] | list[ShardSet]) -> list[ShardSet]:
    """Shard sets as given, or a plain shard list as one set of weight 1."""
    if shards and isinstance(shards[0], ShardSet):
        return list(shards)  # type: ignore[arg-type]
    return [ShardSet("all", list(shards))]  # type: ignore[arg-type]


def epoch_order(sets: list[ShardSet], epoch: int, seed: int, shuffle: bool, temperature: float = 1.0) -> list[str]:
    """The epoch's shards (weighted per set, see osum.data.sources), shuffled globally with the seed."""
    order = epoch_shards(sets, epoch, seed, temperature) if len(sets) > 1 or sets[0].weight != 1.0 \
        else list(sets[0].shards)
    if shuffle:
        random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def shards_for(shards: list[str] | list[ShardSet], epoch: int, seed: int, shuffle: bool, consumer: int,
               n_consumers: int, cycle: bool, temperature: float = 1.0) -> list[str]:
    """This reader's shards for ``epoch``. With fewer shards than readers and ``cycle``, shards repeat."""
    order = epoch_order(as_sets(shards), epoch, seed, shuffle, temperature)
    if len(order) < n_consumers and cycle:
        return [order[consumer % len(order)]] if order else []
    return order[consumer::n_consumers]


@dataclass
class ResumePlan:
    """How a stream continues from a checkpoint's loader state."""

    exact: dict | None = None  # this rank's saved states (same world size and worker count)
    epoch: int = 0  # otherwise: restart this epoch ...
    finished: set[str] = field(default_factory=set)  # ... without these shards
    note: str = ""


def resume_plan(saved: list[dict] | None, rank: int, world: int, workers: int, shards: list[str] | list[ShardSet],
                seed: int, shuffle: bool, temperature: float = 1.0) -> ResumePlan:
    """Exact when the layout matches; else restart the earliest saved epoch minus the shards every
    reader had finished in it (a partly read shard is read again: some samples repeat, none are lost)."""
    if not saved:
        return ResumePlan()
    old_world, old_workers = saved[0]["world"], saved[0]["workers"]
    if old_world == world and old_workers == workers:
        return ResumePlan(exact=saved[rank], note="exact resume of the data stream")
    states = [(p["rank"] * old_workers + int(role), st) for p in saved for role, st in p["states"].items()]
    n_old = old_world * old_workers
    epoch = min((st["epoch"] for _, st in states), default=0)
    finished: set[str] = set()
    for consumer, st in states:
        mine = shards_for(shards, epoch, seed, shuffle, consumer, n_old, cycle=False, temperature=temperature)
        finished.update(mine if st["epoch"] > epoch else mine[: st["shard_pos"]])
    note = (f"data stream saved with {old_world} rank(s) x {old_workers} worker(s), now {world} x {workers}: "
            f"restarting stream epoch {epoch} without its {len(finished)} finished shard(s); "
            "partly read shards are read again")
    return ResumePlan(epoch=epoch, finished=finished, note=note)


@dataclass
class ReaderPosition:
    epoch: int = 0
    shard_pos: int = 0  # index in this reader's shard list of the epoch
    group_pos: int = 0  # groups of that shard already consumed


class ShardStream(IterableDataset):
    def __init__(self, shards: list[str] | list[ShardSet], processor: SampleProcessor, limits: BatchLimits,
                 pad_id: int, seed: int = 0, shuffle: bool = True, infinite: bool = True,
                 resume: ResumePlan | None = None, temperature: float = 1.0,
                 group_weights: dict[str, float] | None = None):
        super().__init__()
        self.sets = as_sets(shards)
        self.processor, self.limits, self.pad_id = processor, limits, pad_id
        self.seed, self.shuffle, self.infinite, self.temperature = seed, shuffle, infinite, temperature
        self.resume = resume or ResumePlan()
        self.group_weights = dict(group_weights) if group_weights else None  # batch group -> weight per batch
        self.rank, self.world = rank_and_world()  # captured in the main process, valid in every worker

    def _plan(self, epoch: int, consumer: int, n_consumers: int) -> list[str]:
        if self.resume.finished and epoch == self.resume.epoch:
            order = epoch_order(self.sets, epoch, self.seed, self.shuffle, self.temperature)
            return [s for s in order if s not in self.resume.finished][consumer::n_consumers]
        return shards_for(self.sets, epoch, self.seed, self.shuffle, consumer, n_consumers, self.infinite,
                          self.temperature)

    def _example(self, raw, epoch: int) -> Example:
        ex = self.processor(raw, random.Random(f"{self.seed}:{epoch}:{raw.key}"))
        ex.ref = (epoch, raw.shard, raw.index)
        return ex

    def _restore(self, state: dict, batcher: Batcher) -> ReaderPosition:
        by_shard: dict[str, dict[int, set[int]]] = {}  # shard -> group index -> stream epochs (small data repeats)
        for epoch, shard, index in batcher.references(state["batcher"]):
            by_shard.setdefault(shard, {}).setdefault(index, set()).add(epoch)
        found: dict[tuple, Example] = {}
        for shard, wanted in by_shard.items():
            for raw in read_shard(shard, SkipCounter(), start=min(wanted)):
                for epoch in wanted.get(raw.index, ()):
                    found[(epoch, shard, raw.index)] = self._example(raw, epoch)
                if raw.index >= max(wanted):
                    break
        batcher.restore(state["batcher"], lambda ref: found[ref])
        return ReaderPosition(state["epoch"], state["shard_pos"], state["group_pos"])

    def _examples(self, pos: ReaderPosition, consumer: int, n_consumers: int,
                  skips: SkipCounter) -> Iterator[Example]:
        """This reader's examples from ``pos`` on, advancing ``pos`` (in place) as groups are read."""
        while True:
            produced = False
            shards = self._plan(pos.epoch, consumer, n_consumers)
            while pos.shard_pos < len(shards):
                shard = shards[pos.shard_pos]
                for raw in read_shard(shard, skips, start=pos.group_pos):
                    pos.group_pos = raw.index + 1
                    try:
                        ex = self._example(raw, pos.epoch)
                    except BadSample as e:
                        skips.skip(e.reason, os.path.basename(shard), raw.key, e.detail)
                        continue
                    if ex.cropped_from is not None:
                        skips.skip("cropped_too_long", os.path.basename(shard), raw.key,
                                   f"{ex.cropped_from:.1f} s cropped to {ex.seconds:.1f} s for {ex.task}")
                    produced = True
                    yield ex
                pos.shard_pos, pos.group_pos = pos.shard_pos + 1, 0
            if not self.infinite:
                return
            if not produced:
                raise RuntimeError(f"reader {consumer}: a whole pass over its shards gave no usable sample "
                                   f"({skips.summary()})")
            pos.epoch, pos.shard_pos = pos.epoch + 1, 0

    def group_of(self, batch_index: int) -> str | None:
        """The batch group (output type or task group) of this rank's ``batch_index``-th batch: the same
        draw on every rank, so that no rank runs a part of the network that another skips."""
        if not self.group_weights:
            return None
        groups = sorted(self.group_weights)
        rng = random.Random(f"{self.seed}:output_type:{batch_index}")
        return rng.choices(groups, weights=[self.group_weights[g] for g in groups], k=1)[0]

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        wid, n_workers = (info.id, info.num_workers) if info else (0, 1)
        exact = self.resume.exact
        role = (wid + (exact["next_role"] if exact else 0)) % n_workers
        consumer, n_consumers = self.rank * n_workers + role, self.world * n_workers
        n_shards = sum(len(s.shards) for s in self.sets)
        if n_shards < n_consumers and consumer == 0:
            log.warning("%d shard(s) for %d readers (%d ranks x %d workers): %s", n_shards, n_consumers,
                        self.world, n_workers, "shards repeat across readers" if self.infinite else "some readers idle")
        skips = SkipCounter()
        batcher = Batcher(self.limits, random.Random(f"{self.seed}:batcher:{consumer}"))
        pos, taken = ReaderPosition(epoch=self.resume.epoch), 0
        if exact and str(role) in exact["states"]:
            state = exact["states"][str(role)]
            pos, taken = self._restore(state, batcher), state["batches"]
        examples = self._examples(pos, consumer, n_consumers, skips)
        while True:
            wanted = self.group_of(taken * n_workers + role)  # round robin: this rank's batch index
            start_epoch, seen_wanted = pos.epoch, False
            while (batch := batcher.take(wanted)) is None:
                ex = next(examples, None)
                if ex is None:  # a finite stream has ended
                    batcher.flush()
                    batch = batcher.take(wanted) or batcher.take()
                    if batch is None:
                        if leftover := skips.take_unreported():  # no batch left to carry them
                            log.warning("after the last batch of reader %d: %s", consumer, leftover)
                        return
                    break
                batcher.add(ex)
                seen_wanted = seen_wanted or ex.group == wanted
                if wanted is not None and not seen_wanted and pos.epoch > start_epoch + 1:
                    raise RuntimeError(f"batch group {wanted!r} was drawn (data.batch_groups) but a whole pass over "
                                       "the shards gave no sample of it")
            taken += 1
            yield self._finish(batch, skips, role, pos, batcher, taken)

    def _finish(self, batch: list[Example], skips: SkipCounter, role: int, pos: ReaderPosition,
                batcher: Batcher, taken: int) -> dict:
        out = collate(batch, self.pad_id)
        out["skips"] = skips.take_unreported()
        out["epoch"] = pos.epoch
        if self.infinite:
            out["loader_state"] = {"role": role, "state": {**asdict(pos), "batches": taken,
                                                           "batcher": batcher.state()}}
        return out
