"""One raw sample -> one model-ready example: decode, filter, choose a task, render, lay out, featurize
(or, with ``features="model"``, keep the waveform and the SpecAugment masks for the model's device)."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field

import torch

from osum.data.audio import TARGET_SR, decode_audio
from osum.data.features import HOP, draw_spec_masks, log_mel, spec_augment
from osum.data.mixture import TaskMixture
from osum.data.reader import RawSample
from osum.data.skips import BadSample
from osum.tasks import Task, TaskRegistry
from osum.template import SequenceBuilder


@dataclass
class Filters:
    min_seconds: float = 0.1
    max_seconds: float = 30.0
    max_target_tokens: int = 400
    max_sequence: int = 2000
    crop: bool = True  # audio over max_seconds is cropped, not skipped, for tasks whose target survives it


@dataclass
class Example:
    key: str
    shard: str
    task: str
    output_type: str
    input_ids: list[int]
    targets: list[int]
    mel: torch.Tensor | None
    seconds: float
    meta: dict = field(default_factory=dict)
    ref: tuple[int, str, int] = (0, "", 0)  # (stream epoch, shard, group index): how to find it again on resume
    group: str = ""  # batch group: batches never mix groups (the output type, or a task group of data.task_groups)
    cropped_from: float | None = None  # seconds of the audio before it was cropped to filters.max_seconds
    ctc_ids: list[int] | None = None  # the transcript's token ids, for the auxiliary CTC loss (model.ctc_weight)
    audio: torch.Tensor | None = None  # 16 kHz waveform, when the model computes the features (data.features: model)
    spec_masks: list[tuple[int, int, int]] | None = None  # SpecAugment masks for the model to apply, drawn here

    @property
    def length(self) -> int:
        return len(self.input_ids)

    @property
    def frames(self) -> int:
        if self.mel is not None:
            return int(self.mel.shape[0])
        return 0 if self.audio is None else int(self.audio.shape[0]) // HOP


class SampleProcessor:
    """Turns a ``RawSample`` into an ``Example``; raises ``BadSample`` with a reason when it cannot."""

    def __init__(self, builder: SequenceBuilder, registry: TaskRegistry, mixture: TaskMixture,
                 filters: Filters, n_mels: int = 80, spec_aug: dict | None = None,
                 shard_mixtures: dict[str, TaskMixture] | None = None, task_groups: dict[str, str] | None = None,
                 ctc_targets: bool = False, features: str = "loader"):
        if features not in ("loader", "model"):
            raise ValueError(f"data.features must be 'loader' or 'model', got {features!r}")
        self.features = features  # where the log-mel is computed: here, or on the model's device
        self.builder, self.registry, self.mixture = builder, registry, mixture
        self.ctc_targets = ctc_targets  # also tokenize each sample's transcript, whatever task it serves
        self.filters, self.n_mels, self.spec_aug = filters, n_mels, spec_aug
        self.shard_mixtures = shard_mixtures or {}  # shard -> its set's own task mixture
        self.task_groups = task_groups or {}  # task tag -> batch group; other tasks group by output type

    def group_of(self, task: Task) -> str:
        """The batch group of ``task``: its task group of data.task_groups, else its output type."""
        return self.task_groups.get(task.tag, task.output_type)

    def mixture_of(self, shard: str) -> TaskMixture:
        return self.shard_mixtures.get(shard, self.mixture)

    def for_group(self, group: str) -> SampleProcessor:
        """This processor for one batch group's sub-stream: every mixture restricted to the group's tasks."""
        out = copy.copy(self)
        keep = lambda task: self.group_of(task) == group  # noqa: E731
        out.mixture = self.mixture.restricted(keep)
        restricted = {id(m): m.restricted(keep) for m in self.shard_mixtures.values()}
        out.shard_mixtures = {shard: restricted[id(m)] for shard, m in self.shard_mixtures.items()}
        return out

    def __call__(self, raw: RawSample, rng: random.Random) -> Example:
        meta = raw.meta
        if raw.audio is None:
            raise BadSample("missing_audio")
        present = None if "target" in meta else self.registry.present_fields(meta)  # once per sample
        task = self.mixture_of(raw.shard).choose(meta, rng, present)
        if "target" in meta:  # original shards carry the rendered target
            target = str(meta["target"]).strip()
            if not target:
                raise BadSample("empty_target")
        else:
            missing = self.registry.missing_fields(task, meta, present)
            if missing:
                raise BadSample("missing_field", f"{task.tag} needs {missing}")
            unknown = self.registry.unknown_labels(meta)
            if unknown:
                raise BadSample("unknown_label", ", ".join(unknown))
            target = self.registry.render(task, meta, present)
        crop = self.filters.crop and task.croppable
        declared = meta.get("duration")
        if isinstance(declared, int | float) and declared > self.filters.max_seconds and not crop:
            raise BadSample("too_long", f"{declared:.1f} s > {self.filters.max_seconds} s")  # before decoding
        audio = decode_audio(raw.audio)
        seconds, cropped_from = audio.size / TARGET_SR, None
        if seconds > self.filters.max_seconds:
            if not crop:
                raise BadSample("too_long", f"{seconds:.1f} s > {self.filters.max_seconds} s")
            audio, cropped_from = audio[: int(self.filters.max_seconds * TARGET_SR)], seconds
            seconds = audio.size / TARGET_SR
        if seconds < self.filters.min_seconds:
            raise BadSample("too_short", f"{seconds:.2f} s")
        n_speech = self.builder.speech_length(audio.size // HOP)
        seq = self.builder.build(task.output_type, self.registry.prompt(task, rng), n_speech, target)
        n_target = seq.n_supervised
        if n_target > self.filters.max_target_tokens:
            raise BadSample("target_too_long", f"{n_target} tokens")
        if len(seq) > self.filters.max_sequence:
            raise BadSample("sequence_too_long", f"{len(seq)} tokens")
        mel = wave = masks = None
        if self.features == "model":
            wave = torch.from_numpy(audio)
            masks = draw_spec_masks(audio.size // HOP, self.n_mels, rng, **self.spec_aug) if self.spec_aug else None
        else:
            mel = log_mel(audio, self.n_mels)
            if self.spec_aug:
                mel = spec_augment(mel, rng, **self.spec_aug)
        ctc_ids = None
        if self.ctc_targets and meta.get("txt") and cropped_from is None:
            ctc_ids = self.builder.encode(self.registry.transcript(meta))
        return Example(key=raw.key, shard=raw.shard, task=task.tag, output_type=task.output_type,
                       input_ids=seq.input_ids, targets=seq.targets, mel=mel, seconds=seconds, meta=meta,
                       group=self.group_of(task), cropped_from=cropped_from,
                       ctc_ids=ctc_ids, audio=wave, spec_masks=masks)
