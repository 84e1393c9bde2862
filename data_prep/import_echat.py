"""Import an EChat-200K style JSONL manifest (the OSUM-EChat raw list) and its audio into shards of dialogue samples.

    python -m data_prep.import_echat MANIFEST.jsonl --out OUT [--workers N] [--shard-size 1000]
        [--max-seconds 30] [--label-sets any|osum|mini] [--reply-audio] [--force]

One JSON object per line (reference 3.1, 5.3, 5.4): ``key``, ``wav`` (the user's audio: a path, absolute
or relative to the manifest's folder), ``txt`` (the assistant's reply), ``task`` (e.g.
``<S2TCHAT> <TEXT2TOKEN> <THINK>``) and ``extra`` with ``age``, ``gender``, ``q_emotion``, ``caption``
(tags such as ``<ADULT>``), ``q_txt`` or ``question`` (the user's words), ``think_str``, ``speech_token``
(the reply's speech codes), ``a_wav_path`` (the reply's audio), ``dataset``; earlier turns ``i = 1..n`` of a
multi-turn dialogue are ``wav_i`` (the user's audio), ``txt_i`` (the assistant's text) and
``speech_token_i``, at the top level or in ``extra``. Each line becomes one sample of our schema:

- ``txt``: the user's words (``q_txt``, else ``question``); ``answer``: the reply. A reply that starts with a
  tag (tag-think data: ``<开心>...``) loses it, and the tag becomes ``reply_emotion``.
- ``labels``: ``age``, ``gender``, ``emotion`` (``q_emotion``), ``events`` (the tags of ``caption``), without
  ``<>``, through :func:`osum.tasks.labels.canonical`; a label outside our inventories (Chinese ones) stays
  upper-cased as given (``--label-sets any``, the default here: training checks the label sets); a
  ``<NONE>`` caption is ``events: []`` (no event).
- ``think``: ``think_str``; ``speech_tokens``: ``speech_token``; ``domain``: ``dataset``.
- ``history``: ``[{"text": txt_i, "speech_tokens": speech_token_i}, ...]``, with the user audio of turn ``i``
  as member ``KEY.flac_i`` (named in the entry's ``audio``, as :class:`~osum.data.shards.ShardWriter` writes).
- ``echat_task``: the original ``task``, for reference only: there is no ``task`` (the mixture chooses the
  dialogue tasks, osum.tasks.registry ``DIALOGUE_TASKS``). Other fields are dropped.
- ``--reply-audio``: also store ``a_wav_path`` as member ``KEY.reply_flac`` (``reply_wav``), e.g. for
  ``python -m osum.speech_tokens extract --member reply_flac`` (codes of our own speech tokenizer).

A line is rejected, with the reason in ``OUT/rejects.jsonl`` and the summary, when it has no key
(``missing_key``), no user audio path or file (``missing_audio``; also a missing ``wav_i`` or, with
``--reply-audio``, ``a_wav_path``), no reply (``empty_answer``), history turns that are not 1..n or have no
text (``bad_history``), or speech codes that are not a list of non-negative ints (``bad_speech_tokens``); and
by the shared checks of data_prep/importing.py (audio, duration, key). One bad line never stops the import.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from data_prep.importing import (
    ANY_LABELS,
    AudioSource,
    ImportItem,
    ImportReport,
    Reject,
    add_import_arguments,
    import_from_args,
    keyed_source,
    read_jsonl,
)
from osum.tasks.labels import canonical, find_tags

LABEL_FIELDS = (("age", "age"), ("gender", "gender"), ("emotion", "q_emotion"))  # our kind, EChat's field
NO_EVENT = ("NONE",)  # a caption that says there is no sound event
HISTORY_FIELD = re.compile(r"^(wav|txt)_(\d+)$")
LEADING_TAG = re.compile(r"^\s*<([^<>]+)>\s*(.*)$", re.DOTALL)
REPLY_MEMBER = "reply"  # + "_flac" / "_wav", the shard's audio format


def manifest_items(manifest: str | Path, reply_member: str | None = None) -> tuple[list[ImportItem], list[Reject]]:
    """Import items of an EChat manifest in line order, and the rejects of lines that cannot become items.

    ``reply_member``: store each line's ``a_wav_path`` as this member (lines without one are rejected)."""
    manifest = Path(manifest)
    records, rejects = read_jsonl(manifest)
    items = []
    for where, record in records:
        item = echat_item(where, record, manifest.parent, reply_member)
        if isinstance(item, Reject):
            rejects.append(item)
        else:
            items.append(item)
    return items, rejects


def echat_item(where: str, record: dict[str, Any], base_dir: Path,
               reply_member: str | None = None) -> ImportItem | Reject:
    """The import item of one EChat line (``where``: ``FILE:LINE``), or its reject."""
    source = keyed_source(where, record, "wav", base_dir)
    if isinstance(source, Reject):
        return source
    key, audio = source
    extra = record.get("extra") if record.get("extra") is not None else {}
    if not isinstance(extra, dict):
        return Reject(key, "malformed_line", f"{where}: 'extra' is not an object")
    reply_emotion, answer = split_reply(_text(record.get("txt")))
    if not answer:
        return Reject(key, "empty_answer", f"{where}: no reply in 'txt'")
    meta: dict[str, Any] = {}
    if words := _text(_field(record, extra, "q_txt")) or _text(_field(record, extra, "question")):
        meta["txt"] = words
    meta["answer"] = answer
    if reply_emotion:
        meta["reply_emotion"] = reply_emotion
    if labels := echat_labels(record, extra):
        meta["labels"] = labels
    if think := _text(_field(record, extra, "think_str")):
        meta["think"] = think
    codes = _codes(_field(record, extra, "speech_token"))
    if isinstance(codes, str):
        return Reject(key, "bad_speech_tokens", f"{where}: speech_token {codes}")
    if codes:
        meta["speech_tokens"] = codes
    history = echat_history(where, record, extra, base_dir)
    if isinstance(history, Reject):
        return Reject(key, history.reason, history.detail)
    turns, history_audio = history
    if turns:
        meta["history"] = turns
    if domain := _text(_field(record, extra, "dataset")):
        meta["domain"] = domain
    if task := _text(record.get("task")):
        meta["echat_task"] = task
    extra_audio = {}
    if reply_member:
        path = _text(_field(record, extra, "a_wav_path"))
        if not path:
            return Reject(key, "missing_audio", f"{where}: no 'a_wav_path' (the reply audio of --reply-audio)")
        extra_audio[reply_member] = AudioSource(path=str((base_dir / path).resolve()))
    return ImportItem(key, audio, meta, history_audio=tuple(history_audio), extra_audio=extra_audio)


def split_reply(reply: str) -> tuple[str | None, str]:
    """(the reply-emotion tag a reply starts with, upper-cased without ``<>``, or None; the reply without it)."""
    if m := LEADING_TAG.match(reply):
        return canonical("reply_emotion", m.group(1)) or None, m.group(2).strip()
    return None, reply.strip()


def echat_labels(record: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Our ``labels`` from EChat's ``age``, ``gender``, ``q_emotion`` and ``caption`` (canonical, as given
    when outside our inventories); a label that is absent or empty is left out."""
    labels: dict[str, Any] = {}
    for kind, name in LABEL_FIELDS:
        if value := canonical(kind, _text(_field(record, extra, name))):
            labels[kind] = value
    if caption := _text(_field(record, extra, "caption")):
        events = [canonical("events", event) for event in find_tags(caption) or [caption]]
        labels["events"] = [event for event in events if event and event not in NO_EVENT]
    return labels


def echat_history(where: str, record: dict[str, Any], extra: dict[str, Any],
                  base_dir: Path) -> tuple[list[dict[str, Any]], list[AudioSource]] | Reject:
    """The ``history`` entries and user audio of earlier turns 1..n (``wav_i``, ``txt_i``, ``speech_token_i``),
    or a reject (keyed by ``where``; the caller puts the sample's key on it)."""
    numbers = sorted({int(m.group(2)) for name in [*record, *extra] if (m := HISTORY_FIELD.match(name))})
    if numbers != list(range(1, len(numbers) + 1)):
        return Reject(where, "bad_history", f"{where}: history turns {numbers}, expected 1..n")
    turns, audio = [], []
    for i in numbers:
        path = _text(_field(record, extra, f"wav_{i}"))
        if not path:
            return Reject(where, "missing_audio", f"{where}: history turn {i} has no 'wav_{i}' path")
        text = split_reply(_text(_field(record, extra, f"txt_{i}")))[1]
        if not text:
            return Reject(where, "bad_history", f"{where}: history turn {i} has no 'txt_{i}' reply")
        turn: dict[str, Any] = {"text": text}
        codes = _codes(_field(record, extra, f"speech_token_{i}"))
        if isinstance(codes, str):
            return Reject(where, "bad_speech_tokens", f"{where}: speech_token_{i} {codes}")
        if codes:
            turn["speech_tokens"] = codes
        turns.append(turn)
        audio.append(AudioSource(path=str((base_dir / path).resolve())))
    return turns, audio


def _field(record: dict[str, Any], extra: dict[str, Any], name: str) -> Any:
    """A field of the line, at its top level or else in ``extra``."""
    return record[name] if record.get(name) is not None else extra.get(name)


def _text(value: Any) -> str:
    """A string or number field as stripped text; anything else (absent, a list, an object) as ``""``."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return ""
    return str(value).strip()


def _codes(value: Any) -> list[int] | str | None:
    """Speech codes as a list of ints; None when absent or empty; a string saying what is wrong otherwise."""
    if value is None or value == []:
        return None
    if not isinstance(value, list) or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0
                                              for c in value):
        return "is not a list of non-negative ints"
    return value


def main(argv: list[str] | None = None) -> ImportReport:
    parser = argparse.ArgumentParser(prog="python -m data_prep.import_echat", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="EChat JSONL manifest, one dialogue turn (with its history) per line")
    add_import_arguments(parser)
    parser.set_defaults(label_sets=ANY_LABELS)
    parser.add_argument("--reply-audio", action="store_true",
                        help="also store extra.a_wav_path as member reply_flac (reply_wav); lines without it are "
                             "rejected")
    args = parser.parse_args(argv)
    reply_member = f"{REPLY_MEMBER}_{args.audio_format}" if args.reply_audio else None
    items, rejects = manifest_items(args.source, reply_member)
    return import_from_args(items, rejects, args)


if __name__ == "__main__":
    main()
