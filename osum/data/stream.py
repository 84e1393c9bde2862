"""The streaming dataset: shards -> examples -> batches, split over ranks and DataLoader workers.

Each batch group of ``data.batch_groups`` is its own sub-stream (osum.data.substream): its own shard
sets (those that can produce the group), readers, batcher and resume state. The group of each batch is
drawn from (seed, batch index), the same on every rank, and only the drawn sub-stream reads, so memory
stays bounded whatever the weights. Without batch groups there is one sub-stream holding every group
(``ALL``), whose batches take turns in the order they were cut.

Shards of a sub-stream are shuffled globally per epoch, then shard ``i`` of the epoch order goes to
reader ``i mod (world_size * num_workers)`` (osum.data.plan). A training stream is infinite (epochs follow
each other, each with a new order), so every rank yields batches for as long as the trainer asks: no rank
runs out before another. Randomness per sample (task choice, prompt, SpecAugment) comes from an RNG keyed
by (seed, epoch, key), independent of which worker reads the sample.

Exact resume: every batch carries its worker's state after it (batches yielded, and per sub-stream the
reader position and the batcher's state as sample references). ``osum.data.resume.LoaderResume`` keeps
the state of the last trained batch of every worker in the checkpoint; a resumed stream rebuilds every
sub-stream from it, and rotates the worker roles so that the DataLoader's round robin continues with the
worker whose turn was next. With another world size or worker count each sub-stream restarts its saved
epoch without the shards that were finished (see ``osum.data.plan.resume_plan``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import torch
from torch.utils.data import IterableDataset, get_worker_info

from osum.data.batching import BatchLimits, collate
from osum.data.groups import draw_group, group_sets
from osum.data.plan import ALL, ResumePlan, as_sets, worker_streams
from osum.data.processing import Example, SampleProcessor
from osum.data.skips import SkipCounter
from osum.data.sources import ShardSet
from osum.data.substream import SubStream, SubStreamConfig

log = logging.getLogger("osum.data")


def rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class ShardStream(IterableDataset):
    def __init__(self, shards: list[str] | list[ShardSet], processor: SampleProcessor, limits: BatchLimits,
                 pad_id: int, seed: int = 0, shuffle: bool = True, infinite: bool = True,
                 resume: ResumePlan | None = None, temperature: float = 1.0,
                 group_weights: dict[str, float] | None = None):
        super().__init__()
        self.sets = as_sets(shards)
        self.pad_id, self.seed, self.infinite = pad_id, seed, infinite
        self.resume = resume or ResumePlan()
        self.group_weights = dict(group_weights) if group_weights else None  # batch group -> weight per batch
        if self.group_weights and not infinite:
            raise ValueError("batch group weights apply to the infinite training stream only")
        if self.group_weights:
            streams = {g: (group_sets(self.sets, processor, g), processor.for_group(g))
                       for g in sorted(self.group_weights)}
        else:
            streams = {ALL: (self.sets, processor)}
        self.streams = {name: SubStreamConfig(name, sets, proc, limits, seed, shuffle, infinite, temperature)
                        for name, (sets, proc) in streams.items()}
        self.rank, self.world = rank_and_world()  # captured in the main process, valid in every worker

    def stream_sets(self) -> dict[str, list[ShardSet]]:
        """Sub-stream name -> the shard sets it reads (what ``resume_plan`` needs)."""
        return {name: cfg.sets for name, cfg in self.streams.items()}

    def group_of(self, batch_index: int) -> str | None:
        """The batch group of this rank's ``batch_index``-th batch (``None`` without batch groups)."""
        return draw_group(self.seed, batch_index, self.group_weights) if self.group_weights else None

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        wid, n_workers = (info.id, info.num_workers) if info else (0, 1)
        exact = self.resume.exact
        role = (wid + (exact["next_role"] if exact else 0)) % n_workers
        consumer, n_consumers = self.rank * n_workers + role, self.world * n_workers
        n_shards = min(sum(len(s.shards) for s in cfg.sets) for cfg in self.streams.values())
        if n_shards < n_consumers and consumer == 0:
            log.warning("%d shard(s) for %d readers (%d ranks x %d workers): %s", n_shards, n_consumers,
                        self.world, n_workers, "shards repeat across readers" if self.infinite else "some readers idle")
        skips = SkipCounter()
        subs = {name: SubStream(cfg, consumer, n_consumers, skips, self.resume.restart_of(name))
                for name, cfg in self.streams.items()}
        taken = 0
        if exact and str(role) in exact["states"]:
            state = exact["states"][str(role)]
            for name, saved in worker_streams(state).items():
                if name not in subs:
                    raise RuntimeError(f"the checkpoint's data stream has sub-stream {name!r}, this run has "
                                       f"{sorted(subs)}: data.batch_groups changed, so the stream cannot resume "
                                       "exactly (resume with the same batch groups)")
                subs[name].restore(saved)
            taken = state["batches"]
        while True:
            name = self.group_of(taken * n_workers + role) or ALL  # round robin: this rank's batch index
            batch = subs[name].next_batch()
            if batch is None:  # a finite stream has ended
                if leftover := skips.take_unreported():  # no batch left to carry them
                    log.warning("after the last batch of reader %d: %s", consumer, leftover)
                return
            taken += 1
            yield self._finish(batch, skips, role, subs, name, taken)

    def _finish(self, batch: list[Example], skips: SkipCounter, role: int, subs: dict[str, SubStream], name: str,
                taken: int) -> dict:
        out = collate(batch, self.pad_id)
        out["skips"] = skips.take_unreported()
        out["epoch"] = subs[name].pos.epoch  # the stream epoch of the sub-stream that made it
        if self.infinite:
            out["loader_state"] = {"role": role, "state": {"batches": taken,
                                                           "streams": {n: s.state() for n, s in subs.items()}}}
        return out
