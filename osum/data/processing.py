"""One raw sample -> one model-ready example: choose a task, take its fields, lay out its turns, featurize
its clips (or, with ``features="model"``, keep the waveforms and the SpecAugment masks for the model).

The turns follow the task's output type (``osum.template.OUTPUT_TYPES``): a speech-input task gives the
user an instruction (when the type takes one) and the clip; a text-input task (``<TEXT2TEXT>``,
``<TEXT2TOKEN>``) gives the user a text field and has no audio at all. Output types with history lay out
the sample's earlier turns first (``history``: user audio members ``KEY.wav_i``, assistant text and
speech tokens), masked. The target is text, speech tokens (codes 0..4095 from ``speech_tokens``), or both.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field

from osum.data.clips import Clip, checked_audio, frames_of, make_clip
from osum.data.filters import Filters
from osum.data.mixture import TaskMixture
from osum.data.reader import RawSample
from osum.data.skips import BadSample
from osum.tasks import Task, TaskRegistry
from osum.template import Part, SequenceBuilder, Speech, Text, Turn

__all__ = ["Example", "Filters", "SampleProcessor"]


@dataclass
class Example:
    key: str
    shard: str
    task: str
    output_type: str
    input_ids: list[int]
    text_targets: list[int]
    speech_targets: list[int]
    clips: list[Clip] = field(default_factory=list)  # in placeholder order: history turns, then the current turn
    seconds: float = 0.0  # audio of every clip
    meta: dict = field(default_factory=dict)
    ref: tuple[int, str, int] = (0, "", 0)  # (stream epoch, shard, group index): how to find it again on resume
    group: str = ""  # batch group: batches never mix groups (the output type, or a task group of data.task_groups)
    cropped_from: float | None = None  # seconds of the current clip before it was cropped to filters.max_seconds
    speech_tokens: list[int] | None = None  # the target's speech codes (TTS, S2S)

    @property
    def length(self) -> int:
        return len(self.input_ids)

    @property
    def frames(self) -> int:
        """Mel frames of every clip together (0 for a text-only example)."""
        return sum(c.frames for c in self.clips)

    @property
    def longest_clip(self) -> int:
        return max((c.frames for c in self.clips), default=0)


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
        self.ctc_targets = ctc_targets  # also tokenize the transcript of samples whose task targets it
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

    # ------------------------------------------------------------------ fields
    def _task(self, raw: RawSample, rng: random.Random, present: set[str] | None) -> Task:
        mixture = self.mixture_of(raw.shard)
        try:
            task = mixture.choose(raw.meta, rng, present)
        except BadSample as e:  # without audio: say so when audio is what it lacks
            if raw.audio is None and e.reason == "no_servable_task" and present is not None \
                    and mixture.servable(raw.meta, present | {"audio"}):
                raise BadSample("missing_audio") from None
            raise
        if task.needs_audio and raw.audio is None:
            raise BadSample("missing_audio", task.tag)
        return task

    def _texts(self, task: Task, meta: dict, present: set[str] | None) -> tuple[str | None, str | None]:
        """(the user's text of a text-input task, the target text or None for a speech-only target)."""
        wants_text = "text" in self.builder.output_type(task.output_type).target
        if present is None:  # original shards carry the rendered target (a TTS sample's is the text to speak)
            target = str(meta["target"]).strip()
            if not target:
                raise BadSample("empty_target")
            if task.user_field == "transcript":
                return target, None
            return (self.registry.user_text(task, meta) if task.user_field else None), target
        missing = self.registry.missing_fields(task, meta, present)
        if missing:
            raise BadSample("missing_field", f"{task.tag} needs {missing}")
        unknown = self.registry.unknown_labels(meta)
        if unknown:
            raise BadSample("unknown_label", ", ".join(unknown))
        return self.registry.user_text(task, meta), self.registry.render(task, meta, present) if wants_text else None

    def _codes(self, value: object, where: str) -> list[int]:
        """Speech codes of a ``speech_tokens`` field, checked against the speech vocabulary."""
        n = self.builder.vocab.codes
        if not isinstance(value, list) or not value or not all(
                isinstance(c, int) and not isinstance(c, bool) and 0 <= c < n for c in value):
            raise BadSample("bad_speech_tokens", f"{where}: expected a non-empty list of ints 0..{n - 1}")
        return value

    def _history(self, raw: RawSample, filters: Filters) -> tuple[list[Turn], list[tuple[str, object]]]:
        """Earlier turns (masked) and their clips' audio, from the sample's ``history``."""
        history = raw.meta.get("history") or []
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise BadSample("bad_history", "history must be a list of objects")
        turns, audios = [], []
        for i, h in enumerate(history, 1):
            user: list[Part] = []
            if h.get("audio"):
                member = str(h["audio"])
                if member not in raw.members:
                    raise BadSample("missing_history_audio", f"turn {i}: no member {raw.key}.{member}")
                audio, _ = checked_audio(raw.members[member], filters, crop=False, where=f"history turn {i}")
                audios.append((f"{raw.key}.wav_{i}", audio))  # the encoder-cache key of history clip i
                user.append(Speech(self.builder.speech_length(frames_of(audio))))
            elif h.get("user_text"):
                user.append(Text(str(h["user_text"])))
            codes = self._codes(h["speech_tokens"], f"history turn {i}") if h.get("speech_tokens") else None
            turns.append(Turn(user, text=str(h.get("text") or ""), speech=codes))
        return turns, audios

    # ------------------------------------------------------------------ the example
    def __call__(self, raw: RawSample, rng: random.Random) -> Example:
        meta = raw.meta
        present = None if "target" in meta else self.registry.present_fields(meta, raw.audio is not None)
        task = self._task(raw, rng, present)
        out_type = self.builder.output_type(task.output_type)
        filters = self.filters.for_group(self.group_of(task))
        user_text, target = self._texts(task, meta, present)
        codes = None
        if out_type.speech_out:
            if meta.get("speech_tokens") is None:
                raise BadSample("missing_field", f"{task.tag} needs ['speech_tokens']")
            codes = self._codes(meta["speech_tokens"], "speech_tokens")
        turns, audios = self._history(raw, filters) if out_type.history else ([], [])
        user: list[Part] = []
        cropped_from = None
        if task.needs_audio:
            crop = filters.crop and task.croppable
            declared = meta.get("duration")
            if isinstance(declared, int | float) and declared > filters.max_seconds and not crop:
                raise BadSample("too_long", f"{declared:.1f} s > {filters.max_seconds} s")  # before decoding
            audio, cropped_from = checked_audio(raw.audio, filters, crop)
            instruction = self.registry.prompt(task, rng) if "text" in out_type.user else None
            user = [Text(instruction)] if instruction else []
            user.append(Speech(self.builder.speech_length(frames_of(audio))))
            audios.append((raw.key, audio))
        else:
            user = [Text(user_text or "")]
        try:
            think = self.registry.think(task, meta) if present is not None else None
        except KeyError as e:
            raise BadSample("missing_field", str(e.args[0])) from None
        turns.append(Turn(user, think=think, text=target, speech=codes))
        try:
            seq = self.builder.build(task.output_type, turns)
        except ValueError as e:  # a sample this output type cannot lay out
            raise BadSample("bad_layout", str(e)[:120]) from None
        if seq.n_supervised > filters.max_target_tokens:
            raise BadSample("target_too_long", f"{seq.n_supervised} tokens")
        if len(seq) > filters.max_sequence:
            raise BadSample("sequence_too_long", f"{len(seq)} tokens")
        clips = [make_clip(key, audio, self.features, self.n_mels, self.spec_aug if key == raw.key else None, rng)
                 for key, audio in audios]
        # CTC only where the transcript is the target: on X-only tasks it would pull the speech embeddings towards
        # the words while the target asks for the voice (issue 11)
        if clips and self.ctc_targets and task.has_transcript and meta.get("txt") and cropped_from is None:
            clips[-1].ctc_ids = self.builder.encode(self.registry.transcript(meta))
        return Example(key=raw.key, shard=raw.shard, task=task.tag, output_type=task.output_type,
                       input_ids=seq.input_ids, text_targets=seq.text_targets, speech_targets=seq.speech_targets,
                       clips=clips, seconds=sum(c.seconds for c in clips), meta=meta, group=self.group_of(task),
                       cropped_from=cropped_from, speech_tokens=codes)
