"""Which shards each reader reads: a sub-stream's epoch order, its split over readers, the resume plan.

A stream is made of sub-streams (one per batch group, or one named ``ALL`` holding every group when
``data.batch_groups`` is not set). Each sub-stream has its own shard sets and its own seed: the epoch's
shards (weighted per set, see osum.data.sources) are shuffled with ``(stream seed, epoch)``, then shard
``i`` goes to reader ``i mod (world_size * num_workers)``. The ``ALL`` sub-stream's seed is the run's
seed itself, so a run without batch groups reads exactly what it read before sub-streams existed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from osum.data.sources import ShardSet, epoch_shards

ALL = "all"  # the one sub-stream of a run without data.batch_groups


def stream_seed(seed: int, stream: str) -> str:
    """The seed of sub-stream ``stream``: the run's seed for ``ALL``, else the seed and the group."""
    return str(seed) if stream == ALL else f"{seed}:{stream}"


def as_sets(shards: list[str] | list[ShardSet]) -> list[ShardSet]:
    """Shard sets as given, or a plain shard list as one set of weight 1."""
    if shards and isinstance(shards[0], ShardSet):
        return list(shards)  # type: ignore[arg-type]
    return [ShardSet("all", list(shards))]  # type: ignore[arg-type]


def epoch_order(sets: list[ShardSet], epoch: int, seed: int | str, shuffle: bool,
                temperature: float = 1.0) -> list[str]:
    """The epoch's shards (weighted per set, see osum.data.sources), shuffled globally with the seed."""
    order = epoch_shards(sets, epoch, seed, temperature) if len(sets) > 1 or sets[0].weight != 1.0 \
        else list(sets[0].shards)
    if shuffle:
        random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def shards_for(shards: list[str] | list[ShardSet], epoch: int, seed: int | str, shuffle: bool, consumer: int,
               n_consumers: int, cycle: bool, temperature: float = 1.0) -> list[str]:
    """This reader's shards for ``epoch``. With fewer shards than readers and ``cycle``, shards repeat."""
    order = epoch_order(as_sets(shards), epoch, seed, shuffle, temperature)
    if len(order) < n_consumers and cycle:
        return [order[consumer % len(order)]] if order else []
    return order[consumer::n_consumers]


@dataclass
class Restart:
    """Where one sub-stream restarts when the saved layout differs: this epoch, without these shards."""

    epoch: int = 0
    finished: set[str] = field(default_factory=set)


@dataclass
class ResumePlan:
    """How a stream continues from a checkpoint's loader state."""

    exact: dict | None = None  # this rank's saved states (same world size and worker count)
    restart: dict[str, Restart] = field(default_factory=dict)  # otherwise: per sub-stream
    note: str = ""

    def restart_of(self, stream: str) -> Restart:
        return self.restart.get(stream, Restart())


def worker_streams(state: dict) -> dict[str, dict]:
    """A worker's saved state -> sub-stream name -> its position and batcher. States saved before
    sub-streams existed hold one reader's fields at the top level: they are the ``ALL`` sub-stream's."""
    if "streams" in state:
        return state["streams"]
    return {ALL: {k: state[k] for k in ("epoch", "shard_pos", "group_pos", "batcher")}}


def resume_plan(saved: list[dict] | None, rank: int, world: int, workers: int,
                streams: Mapping[str, list[ShardSet]] | list[str] | list[ShardSet], seed: int, shuffle: bool,
                temperature: float = 1.0) -> ResumePlan:
    """Exact when the layout matches; else each sub-stream restarts its earliest saved epoch minus the
    shards every reader had finished in it (a partly read shard is read again: some samples repeat,
    none are lost). ``streams``: sub-stream name -> shard sets, or the shards of the one ``ALL`` stream."""
    if not saved:
        return ResumePlan()
    old_world, old_workers = saved[0]["world"], saved[0]["workers"]
    if old_world == world and old_workers == workers:
        return ResumePlan(exact=saved[rank], note="exact resume of the data stream")
    if not isinstance(streams, Mapping):
        streams = {ALL: as_sets(streams)}
    n_old = old_world * old_workers
    restart: dict[str, Restart] = {}
    for name, sets in streams.items():
        states = [(p["rank"] * old_workers + int(role), worker_streams(st)[name]) for p in saved
                  for role, st in p["states"].items() if name in worker_streams(st)]
        if not states:
            continue
        epoch = min(st["epoch"] for _, st in states)
        finished: set[str] = set()
        for consumer, st in states:
            mine = shards_for(sets, epoch, stream_seed(seed, name), shuffle, consumer, n_old, cycle=False,
                              temperature=temperature)
            finished.update(mine if st["epoch"] > epoch else mine[: st["shard_pos"]])
        restart[name] = Restart(epoch, finished)
    where = "; ".join(f"{'' if name == ALL else f'sub-stream {name}: '}restarting stream epoch {r.epoch} "
                      f"without its {len(r.finished)} finished shard(s)" for name, r in restart.items())
    note = (f"data stream saved with {old_world} rank(s) x {old_workers} worker(s), now {world} x {workers}: "
            f"{where or 'restarting from the start'}; partly read shards are read again")
    return ResumePlan(restart=restart, note=note)
