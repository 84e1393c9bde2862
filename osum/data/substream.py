"""One sub-stream of one reader: its shards, its reader position, its batcher, and their saved state.

A sub-stream reads its shard sets in its epoch order (osum.data.plan), turns samples into examples with
its processor (restricted to its batch group's tasks, see ``SampleProcessor.for_group``), and cuts
batches from its own sort buffer. It reads only when asked for a batch and has none pending, so it never
holds more than one buffer's worth of examples (waiting in the buffer or cut into pending batches),
whatever the group weights.

Its state (reader position, batcher as sample references) rebuilds it exactly: ``restore`` reads the
referenced samples again and turns them into the very same examples (the per-sample RNG is keyed by
(seed, stream epoch, key)).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from osum.data.batching import Batcher, BatchLimits
from osum.data.mixture import NotForGroup
from osum.data.plan import ALL, Restart, epoch_order, shards_for, stream_seed
from osum.data.processing import Example, SampleProcessor
from osum.data.reader import read_shard
from osum.data.skips import BadSample, SkipCounter
from osum.data.sources import ShardSet


@dataclass
class ReaderPosition:
    epoch: int = 0
    shard_pos: int = 0  # index in this reader's shard list of the epoch
    group_pos: int = 0  # groups of that shard already consumed


@dataclass
class SubStreamConfig:
    """What every reader of one sub-stream shares."""

    name: str  # the batch group, or ALL
    sets: list[ShardSet]
    processor: SampleProcessor
    limits: BatchLimits
    seed: int = 0
    shuffle: bool = True
    infinite: bool = True
    temperature: float = 1.0


class SubStream:
    """The reader ``consumer`` of ``n_consumers`` of one sub-stream."""

    def __init__(self, cfg: SubStreamConfig, consumer: int, n_consumers: int, skips: SkipCounter,
                 restart: Restart | None = None):
        self.cfg, self.consumer, self.n_consumers, self.skips = cfg, consumer, n_consumers, skips
        self.seed = stream_seed(cfg.seed, cfg.name)
        self.restart = restart or Restart()
        self.batcher = Batcher(cfg.limits, random.Random(f"{self.seed}:batcher:{consumer}"))
        self.pos = ReaderPosition(epoch=self.restart.epoch)
        self._examples: Iterator[Example] | None = None

    def _plan(self, epoch: int) -> list[str]:
        c = self.cfg
        if self.restart.finished and epoch == self.restart.epoch:
            order = epoch_order(c.sets, epoch, self.seed, c.shuffle, c.temperature)
            return [s for s in order if s not in self.restart.finished][self.consumer :: self.n_consumers]
        return shards_for(c.sets, epoch, self.seed, c.shuffle, self.consumer, self.n_consumers, c.infinite,
                          c.temperature)

    def _example(self, raw, epoch: int) -> Example:
        ex = self.cfg.processor(raw, random.Random(f"{self.cfg.seed}:{epoch}:{raw.key}"))
        ex.ref = (epoch, raw.shard, raw.index)
        return ex

    def restore(self, state: dict) -> None:
        """Continue from a saved ``state`` (see ``state``)."""
        by_shard: dict[str, dict[int, set[int]]] = {}  # shard -> group index -> stream epochs (small data repeats)
        for epoch, shard, index in self.batcher.references(state["batcher"]):
            by_shard.setdefault(shard, {}).setdefault(index, set()).add(epoch)
        found: dict[tuple, Example] = {}
        for shard, wanted in by_shard.items():
            for raw in read_shard(shard, SkipCounter(), start=min(wanted)):
                for epoch in wanted.get(raw.index, ()):
                    found[(epoch, shard, raw.index)] = self._example(raw, epoch)
                if raw.index >= max(wanted):
                    break
        self.batcher.restore(state["batcher"], lambda ref: found[ref])
        self.pos = ReaderPosition(state["epoch"], state["shard_pos"], state["group_pos"])

    def state(self) -> dict:
        return {**asdict(self.pos), "batcher": self.batcher.state()}

    def _read(self) -> Iterator[Example]:
        """This reader's examples from ``pos`` on, advancing ``pos`` (in place) as groups are read."""
        pos, skips = self.pos, self.skips
        while True:
            produced, whole = False, pos.shard_pos == 0 and pos.group_pos == 0  # a resumed pass may start at its end
            shards = self._plan(pos.epoch)
            while pos.shard_pos < len(shards):
                shard = shards[pos.shard_pos]
                for raw in read_shard(shard, skips, start=pos.group_pos):
                    pos.group_pos = raw.index + 1
                    try:
                        ex = self._example(raw, pos.epoch)
                    except NotForGroup:
                        continue  # another batch group's sample: its own sub-stream reads it
                    except BadSample as e:
                        skips.skip(e.reason, os.path.basename(shard), raw.key, e.detail)
                        continue
                    if ex.cropped_from is not None:
                        skips.skip("cropped_too_long", os.path.basename(shard), raw.key,
                                   f"{ex.cropped_from:.1f} s cropped to {ex.seconds:.1f} s for {ex.task}")
                    produced = True
                    yield ex
                pos.shard_pos, pos.group_pos = pos.shard_pos + 1, 0
            if not self.cfg.infinite:
                return
            if whole and not produced:
                what = "" if self.cfg.name == ALL else f" of batch group {self.cfg.name!r} (data.batch_groups)"
                raise RuntimeError(f"reader {self.consumer}{what}: a whole pass over its shards gave no usable "
                                   f"sample ({skips.summary()})")
            pos.epoch, pos.shard_pos = pos.epoch + 1, 0

    def next_batch(self) -> list[Example] | None:
        """The next batch, reading on only while none is pending; ``None`` when a finite stream has ended."""
        if self._examples is None:
            self._examples = self._read()
        while (batch := self.batcher.take()) is None:
            ex = next(self._examples, None)
            if ex is None:  # a finite stream has ended
                self.batcher.flush()
                return self.batcher.take()
            self.batcher.add(ex)
        return batch
