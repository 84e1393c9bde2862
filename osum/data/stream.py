"""The streaming dataset: shards -> examples -> batches, split over ranks and DataLoader workers.

Shards are shuffled globally per epoch with the seed, then shard ``i`` of the epoch order goes to
consumer ``i mod (world_size * num_workers)``. A training stream is infinite (epochs follow each
other, each with a new order), so every rank yields batches for as long as the trainer asks: no rank
runs out before another. Randomness per sample (task choice, prompt, SpecAugment) comes from an RNG
keyed by (seed, epoch, key), independent of which worker reads the sample.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator

import torch
from torch.utils.data import IterableDataset, get_worker_info

from osum.data.batching import Batcher, BatchLimits, collate
from osum.data.processing import SampleProcessor
from osum.data.reader import read_shard
from osum.data.skips import BadSample, SkipCounter

log = logging.getLogger("osum.data")


def rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def shards_for(shards: list[str], epoch: int, seed: int, shuffle: bool, consumer: int, n_consumers: int,
               cycle: bool) -> list[str]:
    """This consumer's shards for ``epoch``. With fewer shards than consumers and ``cycle``, shards repeat."""
    order = list(shards)
    if shuffle:
        random.Random(f"{seed}:{epoch}").shuffle(order)
    if len(order) < n_consumers and cycle:
        return [order[consumer % len(order)]]
    return order[consumer::n_consumers]


class ShardStream(IterableDataset):
    def __init__(self, shards: list[str], processor: SampleProcessor, limits: BatchLimits, pad_id: int,
                 seed: int = 0, shuffle: bool = True, infinite: bool = True):
        super().__init__()
        self.shards, self.processor, self.limits, self.pad_id = shards, processor, limits, pad_id
        self.seed, self.shuffle, self.infinite = seed, shuffle, infinite
        self.rank, self.world = rank_and_world()  # captured in the main process, valid in every worker

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        wid, n_workers = (info.id, info.num_workers) if info else (0, 1)
        consumer, n_consumers = self.rank * n_workers + wid, self.world * n_workers
        if len(self.shards) < n_consumers and consumer == 0:
            log.warning("%d shard(s) for %d readers (%d ranks x %d workers): %s", len(self.shards), n_consumers,
                        self.world, n_workers, "shards repeat across readers" if self.infinite else "some readers idle")
        skips = SkipCounter()
        batcher = Batcher(self.limits, random.Random(f"{self.seed}:batcher:{consumer}"))
        epoch = 0
        while True:
            produced = False
            for shard in shards_for(self.shards, epoch, self.seed, self.shuffle, consumer, n_consumers, self.infinite):
                for raw in read_shard(shard, skips):
                    try:
                        ex = self.processor(raw, random.Random(f"{self.seed}:{epoch}:{raw.key}"))
                    except BadSample as e:
                        skips.skip(e.reason, os.path.basename(shard), raw.key, e.detail)
                        continue
                    produced = True
                    for batch in batcher.add(ex):
                        yield self._finish(batch, skips, epoch)
            for batch in batcher.flush():
                yield self._finish(batch, skips, epoch)
            if not self.infinite:
                break
            if not produced:
                raise RuntimeError(f"reader {consumer}: a whole pass over {len(self.shards)} shard(s) gave no usable "
                                   f"sample ({skips.summary()})")
            epoch += 1

    def _finish(self, batch, skips: SkipCounter, epoch: int) -> dict:
        out = collate(batch, self.pad_id)
        out["skips"] = skips.take_unreported()
        out["epoch"] = epoch
        return out
