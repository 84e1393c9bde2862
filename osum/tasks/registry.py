"""The task registry: a task tag string -> prompt pool, target renderer, hypothesis parser, metrics.

A task is named by its tag string, e.g. ``"<TRANSCRIBE> <EMOTION>"`` (reference section 2.1). Each
tag word maps onto one field of a sample (``FIELD_OF_TAG``), so a task is fully described by its tag
string: the target is rendered from the sample's structured fields in the listed order ("ASR+X":
transcript first, then one tag per paralinguistic field), and a hypothesis is parsed back into the same
fields for scoring, each field by its metric (``METRIC_OF_FIELD``). Adding a task is one entry in
``DEFAULT_TASKS`` (which also says whether `osum.decode` scores it by default) plus a prompt pool;
adding a new kind of field is one entry in ``FIELD_OF_TAG`` and one in ``METRIC_OF_FIELD`` (and, for a
label field, a label set).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import yaml

from osum.tasks.labels import MINI_LABEL_SETS, canonical, tag

# Tag word -> the sample field it asks for.
FIELD_OF_TAG: dict[str, str] = {
    "TRANSCRIBE": "transcript",
    "ALIGN": "words",
    "CAPTION": "events",
    "EMOTION": "emotion",
    "STYLE": "style",
    "GENDER": "gender",
    "AGE": "age",
    "S2TCHAT": "answer",
    "TEXT2TEXT": "answer",
    "TEXT2TOKEN": "speech_tokens",
    "STREAMING": "transcript",  # a streaming TTS reply interleaves the text it speaks with its codes (6:18)
    "CHAT": "answer",
    "THINK": "think",
    "HISTORY": "history",
}
# Tasks whose user input is text, not audio: tag string -> (output type, the field holding the user's text).
TEXT_INPUT_TASKS: dict[str, tuple[str, str]] = {
    "<TEXT2TEXT>": ("text2text", "question"),
    "<TEXT2TOKEN>": ("text2token", "transcript"),
    "<TEXT2TOKEN> <STREAMING>": ("text2token_streaming", "transcript"),
}
# Dialogue tasks (the dialogue stage, reference 5.2-5.4): speech in, a reply out, by output type. ``<THINK>``
# puts the think section first (its form is ``rendering.think``); ``<HISTORY>`` lays out the earlier turns.
DIALOGUE_TASKS: dict[str, str] = {
    "<CHAT>": "s2t_chat",
    "<CHAT> <THINK>": "s2t_chat_think",
    "<CHAT> <HISTORY>": "s2t_chat_history",
    "<CHAT> <TEXT2TOKEN>": "speech2text_token",
    "<CHAT> <TEXT2TOKEN> <THINK>": "speech2text_token_think",
    "<CHAT> <TEXT2TOKEN> <HISTORY>": "speech2text_token_history",
}
WITHOUT_THINK = {"s2t_chat_think": "s2t_chat", "speech2text_token_think": "speech2text_token"}
SINGLE_TURN_DIALOGUE = frozenset({"s2t_chat", *WITHOUT_THINK, "speech2text_token"})  # output types without history
THINK_FORMS = ("tag", "language", "none")
LABEL_FIELDS = ("events", "emotion", "style", "gender", "age")
UTTERANCE_LABELS = ("emotion", "style", "gender", "age")  # true of every part of an utterance
SAMPLE_KEY_OF_FIELD = {"transcript": "txt", "words": "words", "answer": "answer", "question": "question",
                       "speech_tokens": "speech_tokens", "audio": "audio", "think": "think", "history": "history",
                       **{f: f"labels.{f}" for f in LABEL_FIELDS}}  # how a missing field is named in messages
# Field -> (the name of its metric in a report, the metric's kind: a key of osum.metrics.report.METRIC_OF_KIND).
METRIC_OF_FIELD: dict[str, tuple[str, str]] = {"transcript": ("wer", "wer"), "words": ("aas", "alignment_shift"),
                                               "answer": ("answer_exact", "exact"),
                                               **{f: (f, "tag_accuracy") for f in LABEL_FIELDS}}
FIELD_OF_SAMPLE_KEY = {key: f for f, key in SAMPLE_KEY_OF_FIELD.items()}


def sample_keys(sample: Mapping) -> list[str]:
    """The task-relevant keys a sample holds non-empty, named as in ``SAMPLE_KEY_OF_FIELD`` (``txt``,
    ``labels.gender`` ...): what a task can be served from, and what the shard index counts."""
    keys = []
    if str(sample.get("txt") or "").split():
        keys.append("txt")
    if sample.get("words"):
        keys.append("words")
    if str(sample.get("answer") or "").strip():
        keys.append("answer")
    if str(sample.get("question") or "").strip():
        keys.append("question")
    if isinstance(sample.get("speech_tokens"), list) and sample["speech_tokens"]:
        keys.append("speech_tokens")
    if str(sample.get("think") or "").strip():
        keys.append("think")
    if isinstance(sample.get("history"), list) and sample["history"]:
        keys.append("history")
    labels = sample.get("labels") or {}
    for kind in LABEL_FIELDS:
        raw = labels.get(kind) if isinstance(labels, Mapping) else None
        if (raw if isinstance(raw, list) else raw not in (None, "")):
            keys.append(f"labels.{kind}")
    return keys

_TAG_WORD_RE = re.compile(r"<\s*([A-Za-z0-9_]+)\s*>")
_TIMED_WORD_RE = re.compile(r"(\S+?)<\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*>")
_TRAILING_TAG_RE = re.compile(r"<\s*([^<>,\d][^<>,]*)\s*>\s*$")
_THINK_WORDS_RE = re.compile(r"user's words:\s*(.*?),\s*age:")
_THINK_TAG_FIELDS = {"age": "age", "gender": "gender", "emotion": "emotion", "events": "sound event",
                     "reply_emotion": "reply emotion"}


class UnknownTaskError(KeyError):
    """A task tag string that the registry does not know."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


def normalize_tag_string(tags: str) -> str:
    """``"<TRANSCRIBE><GENDER>"`` or ``" <transcribe>  <gender>"`` -> ``"<TRANSCRIBE> <GENDER>"``."""
    words = _TAG_WORD_RE.findall(tags)
    if not words or _TAG_WORD_RE.sub("", tags).strip():
        raise UnknownTaskError(f"malformed task tag string {tags!r}: expected tags like '<TRANSCRIBE> <GENDER>'")
    return " ".join(f"<{w.upper()}>" for w in words)


class TaskMetric(NamedTuple):
    """One metric of a task: its name in the report, its kind, and the field it compares."""

    name: str
    kind: str
    field: str


@dataclass(frozen=True)
class Task:
    """One task: its tag string, the fields its target reads in order, its output type, and where the
    user's input comes from (``user_field``: a text field; ``None``: the audio, with a prompt)."""

    name: str
    tag: str
    output_type: str = "text"
    fields: tuple[str, ...] = ()
    decode_by_default: bool = False
    user_field: str | None = None

    @classmethod
    def from_tag(cls, name: str, tags: str, output_type: str = "text", decode_by_default: bool = False) -> Task:
        words = [w.strip("<>") for w in normalize_tag_string(tags).split()]
        unknown = [w for w in words if w not in FIELD_OF_TAG]
        if unknown:
            raise UnknownTaskError(f"task {name!r}: unknown tag word(s) {unknown}; known: {sorted(FIELD_OF_TAG)}")
        tag_string = normalize_tag_string(tags)
        output_type, user_field = TEXT_INPUT_TASKS.get(tag_string, (DIALOGUE_TASKS.get(tag_string, output_type), None))
        return cls(name=name, tag=tag_string, output_type=output_type,
                   fields=tuple(FIELD_OF_TAG[w] for w in words), user_field=user_field,
                   decode_by_default=decode_by_default)

    @property
    def needs_audio(self) -> bool:
        return self.user_field is None

    @property
    def speech_target(self) -> bool:
        """True when the target includes speech tokens (TTS, S2S)."""
        return "speech_tokens" in self.fields

    @property
    def thinks(self) -> bool:
        return "think" in self.fields

    def without_think(self) -> Task:
        """The same task with no think section (``rendering.think: none``): the output type's plain variant."""
        if not self.thinks:
            return self
        return Task(name=self.name, tag=self.tag, output_type=WITHOUT_THINK.get(self.output_type, self.output_type),
                    fields=tuple(f for f in self.fields if f != "think"), decode_by_default=self.decode_by_default,
                    user_field=self.user_field)

    @property
    def has_transcript(self) -> bool:
        return "transcript" in self.fields

    @property
    def label_fields(self) -> tuple[str, ...]:
        return tuple(f for f in self.fields if f in LABEL_FIELDS)

    @property
    def metrics(self) -> tuple[TaskMetric, ...]:
        """How a hypothesis of this task is scored: one metric per field, in field order."""
        return tuple(TaskMetric(*METRIC_OF_FIELD[f], field=f) for f in self.fields if f in METRIC_OF_FIELD)

    @property
    def croppable(self) -> bool:
        """True when the target holds for any stretch of the audio: utterance-level labels of the voice
        and manner only (no transcript, words, answer or events, which a crop could cut off)."""
        return bool(self.fields) and all(f in UTTERANCE_LABELS for f in self.fields)


# Reference section 2.1; X-only variants and combinations included. ``decode_by_default``: the tasks
# `python -m osum.decode` scores when it is not given --tasks (one per kind of field, and each label alone).
DEFAULT_TASKS: list[Task] = [
    Task.from_tag("ASR", "<TRANSCRIBE>", decode_by_default=True),
    Task.from_tag("SRWT", "<TRANSCRIBE> <ALIGN>", decode_by_default=True),
    Task.from_tag("VED", "<TRANSCRIBE> <CAPTION>", decode_by_default=True),
    Task.from_tag("SER", "<TRANSCRIBE> <EMOTION>", decode_by_default=True),
    Task.from_tag("SSR", "<TRANSCRIBE> <STYLE>", decode_by_default=True),
    Task.from_tag("SGC", "<TRANSCRIBE> <GENDER>", decode_by_default=True),
    Task.from_tag("SAP", "<TRANSCRIBE> <AGE>", decode_by_default=True),
    Task.from_tag("STTC", "<TRANSCRIBE> <S2TCHAT>", decode_by_default=True),
    Task.from_tag("SAP+SGC", "<TRANSCRIBE> <AGE> <GENDER>"),
    Task.from_tag("SSR+SAP+SGC", "<TRANSCRIBE> <STYLE> <AGE> <GENDER>"),
    Task.from_tag("SER+SAP+SGC", "<TRANSCRIBE> <EMOTION> <AGE> <GENDER>"),
    Task.from_tag("VED-only", "<CAPTION>", decode_by_default=True),
    Task.from_tag("SER-only", "<EMOTION>", decode_by_default=True),
    Task.from_tag("SSR-only", "<STYLE>", decode_by_default=True),
    Task.from_tag("SGC-only", "<GENDER>", decode_by_default=True),
    Task.from_tag("SAP-only", "<AGE>", decode_by_default=True),
    Task.from_tag("SAP+SGC-only", "<AGE> <GENDER>"),
    Task.from_tag("SSR+SAP+SGC-only", "<STYLE> <AGE> <GENDER>"),
    Task.from_tag("STTC-only", "<S2TCHAT>"),
    Task.from_tag("T2T", "<TEXT2TEXT>"),  # text in, text out (EChat keeps the LLM's text ability with it)
    Task.from_tag("TTS", "<TEXT2TOKEN>"),  # text in, speech tokens out
    Task.from_tag("TTS-streaming", "<TEXT2TOKEN> <STREAMING>"),  # text in, 6 text : 18 speech tokens out
    # the dialogue stage (osum.stages.dialogue): speech in, [think], a reply as text (S2T) or text + speech (S2S)
    Task.from_tag("S2T", "<CHAT>"),
    Task.from_tag("S2T-think", "<CHAT> <THINK>"),
    Task.from_tag("S2T-history", "<CHAT> <HISTORY>"),
    Task.from_tag("S2S", "<CHAT> <TEXT2TOKEN>"),
    Task.from_tag("S2S-think", "<CHAT> <TEXT2TOKEN> <THINK>"),
    Task.from_tag("S2S-history", "<CHAT> <TEXT2TOKEN> <HISTORY>"),
]


@dataclass
class Rendering:
    """Settings shared by every task's renderer and parser."""

    answer_separator: str = "<开始回答>"
    time_decimals: int = 1
    lowercase: bool = True
    label_sets: dict[str, list[str]] = field(default_factory=lambda: dict(MINI_LABEL_SETS))
    # The think section of <THINK> tasks: "tag" (rendered from txt, labels and reply_emotion, reference 5.3),
    # "language" (the sample's own ``think`` text), or "none" (think tasks train and answer without one).
    think: str = "tag"
    unknown_tag: str = "<&&>"  # a label the sample lacks, in a tag think (template.unknown_tag)
    no_event: str = "NONE"  # the sound event of a tag think whose sample has ``labels.events: []``


class TaskRegistry:
    """All known tasks, their prompt pools, and the rendering and parsing rules."""

    def __init__(self, tasks: list[Task], prompts: Mapping[str, list[str]], rendering: Rendering):
        self.tasks = {t.tag: t for t in tasks}
        self.prompts = {normalize_tag_string(k): list(v) for k, v in prompts.items()}
        self.rendering = rendering
        missing = [t.tag for t in tasks if t.output_type == "text" and not self.prompts.get(t.tag)]
        if missing:
            raise ValueError(f"no prompts for task(s) {missing}; add them to the prompt pool")

    @classmethod
    def from_config(cls, prompt_file: str | None = None, tasks: list[Task] | None = None,
                    **rendering: object) -> TaskRegistry:
        path = Path(prompt_file) if prompt_file else Path(__file__).parent / "prompts" / "en.yaml"
        with open(path, encoding="utf-8") as f:
            prompts = yaml.safe_load(f)
        label_sets = rendering.pop("label_sets", None)
        render = Rendering(**rendering)  # type: ignore[arg-type]
        if render.think not in THINK_FORMS:
            raise ValueError(f"rendering.think must be one of {list(THINK_FORMS)}, got {render.think!r}")
        tasks = list(tasks or DEFAULT_TASKS)
        if render.think == "none":
            tasks = [t.without_think() for t in tasks]
        if label_sets:
            render.label_sets = {k: [canonical(k, v) for v in vs] for k, vs in dict(label_sets).items()}
        return cls(tasks, prompts, render)

    def get(self, tags: str) -> Task:
        key = normalize_tag_string(tags)
        if key not in self.tasks:
            raise UnknownTaskError(f"unknown task {tags!r}; known tasks: {sorted(self.tasks)}")
        return self.tasks[key]

    def decode_tasks(self) -> list[str]:
        """The tag strings `osum.decode` scores by default, in registry order."""
        return [t.tag for t in self.tasks.values() if t.decode_by_default]

    def prompt(self, task: Task, rng: random.Random) -> str | None:
        """One instruction drawn from the task's pool (``None`` for ``<no_prompt>``)."""
        choice = rng.choice(self.prompts[task.tag])
        return None if choice == "<no_prompt>" else choice

    # ----------------------------------------------------------------- fields of a sample
    def transcript(self, sample: Mapping) -> str:
        text = " ".join(str(sample.get("txt") or "").split())
        return text.lower() if self.rendering.lowercase else text

    @staticmethod
    def labels_of(sample: Mapping, kind: str) -> list[str]:
        """The sample's labels of ``kind``, canonical (a list for events, one or none for the others)."""
        labels = sample.get("labels")
        raw = labels.get(kind) if isinstance(labels, Mapping) else None
        values = raw if isinstance(raw, list) else ([] if raw in (None, "") else [raw])
        return [canonical(kind, str(v)) for v in values]

    def present_fields(self, sample: Mapping, has_audio: bool = True) -> set[str]:
        """The task fields (transcript, words, answer, label kinds ..., and ``audio``) ``sample`` holds."""
        return self.fields_of_keys(sample_keys(sample) + (["audio"] if has_audio else []))

    @staticmethod
    def fields_of_keys(keys: list[str] | frozenset[str]) -> set[str]:
        """Sample keys (see ``sample_keys``) -> the task fields they provide."""
        return {FIELD_OF_SAMPLE_KEY[k] for k in keys if k in FIELD_OF_SAMPLE_KEY}

    def missing_fields(self, task: Task, sample: Mapping, present: set[str] | None = None) -> list[str]:
        """The fields ``task`` needs that ``sample`` lacks or holds empty (named as in the sample)."""
        present = self.present_fields(sample) if present is None else present
        return [SAMPLE_KEY_OF_FIELD[f] for f in self._needed_fields(task) if f not in present]

    def _needed_fields(self, task: Task) -> tuple[str, ...]:
        """The fields a task reads: a tag think reads the transcript (labels it lacks become the unknown tag),
        a language think the sample's ``think``; history is optional (a first turn has none)."""
        think = ("transcript",) if self.rendering.think == "tag" else ("think",)
        fields = [g for f in task.fields if f != "history" for g in (think if f == "think" else (f,))]
        return tuple(dict.fromkeys(fields + ([task.user_field] if task.user_field else [])))

    def unknown_labels(self, sample: Mapping) -> list[str]:
        """``kind=value`` for every label of the sample outside the configured label sets."""
        bad = []
        for kind, allowed in self.rendering.label_sets.items():
            bad += [f"{kind}={v}" for v in self.labels_of(sample, kind) if v not in allowed]
        return bad

    def can_serve(self, task: Task, sample: Mapping, present: set[str] | None = None) -> bool:
        """``task`` has every field it needs in ``sample`` (and audio, unless its input is text)."""
        present = self.present_fields(sample) if present is None else present
        if "history" in present and task.output_type in SINGLE_TURN_DIALOGUE:
            return False  # a later turn's reply depends on the earlier turns: only a <HISTORY> task lays them out
        return not self.missing_fields(task, sample, present) and (not task.needs_audio or "audio" in present)

    def user_text(self, task: Task, sample: Mapping) -> str | None:
        """The user's input text of a text-input task (normalised like targets), else ``None``."""
        if task.user_field == "transcript":
            return self.transcript(sample)
        if task.user_field:
            text = " ".join(str(sample.get(task.user_field) or "").split())
            return text.lower() if self.rendering.lowercase else text
        return None

    # ----------------------------------------------------------------- rendering
    def render(self, task: Task, sample: Mapping, present: set[str] | None = None) -> str:
        """The target text of ``task`` for ``sample`` (empty for a speech-only target); ``KeyError`` if a
        field it reads is missing."""
        present = self.present_fields(sample) if present is None else present
        missing = [SAMPLE_KEY_OF_FIELD[f] for f in task.fields
                   if f not in ("speech_tokens", "think", "history") and f not in present]
        if missing:
            raise KeyError(f"task {task.tag} needs {missing}")
        body = ""
        if "words" in task.fields:
            d = self.rendering.time_decimals
            words = [(w.lower() if self.rendering.lowercase else w, s, e) for w, s, e in sample["words"]]
            body = " ".join(f"{w}<{s:.{d}f},{e:.{d}f}>" for w, s, e in words)
        elif task.has_transcript:
            body = self.transcript(sample)
        if "answer" in task.fields:
            answer = " ".join(str(sample["answer"]).split())
            answer = answer.lower() if self.rendering.lowercase else answer
            body = f"{body}{self.rendering.answer_separator}{answer}" if task.has_transcript else answer
        tags = "".join(tag(v) for f in task.label_fields for v in self.labels_of(sample, f))
        return body + tags

    def think(self, task: Task, sample: Mapping) -> str | None:
        """The think section of ``task`` for ``sample`` (``None`` when the task has none), in the configured form.

        Tag form (reference 5.3, English rendering): ``user's words: {txt}, age: <ADULT>, gender: <MALE>,
        emotion: <SAD>, sound event: <COUGH>, reply emotion: <COMFORTING>``; a label the sample lacks is the
        unknown tag (not trained), a sample whose ``labels.events`` is ``[]`` has the no-event tag."""
        if not task.thinks:
            return None
        if self.rendering.think == "language":
            text = " ".join(str(sample.get("think") or "").split())
            if not text:
                raise KeyError(f"task {task.tag} needs ['think'] (rendering.think=language)")
            return text.lower() if self.rendering.lowercase else text
        labels = sample.get("labels") if isinstance(sample.get("labels"), Mapping) else {}

        def one(kind: str) -> str:
            values = self.labels_of(sample, kind)
            if values:
                return tag(values[0])
            if kind == "events" and isinstance(labels.get("events"), list):
                return tag(self.rendering.no_event)
            return self.rendering.unknown_tag

        reply = str(sample.get("reply_emotion") or "").strip()
        return (f"user's words: {self.transcript(sample)}, age: {one('age')}, gender: {one('gender')}, "
                f"emotion: {one('emotion')}, sound event: {one('events')}, "
                f"reply emotion: {tag(reply) if reply else self.rendering.unknown_tag}")

    @staticmethod
    def parse_tag_think(think: str) -> dict[str, str | None]:
        """The fields of a tag-form think (see ``think``): ``words``, ``age``, ``gender``, ``emotion``, ``events``
        and ``reply_emotion``; ``None`` for a field it does not hold."""
        out: dict[str, str | None] = {}
        m = _THINK_WORDS_RE.search(think)
        out["words"] = " ".join(m.group(1).split()) if m else None
        for name, key in _THINK_TAG_FIELDS.items():
            m = re.search(rf"{key}:\s*<\s*([^<>]*?)\s*>", think)
            out[name] = canonical(name, m.group(1)) if m else None
        return out

    # ----------------------------------------------------------------- parsing
    def parse(self, task: Task, hyp: str) -> dict:
        """Fields of a hypothesis: ``transcript``, ``words``, ``answer`` and one entry per label field."""
        text = hyp.strip()
        trailing: list[str] = []
        while (m := _TRAILING_TAG_RE.search(text)) and not (
            "answer" in task.fields and m.group(0).strip() == self.rendering.answer_separator
        ):
            trailing.insert(0, canonical("", m.group(1)))
            text = text[: m.start()].rstrip()
        out: dict = {}
        if "answer" in task.fields:
            sep = self.rendering.answer_separator
            if task.has_transcript:
                head, _, tail = text.partition(sep)
                out["transcript"], out["answer"] = " ".join(head.split()), " ".join(tail.split())
            else:
                out["answer"] = " ".join(text.split())
        elif "words" in task.fields:
            out["words"] = [(w, float(s), float(e)) for w, s, e in _TIMED_WORD_RE.findall(text)]
            out["transcript"] = " ".join(w for w, _, _ in out["words"]) or " ".join(
                re.sub(r"<[^<>]*>", " ", text).split())
        elif task.has_transcript:
            out["transcript"] = " ".join(text.split())
        out.update(self._assign_tags(task, trailing))
        return out

    def _assign_tags(self, task: Task, tags: list[str]) -> dict[str, str | None]:
        """Match trailing tags to the task's label fields: by label set where unambiguous, else by order."""
        fields = list(task.label_fields)
        assigned: dict[str, str | None] = {f: None for f in fields}
        leftovers = []
        for t in tags:
            owners = [f for f in fields if assigned[f] is None and t in self.rendering.label_sets.get(f, [])]
            if len(owners) == 1:
                assigned[owners[0]] = t
            else:
                leftovers.append(t)
        for t in leftovers:
            free = [f for f in fields if assigned[f] is None]
            if free:
                assigned[free[0]] = canonical(free[0], t)
        return assigned
