"""EChat-eval style harness for dialogue models: think accuracy per cue, reply appropriateness, content, multi-turn
memory with and without history, and the spoken reply's agreement with the text reply (S2S).

Scores come from the test shards alone (``data_prep.dialogue_corpus`` writes them): each sample's ``labels``
(the true cues), ``txt`` (the user's words) and ``expect``: the reply's parts (``address``, ``emotion``,
``event``, ``content``), the language think's cue phrases (``person``, ``mood``, ``event``) and on a memory
query the remembered value (``memory``). A generated reply is read by phrase: for each part, the longest
phrase of that part seen anywhere in the test set that the reply contains (none: the empty phrase), which
must be the expected one; ``appropriate`` needs the three cue parts right; ``follows_think``: the reply's cue parts
say what the model's own think stated (right or wrong); ``all_cues`` and ``appropriate_after_think``: how often the
think states all four cues right, and how often the reply is appropriate after a right and after a wrong think
(appropriateness = hearing x following, the two links apart); ``think_reply_emotion`` (tag think): whether the think's
last field, the reply emotion, is right, follows the think's own emotion tag, and is what the reply's emotion
phrase says (the chain emotion -> reply emotion -> phrase, link by link). A think is parsed in the model's
form (``rendering.think`` of its checkpoint): the tag form by ``TaskRegistry.parse_tag_think``, the language
form by the same phrase reading, its phrases mapped to labels through the test set's own pairs.

Turns are laid out by ``osum.chat`` exactly as a session lays them out: first turns are think tasks, later
turns ``<HISTORY>`` tasks over the sample's earlier turns (user audio, reference replies and their codes);
"no history" asks the same later turns as first turns (what a session with ``--history 0`` does), which
should fall to chance on memory.
S2S replies are spoken by token2wav and transcribed by an independent ASR (the packaged Whisper base).
The report also breaks the first turns down by user voice (``by_speaker``: where a held-out voice loses its
cues) and memory by kind of remembered value (``memory_by_kind``); ``echat_table.md`` prints both under the table.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from osum.chat import PastTurn, layout_turns, output_type
from osum.data.audio import decode_audio
from osum.data.reader import read_shard
from osum.data.skips import SkipCounter
from osum.evaluate.asr import MAX_SECONDS as ASR_SECONDS
from osum.evaluate.normalize import normalize_for_wer
from osum.inference import SpeechAssistant
from osum.metrics.wer import ErrorRate
from osum.speech_tokens.clips import list_shards
from osum.tasks.registry import TaskRegistry

log = logging.getLogger("osum")
CUES = ("gender", "age", "emotion", "event")
REPLY_CUE_PARTS = ("address", "emotion", "event")
NO_EVENT = "NONE"


@dataclass
class PastClip:
    audio: np.ndarray
    text: str
    codes: list[int] | None


@dataclass
class DialogueCase:
    """One test sample: the current user clip, the earlier turns, and what is expected."""

    key: str
    audio: np.ndarray
    meta: dict[str, Any]
    history: list[PastClip] = field(default_factory=list)

    @property
    def cues(self) -> dict[str, str]:
        labels = self.meta.get("labels") or {}
        events = labels.get("events") or []
        return {"gender": str(labels.get("gender")), "age": str(labels.get("age")),
                "emotion": str(labels.get("emotion")), "event": str(events[0]) if events else NO_EVENT}

    @property
    def expect(self) -> dict[str, Any]:
        return self.meta.get("expect") or {}


def read_cases(shards: Sequence[str], limit: int | None = None) -> list[DialogueCase]:
    """Test samples with ``expect``, their audio and history decoded (unreadable samples counted and left out)."""
    skips = SkipCounter()
    cases = []
    for shard in list_shards([Path(s) for s in shards]):
        for raw in read_shard(str(shard), skips):
            if raw.audio is None or not raw.meta.get("expect"):
                skips.skip("not_a_dialogue_test_sample", shard.name, raw.key)
                continue
            history = []
            for i, h in enumerate(raw.meta.get("history") or [], 1):
                member = raw.members.get(str(h.get("audio")))
                if member is None:
                    raise ValueError(f"{shard.name}:{raw.key}: history turn {i} names no audio member")
                history.append(PastClip(decode_audio(member), str(h.get("text") or ""), h.get("speech_tokens")))
            cases.append(DialogueCase(raw.key, decode_audio(raw.audio), raw.meta, history))
    if skips.total:
        log.warning("echat: %s", skips.summary())
    if not cases:
        raise ValueError(f"no dialogue test samples (with 'expect') in {list(shards)}")
    single = [c for c in cases if not c.history]
    multi = [c for c in cases if c.history]
    if limit is not None:  # keep the single : multi proportion
        n_multi = round(limit * len(multi) / len(cases))
        single, multi = single[: limit - n_multi], multi[:n_multi]
    return single + multi


# ---------------------------------------------------------------------------------------------- reading by phrase
class Phrasebook:
    """Per part, every phrase the test set uses and the label value(s) it stands for."""

    def __init__(self, cases: Sequence[DialogueCase]):
        self.values: dict[str, dict[str, tuple[str, ...]]] = defaultdict(dict)
        for c in cases:
            cues = c.cues
            for group, parts in (("reply", c.expect.get("parts") or {}), ("think", c.expect.get("think") or {})):
                for part, phrase in parts.items():
                    value = {"address": (cues["age"], cues["gender"]), "person": (cues["age"], cues["gender"]),
                             "emotion": (cues["emotion"],), "mood": (cues["emotion"],),
                             "event": (cues["event"],)}.get(part, (phrase,))
                    self.values[f"{group}.{part}"][phrase] = value
        # the user's emotion -> the reply emotion the rules give it (the tag think's last field)
        self.reply_emotion_of = {c.cues["emotion"]: str(c.meta["reply_emotion"]) for c in cases
                                 if c.meta.get("reply_emotion")}

    def find(self, key: str, text: str) -> str:
        """The longest phrase of ``key`` that ``text`` holds as whole words ("" when none)."""
        text = " ".join(text.lower().split())
        for phrase in sorted((p for p in self.values.get(key, {}) if p), key=len, reverse=True):
            if re.search(rf"(?<![\w']){re.escape(phrase)}(?![\w'])", text):
                return phrase
        return ""

    def value(self, key: str, phrase: str) -> tuple[str, ...] | None:
        return self.values.get(key, {}).get(phrase)


def think_cues(think: str | None, form: str, book: Phrasebook) -> dict[str, str | None]:
    """The cues (and the user's words) a generated think states, in the model's think form."""
    if not think:
        return {cue: None for cue in (*CUES, "words", "reply_emotion")}
    if form == "tag":
        fields = TaskRegistry.parse_tag_think(think)
        return {"gender": fields["gender"], "age": fields["age"], "emotion": fields["emotion"],
                "event": fields["events"], "words": fields["words"], "reply_emotion": fields["reply_emotion"]}
    person = book.value("think.person", book.find("think.person", think)) or (None, None)
    mood = book.value("think.mood", book.find("think.mood", think)) or (None,)
    event = book.value("think.event", book.find("think.event", think)) or (NO_EVENT,)
    words = re.search(r"says:\s*(.*?)\.\s*i should", think)
    return {"age": person[0], "gender": person[1], "emotion": mood[0], "event": event[0],
            "words": words.group(1) if words else None, "reply_emotion": None}


def reply_scores(reply: str, case: DialogueCase, book: Phrasebook) -> dict[str, bool]:
    """Each cue part right, all of them (``appropriate``), the content, and a memory query's value."""
    parts = case.expect.get("parts") or {}
    out = {part: book.find(f"reply.{part}", reply) == parts.get(part, "") for part in REPLY_CUE_PARTS}
    out["appropriate"] = all(out.values())
    out["content"] = bool(parts.get("content")) and _holds(reply, parts["content"])
    if case.expect.get("memory"):
        out["memory"] = _remembers(reply, case)
    return out


def _remembers(reply: str, case: DialogueCase) -> bool:
    """A memory query's reply holds the remembered value."""
    return _holds(reply, str(case.expect["memory"]))


def reply_follows_think(stated: dict[str, str | None], reply: str, book: Phrasebook) -> dict[str, bool]:
    """Whether each cue part of the reply says what the model's own think stated (right or wrong), and all three:
    a reply that follows its think loses appropriateness only where the think is wrong."""
    said = {"address": (stated["age"], stated["gender"]), "emotion": (stated["emotion"],), "event": (stated["event"],)}
    out = {part: book.value(f"reply.{part}", book.find(f"reply.{part}", reply)) == value for part, value in said.items()}
    out["all"] = all(out.values())
    return out


def reply_emotion_chain(stated: dict[str, str | None], reply: str, case: DialogueCase,
                        book: Phrasebook) -> dict[str, bool]:
    """The tag think's reply emotion (its last field) along the chain emotion -> reply emotion -> reply phrase: right
    (the case's own), ``follows_emotion`` (the one the rules give the think's own emotion tag) and ``read_by_reply``
    (the reply's emotion phrase is that reply emotion's). Locates where a reply's emotion part is lost."""
    said = stated.get("reply_emotion")
    phrase_emotion = (book.value("reply.emotion", book.find("reply.emotion", reply)) or (None,))[0]
    return {"right": said == case.meta.get("reply_emotion"),
            "follows_emotion": said == book.reply_emotion_of.get(str(stated.get("emotion"))),
            "read_by_reply": said == book.reply_emotion_of.get(str(phrase_emotion))}


def _holds(text: str, phrase: str) -> bool:
    norm = lambda s: " ".join(re.sub(r"[^\w' ]+", " ", s.lower()).split())  # noqa: E731
    return re.search(rf"(?<![\w']){re.escape(norm(phrase))}(?![\w'])", norm(text)) is not None


# ---------------------------------------------------------------------------------------------- generation
@dataclass
class Generated:
    case: DialogueCase
    history: bool
    output_type: str
    think: str | None
    text: str
    codes: list[int]


def generate_replies(assistant: SpeechAssistant, cases: Sequence[DialogueCase], speech_out: bool, with_history: bool,
                     batch_size: int = 16, greedy: bool = True, seed: int = 0,
                     max_new_tokens: int | None = None) -> list[Generated]:
    """The model's reply to each case's current turn, the history laid out (or dropped) as a session would."""
    generator = torch.Generator().manual_seed(seed)
    groups: dict[str, list[DialogueCase]] = defaultdict(list)
    for c in cases:
        groups[output_type(assistant, speech_out, with_history and bool(c.history))].append(c)
    out = []
    for out_type, group in groups.items():
        history_type = assistant.builder.output_type(out_type).history
        for i in range(0, len(group), batch_size):
            batch = group[i : i + batch_size]
            clips = [a for c in batch for a in ([h.audio for h in c.history] if history_type else []) + [c.audio]]
            speech, lengths = assistant.speech(clips)
            embeddings = iter(speech[k, : int(n)] for k, n in enumerate(lengths.tolist()))
            turns = []
            for c in batch:
                past = []
                if history_type:
                    for h in c.history:
                        if speech_out and not h.codes:
                            raise ValueError(f"{c.key}: S2S history needs the earlier replies' speech_tokens "
                                             "(python -m osum.speech_tokens extract --member reply_flac)")
                        past.append(PastTurn(next(embeddings), h.text, h.codes if speech_out else None))
                current = next(embeddings)
                turns.append(layout_turns(past, int(current.shape[0])))
            replies = assistant.respond(out_type, turns, speech, lengths, greedy=greedy, generator=generator,
                                        max_new_tokens=max_new_tokens)
            out += [Generated(c, history_type and bool(c.history), out_type, r.think, r.text, r.speech)
                    for c, r in zip(batch, replies)]
    return out


# ---------------------------------------------------------------------------------------------- scoring
def _rate(hits: Sequence[bool]) -> float | None:
    return round(100.0 * sum(hits) / len(hits), 2) if hits else None


def score_run(generated: Sequence[Generated], think_form: str, book: Phrasebook) -> tuple[dict[str, Any], list[dict]]:
    """Percentages over one run's replies, and one row per reply."""
    rows, think_hits, reply_hits, follow_hits = [], defaultdict(list), defaultdict(list), defaultdict(list)
    chain_hits, after_think = defaultdict(list), defaultdict(list)
    words_wer = ErrorRate()
    for g in generated:
        truth = g.case.cues
        row: dict[str, Any] = {"key": g.case.key, "output_type": g.output_type, "history": g.history,
                               "think": g.think, "reply": g.text, "expected": g.case.meta.get("answer"),
                               "cues": truth}
        scores = reply_scores(g.text, g.case, book)
        for name, hit in scores.items():
            reply_hits[name].append(hit)
        if g.think is not None or "think" in g.output_type:
            stated = think_cues(g.think, think_form, book)
            heard = {cue: stated[cue] == truth[cue] for cue in CUES}
            for cue, hit in heard.items():
                think_hits[cue].append(hit)
            all_heard = all(heard.values())
            think_hits["all_cues"].append(all_heard)
            after_think["right" if all_heard else "wrong"].append(scores["appropriate"])
            words_wer.add(str(g.case.meta.get("txt") or ""), stated["words"] or "")
            row["think_cues"] = stated
            for part, hit in reply_follows_think(stated, g.text, book).items():
                follow_hits[part].append(hit)
            if stated["reply_emotion"] is not None and g.case.meta.get("reply_emotion"):
                for link, hit in reply_emotion_chain(stated, g.text, g.case, book).items():
                    chain_hits[link].append(hit)
        row["scores"] = scores
        rows.append(row)
    summary: dict[str, Any] = {"replies": len(generated)}
    if think_hits:
        summary["think"] = {cue: _rate(h) for cue, h in think_hits.items()}
        summary["think"]["words_wer"] = round(100.0 * words_wer.rate, 2)
        summary["think"]["n"] = len(think_hits["gender"])
        summary["follows_think"] = {part: _rate(h) for part, h in follow_hits.items()}
        summary["appropriate_after_think"] = {k: _rate(after_think[k]) for k in ("right", "wrong")}
        if chain_hits:
            summary["think_reply_emotion"] = {link: _rate(h) for link, h in chain_hits.items()}
    summary["reply"] = {name: _rate(h) for name, h in reply_hits.items()}
    return summary, rows


def chance(cases: Sequence[DialogueCase]) -> dict[str, Any]:
    """What guessing gets: each cue's majority-class rate, and one memory value guessed uniformly."""
    out: dict[str, Any] = {}
    for cue in CUES:
        counts = Counter(c.cues[cue] for c in cases)
        out[cue] = round(100.0 * max(counts.values()) / len(cases), 2)
    values: dict[str, set[str]] = defaultdict(set)
    for c in cases:
        if c.expect.get("memory"):
            values[str(c.expect.get("memory_kind"))].add(str(c.expect["memory"]))
    queries = [c for c in cases if c.expect.get("memory")]
    if queries:
        out["memory"] = round(100.0 * sum(1 / len(values[str(c.expect.get("memory_kind"))]) for c in queries)
                              / len(queries), 2)
    return out


# ---------------------------------------------------------------------------------------------- spoken replies
def spoken_reply_wer(generated: Sequence[Generated], flow: str, asr: str, vocoder: str | None = None,
                     reference: str | None = None, wav_dir: Path | None = None, device: str = "cpu",
                     keep_wavs: int = 4) -> dict[str, Any]:
    """S2S: each reply's codes through token2wav, transcribed by the ASR judge, WER against the text reply."""
    import soundfile as sf

    from osum.evaluate.asr import AsrJudge
    from osum.token2wav import Token2Wav

    spoken = [g for g in generated if g.codes]
    if not spoken:
        return {"n": 0, "no_codes": len(generated), "too_long": []}
    synth = Token2Wav.load(flow, vocoder, device=device)
    ref = decode_audio(Path(reference).read_bytes()) if reference else None
    wavs = []
    for i in range(0, len(spoken), 8):
        wavs += synth.synthesize_batch([g.codes for g in spoken[i : i + 8]], ref)
    no_codes = len(generated) - len(spoken)
    fits = [len(wav) <= ASR_SECONDS * 16000 for wav in wavs]
    too_long = [g.case.key for g, fit in zip(spoken, fits) if not fit]
    if too_long:  # codes that never reached their stop marker: counted and named, not judged
        log.warning("S2S: %d spoken repl%s over the ASR's %.0f s window, not judged: %s", len(too_long),
                    "y" if len(too_long) == 1 else "ies", ASR_SECONDS, ", ".join(too_long))
    spoken, wavs = [g for g, fit in zip(spoken, fits) if fit], [w for w, fit in zip(wavs, fits) if fit]
    hyps = AsrJudge(asr, device=device).transcribe(wavs) if wavs else []
    rate = ErrorRate()
    rows = []
    for g, hyp in zip(spoken, hyps):
        rate.add(normalize_for_wer(g.text), normalize_for_wer(hyp), g.case.key)
        rows.append({"key": g.case.key, "text_reply": g.text, "asr": hyp, "codes": len(g.codes)})
    files = []
    if wav_dir is not None:
        wav_dir.mkdir(parents=True, exist_ok=True)
        for g, wav in list(zip(spoken, wavs))[:keep_wavs]:
            path = wav_dir / f"{g.case.key}.wav"
            sf.write(path, wav, 16000)
            files.append(str(path))
    return {"n": len(spoken), "no_codes": no_codes, "too_long": too_long,
            "wer": round(100.0 * rate.rate, 2) if spoken else None, "rows": rows, "wavs": files}


# ---------------------------------------------------------------------------------------------- one model
def evaluate_model(ckpt: str, shards: Sequence[str], limit: int | None = None, s2s_limit: int = 0,
                   batch_size: int = 16, greedy: bool = True, seed: int = 0, max_new_tokens: int | None = None,
                   flow: str | None = None, vocoder: str | None = None, reference: str | None = None,
                   asr: str | None = None, judge: str | None = None, wav_dir: Path | None = None,
                   device: str = "cpu", cases: list[DialogueCase] | None = None) -> tuple[dict[str, Any], list[dict]]:
    """Every score of one checkpoint (see the module docstring); ``s2s_limit`` cases also as S2S."""
    cases = cases if cases is not None else read_cases(shards, limit)
    book = Phrasebook(cases)
    assistant = SpeechAssistant.load(ckpt, device)
    form = assistant.registry.rendering.think
    multi = [c for c in cases if c.history]
    report: dict[str, Any] = {"ckpt": ckpt, "think_form": form, "cases": len(cases), "multi_turn": len(multi),
                              "chance": chance(cases)}
    generated = generate_replies(assistant, cases, False, True, batch_size, greedy, seed, max_new_tokens)
    report["s2t"], rows = score_run(generated, form, book)
    first = [g for g in generated if not g.history]
    report["s2t_first_turns"] = score_run(first, form, book)[0]
    report["by_speaker"] = {speaker: score_run(group, form, book)[0] for speaker, group in by_speaker(first).items()}
    if multi:
        with_history = [g for g in generated if g.history]
        report["memory_history"] = score_run(with_history, form, book)[0]["reply"].get("memory")
        report["memory_by_kind"] = memory_by_kind(with_history)
        without = generate_replies(assistant, multi, False, False, batch_size, greedy, seed, max_new_tokens)
        summary, no_history_rows = score_run(without, form, book)
        report["memory_no_history"] = summary["reply"].get("memory")
        rows += no_history_rows
    if s2s_limit:
        s2s_cases = _spread(cases, s2s_limit)
        s2s = generate_replies(assistant, s2s_cases, True, True, batch_size, greedy, seed, max_new_tokens)
        report["s2s"], s2s_rows = score_run(s2s, form, book)
        rows += [{**r, "mode": "s2s"} for r in s2s_rows]
        if flow and asr:
            report["s2s_speech"] = spoken_reply_wer(s2s, flow, asr, vocoder, reference, wav_dir, device)
    if judge:
        from osum.evaluate.llm_judge import JudgeItem, LlmJudge, summarize

        items = [JudgeItem(query=str(g.case.meta.get("txt") or ""), cues=g.case.cues, reply=g.text,
                           reply_emotion=g.case.meta.get("reply_emotion")) for g in first]
        report["judge"] = summarize(LlmJudge(judge, device).score(items))
    return report, rows


def by_speaker(generated: Sequence[Generated]) -> dict[str, list[Generated]]:
    """Replies grouped by the user's voice (the sample's ``speaker``): where a held-out voice loses its cues."""
    groups: dict[str, list[Generated]] = defaultdict(list)
    for g in generated:
        groups[str(g.case.meta.get("speaker") or "?")].append(g)
    return dict(sorted(groups.items()))


def memory_by_kind(generated: Sequence[Generated]) -> dict[str, dict[str, Any]]:
    """Memory accuracy per kind of remembered value (``expect.memory_kind``: a name, a number, a complaint)."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for g in generated:
        if g.case.expect.get("memory"):
            hits[str(g.case.expect.get("memory_kind"))].append(_remembers(g.text, g.case))
    return {kind: {"memory": _rate(h), "n": len(h)} for kind, h in sorted(hits.items())}


def _spread(cases: Sequence[DialogueCase], n: int) -> list[DialogueCase]:
    """``n`` cases spread evenly over the list (single- and multi-turn alike)."""
    if n >= len(cases):
        return list(cases)
    return [cases[int(i * len(cases) / n)] for i in range(n)]


# ---------------------------------------------------------------------------------------------- the table
def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}%"


def table(reports: dict[str, dict[str, Any]]) -> str:
    """EChat Table 1 style: one row per model, think and reply columns per cue, memory, spoken reply."""
    head = ["model", "think", "words WER", *(f"think {c}" for c in CUES), *(f"reply {p}" for p in REPLY_CUE_PARTS),
            "appropriate", "think all cues right (appropriate after it / after a wrong think)", "reply follows think",
            "think reply emotion (right / follows its emotion / read by reply)",
            "content", "memory (history)", "memory (no history)", "S2S reply WER"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in reports.items():
        first = r["s2t_first_turns"]
        think = first.get("think") or {}
        reply = first["reply"]
        speech = r.get("s2s_speech") or {}
        chain = first.get("think_reply_emotion")
        chain_cell = " / ".join(_pct(chain.get(k)) for k in ("right", "follows_emotion", "read_by_reply")) if chain else "-"
        after = first.get("appropriate_after_think")
        heard_cell = (f"{_pct(think.get('all_cues'))} ({_pct(after['right'])} / {_pct(after['wrong'])})"
                      if after else "-")
        lines.append("| " + " | ".join([name, r["think_form"], _pct(think.get("words_wer")),
                                        *(_pct(think.get(c)) for c in CUES), *(_pct(reply.get(p)) for p in REPLY_CUE_PARTS),
                                        _pct(reply.get("appropriate")), heard_cell,
                                        _pct((first.get("follows_think") or {}).get("all")), chain_cell,
                                        _pct(reply.get("content")),
                                        _pct(r.get("memory_history")), _pct(r.get("memory_no_history")),
                                        _pct(speech.get("wer"))]) + " |")
    any_report = next(iter(reports.values()))
    c = any_report["chance"]
    blanks = len(head) - 3 - len(CUES) - 3  # the columns between the cues and the two memory columns
    lines.append("| chance (majority class) | | | " + " | ".join(_pct(c.get(cue)) for cue in CUES) + " |" + " |" * blanks
                 + " " + _pct(c.get("memory")) + " | " + _pct(c.get("memory")) + " | |")
    return "\n".join(lines) + "\n"


def breakdown_table(reports: dict[str, dict[str, Any]]) -> str:
    """First turns per user voice (think cues, reply parts, appropriateness) and memory per kind of value."""
    head = ["model", "voice", "n", *(f"think {c}" for c in CUES), "think all cues", *(f"reply {p}" for p in REPLY_CUE_PARTS),
            "appropriate"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in reports.items():
        for speaker, s in (r.get("by_speaker") or {}).items():
            think = s.get("think") or {}
            lines.append("| " + " | ".join([name, speaker, str(s["replies"]), *(_pct(think.get(c)) for c in CUES),
                                            _pct(think.get("all_cues")), *(_pct(s["reply"].get(p)) for p in REPLY_CUE_PARTS),
                                            _pct(s["reply"].get("appropriate"))]) + " |")
    kinds = sorted({k for r in reports.values() for k in (r.get("memory_by_kind") or {})})
    if kinds:
        lines += ["", "| model | " + " | ".join(f"memory: {k}" for k in kinds) + " |", "|" + "---|" * (len(kinds) + 1)]
        for name, r in reports.items():
            by_kind = r.get("memory_by_kind") or {}
            cells = [f"{_pct(by_kind[k]['memory'])} of {by_kind[k]['n']}" if k in by_kind else "-" for k in kinds]
            lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines) + "\n"


def run(models: dict[str, str], shards: Sequence[str], out_dir: str | Path, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """Evaluate each named checkpoint on the same cases; writes echat_table.md, echat_report.json and
    echat_replies.jsonl (one row per reply) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = read_cases(shards, kwargs.pop("limit", None))
    reports = {}
    with open(out_dir / "echat_replies.jsonl", "w", encoding="utf-8") as f:
        for name, ckpt in models.items():
            report, rows = evaluate_model(ckpt, shards, cases=cases, wav_dir=out_dir / f"wavs_{name}", **kwargs)
            reports[name] = report
            for row in rows:
                f.write(json.dumps({"model": name, **row}, ensure_ascii=False) + "\n")
    (out_dir / "echat_report.json").write_text(json.dumps(reports, indent=1, ensure_ascii=False) + "\n")
    (out_dir / "echat_table.md").write_text(table(reports) + "\n" + breakdown_table(reports))
    return reports
