"""The LightningDataModule: shard sets in, dynamic batches of model-ready tensors out."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from osum.data.batching import BatchLimits, index_frame_bounds
from osum.data.filters import Filters
from osum.data.mixture import TaskMixture, group_of_task
from osum.data.mixture_report import describe_mixture
from osum.data.plan import resume_plan
from osum.data.processing import SampleProcessor
from osum.data.shardlist import resolve_shards
from osum.data.sources import parse_sets
from osum.data.stream import ShardStream, rank_and_world
from osum.text import build_text_side

log = logging.getLogger("osum.data")


class SpeechDataModule(L.LightningDataModule):
    def __init__(self, train: Any, valid: Any, tokenizer: str, tasks: Mapping[str, float],
                 template: Mapping[str, Any], rendering: Mapping[str, Any], filters: Mapping[str, Any],
                 batch: Mapping[str, Any], spec_augment: Mapping[str, Any] | None = None, n_mels: int = 80,
                 num_workers: int = 2, seed: int = 0, valid_tasks: Mapping[str, float] | None = None,
                 temperature: float = 1.0, task_groups: Mapping[str, Any] | None = None,
                 batch_groups: Mapping[str, float] | None = None, ctc_targets: bool = False,
                 features: str = "loader"):
        super().__init__()
        self.train_spec, self.valid_spec = train, valid
        self.tokenizer, self.builder, self.registry = build_text_side(tokenizer, template, rendering)
        self.mixture = TaskMixture(self.registry, tasks)
        self.valid_mixture = TaskMixture(self.registry, valid_tasks) if valid_tasks else self.mixture
        self.filters = Filters.from_config(filters)
        self.limits = BatchLimits(**dict(batch))
        self.spec_augment = dict(spec_augment) if spec_augment else None
        self.n_mels, self.num_workers, self.seed = n_mels, num_workers, seed
        self.temperature, self.ctc_targets, self.features = temperature, ctc_targets, features
        self.task_groups = group_of_task(self.registry, task_groups or {})
        self.batch_groups = dict(batch_groups) if batch_groups else None
        self.saved_stream: list[dict] | None = None
        self.train_sets = parse_sets(train) if train else []
        self.set_mixtures = {s.name: TaskMixture(self.registry, s.tasks) for s in self.train_sets if s.tasks}
        if self.batch_groups:
            self._check_batch_groups()
        known = set(self.builder.output_types) | set(self.task_groups.values())
        if unknown := sorted(set(self.filters.groups) - known):
            raise ValueError(f"data.filters.groups: {unknown} are neither output types nor groups of "
                             f"data.task_groups (known: {sorted(known)})")
        self.valid_shards = resolve_shards(valid) if valid else []
        if self.train_sets:
            log.info("%s", self.describe_mixture())
            self._bucket_bounds_from_index()

    def _check_batch_groups(self) -> None:
        """Every batch group names a group of the mixtures' tasks, and every task's group is drawn."""
        assert self.batch_groups is not None
        bad = [f"{g}={w}" for g, w in self.batch_groups.items() if not isinstance(w, int | float) or w <= 0]
        if bad:
            raise ValueError(f"data.batch_groups: weights must be > 0, got {bad}")
        tasks = {t.tag: t for m in (self.mixture, *self.set_mixtures.values()) for t in m.tasks}
        group = {tag: self.task_groups.get(tag, t.output_type) for tag, t in tasks.items()}
        known = set(group.values()) | set(self.task_groups.values())
        unknown = sorted(set(self.batch_groups) - known)
        if unknown:
            raise ValueError(f"data.batch_groups: {unknown} are neither output types of the tasks of data.tasks "
                             f"(or of a set's tasks) nor groups of data.task_groups (known: {sorted(known)})")
        undrawn = sorted(tag for tag, g in group.items() if g not in self.batch_groups)
        if undrawn:
            raise ValueError(f"data.batch_groups: tasks {undrawn} are of groups that data.batch_groups does not "
                             f"list ({sorted({group[t] for t in undrawn})}), so they would never be trained")

    def _bucket_bounds_from_index(self) -> None:
        """Fixed frame-bucket bounds from the training shards' index (``data.batch.buckets: index``)."""
        if self.limits.buckets != "index" or self.limits.frame_groups < 2:
            return
        bounds = index_frame_bounds((shard for s in self.train_sets for shard in s.shards), self.limits.frame_groups)
        if bounds is None:
            log.info("length buckets: no index.json for every training shard; buckets split each sort buffer")
            return
        self.limits.frame_bounds = bounds
        log.info("length buckets from the index: bounds %s mel frames", ", ".join(map(str, bounds)) or "none")

    def describe_mixture(self) -> str:
        """Expected share of each shard set, batch group and task (see osum.data.mixture_report)."""
        return describe_mixture(self.train_sets, self.processor(True), self.temperature, self.batch_groups)

    def processor(self, train: bool) -> SampleProcessor:
        shard_mixtures = {shard: self.set_mixtures[s.name] for s in self.train_sets if s.name in self.set_mixtures
                          for shard in s.shards} if train else {}
        return SampleProcessor(self.builder, self.registry, self.mixture if train else self.valid_mixture,
                               self.filters, self.n_mels, self.spec_augment if train else None, shard_mixtures,
                               self.task_groups, self.ctc_targets, self.features)

    def resume_from(self, saved: list[dict]) -> None:
        """The data-stream state of a checkpoint (see osum.data.resume); used by the next train loader."""
        self.saved_stream = saved

    def _loader(self, shards: list, train: bool) -> DataLoader:
        stream = ShardStream(shards, self.processor(train), self.limits, pad_id=self.tokenizer.pad_token_id,
                             seed=self.seed, shuffle=train, infinite=train, temperature=self.temperature,
                             group_weights=self.batch_groups if train else None)
        if train and self.saved_stream:
            rank, world = rank_and_world()
            stream.resume = resume_plan(self.saved_stream, rank, world, max(self.num_workers, 1),
                                        stream.stream_sets(), self.seed, True, self.temperature)
            (log.info if stream.resume.exact else log.warning)("%s", stream.resume.note)
        return DataLoader(stream, batch_size=None, num_workers=self.num_workers,
                          persistent_workers=train and self.num_workers > 0,
                          prefetch_factor=4 if self.num_workers > 0 else None)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_sets, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.valid_shards, train=False)
