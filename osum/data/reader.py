"""Reading tar shards: members grouped by key, in our layout or the original OSUM layout.

Our layout (design.md section 3): ``KEY.flac`` (or ``.wav``) and ``KEY.json`` with structured fields;
a sample without audio (text-only: T2T, TTS) has no audio member. Original OSUM shards (reference
section 3.2: ``KEY.wav``, ``KEY.txt``, ``KEY.task``, ``KEY.extra`` ...) are read as they are: their ``txt``
is already the rendered target, so it becomes ``meta["target"]`` and the sample keeps its own ``task``;
``extra.speech_token`` becomes ``speech_tokens`` and ``extra.question`` ``question``.

Multi-turn samples (reference 5.4) carry the user audio of earlier turn ``i`` as member ``KEY.wav_i``
(1-based; or ``.flac_i``), and the assistant's text as ``KEY.txt_i`` (original) or in the JSON's
``history``: ``[{"audio": "wav_1", "text": ..., "speech_tokens": [...]}, ...]``, one entry per earlier
turn in order. Without a ``history`` field, it is made from the members (``txt_i``, and the original's
``extra.speech_token_i``). Every member is delivered in ``RawSample.members``.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from osum.data.skips import BadSample, SkipCounter
from osum.data.tar_stream import tar_members

AUDIO_SUFFIXES = ("flac", "wav", "mp3", "ogg", "opus", "m4a")
ORIGINAL_TEXT_FIELDS = ("txt", "task", "lang", "speaker", "emotion", "gender", "duration")
HISTORY_AUDIO_RE = re.compile(rf"^({'|'.join(AUDIO_SUFFIXES)})_(\d+)$")  # KEY.wav_1: user audio of turn 1


@dataclass
class RawSample:
    """The members of one key: audio bytes (if any) and the metadata dict."""

    key: str
    shard: str
    index: int = 0  # position of the key's group within its shard (counting unusable groups too)
    audio: bytes | None = None
    meta: dict = field(default_factory=dict)
    members: dict[str, bytes] = field(default_factory=dict)


def open_stream(url: str):
    """A local path, or anything webdataset's gopen understands (``pipe:``, http, s3 via pipe)."""
    if "://" in url or url.startswith("pipe:"):
        import webdataset as wds

        return wds.gopen(url, "rb")
    return open(url, "rb")


def _group(shard: str, members: Iterator[tuple[str, bytes]], skips: SkipCounter) -> Iterator[dict[str, bytes]]:
    current: dict[str, bytes] = {}
    current_key = None
    for name, data in members:
        base = name.rsplit("/", 1)[-1]
        if "." not in base:
            continue
        key, suffix = base.rsplit(".", 1)
        if key != current_key and current:
            yield {"__key__": current_key.encode(), **current}  # type: ignore[union-attr]
            current = {}
        current_key = key
        if suffix in current:
            skips.skip("duplicate_member", shard, key, suffix)
        current[suffix] = data
    if current:
        yield {"__key__": current_key.encode(), **current}  # type: ignore[union-attr]


def _tar_members(shard: str, skips: SkipCounter) -> Iterator[tuple[str, bytes]]:
    try:
        with open_stream(shard) as stream:
            yield from tar_members(stream)
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        skips.skip("truncated_or_corrupt_tar", shard, None, str(e)[:120])


def history_from_members(group: dict[str, bytes], extra: dict) -> list[dict]:
    """Earlier turns from ``wav_i`` / ``txt_i`` members (and ``extra.speech_token_i``), in turn order."""
    turns: dict[int, dict] = {}
    for suffix in group:
        if m := HISTORY_AUDIO_RE.match(suffix):
            turns.setdefault(int(m.group(2)), {})["audio"] = suffix
        elif suffix.startswith("txt_") and suffix[4:].isdigit():
            turns.setdefault(int(suffix[4:]), {})["text"] = group[suffix].decode("utf-8", "replace").strip()
    for i, turn in turns.items():
        if isinstance(extra.get(f"speech_token_{i}"), list):
            turn["speech_tokens"] = extra[f"speech_token_{i}"]
    return [turns[i] for i in sorted(turns)]


def to_raw_sample(shard: str, group: dict[str, bytes]) -> RawSample:
    """Interpret one key's members; ``BadSample`` for missing or malformed metadata."""
    key = group.pop("__key__").decode()
    audio = next((group[s] for s in AUDIO_SUFFIXES if s in group), None)
    if "json" in group:
        try:
            meta = json.loads(group["json"].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadSample("malformed_json", str(e)[:120]) from None
        if not isinstance(meta, dict):
            raise BadSample("malformed_json", "top level is not an object")
    elif "txt" in group:  # original OSUM layout
        meta = {k: group[k].decode("utf-8", "replace").strip() for k in ORIGINAL_TEXT_FIELDS if k in group}
        meta["target"] = meta.pop("txt", "")
        if "extra" in group:
            try:
                meta["extra"] = json.loads(group["extra"].decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise BadSample("malformed_json", f"extra: {str(e)[:100]}") from None
        if "duration" in meta:
            try:
                meta["duration"] = float(meta["duration"])
            except ValueError:
                meta.pop("duration")
        extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
        if isinstance(extra.get("speech_token"), list):
            meta["speech_tokens"] = extra["speech_token"]
        if extra.get("question"):  # the user's text of a T2T sample
            meta["question"] = extra["question"]
        if history := history_from_members(group, extra):
            meta["history"] = history
    else:
        raise BadSample("missing_json", f"members: {sorted(group)}")
    if "history" not in meta and (history := history_from_members(group, {})):
        meta["history"] = history
    return RawSample(key=key, shard=shard, audio=audio, meta=meta, members=group)


def read_shard(shard: str, skips: SkipCounter, start: int = 0) -> Iterator[RawSample]:
    """The usable samples of one shard from group ``start`` on, in order; bad ones are counted and left out.

    Groups before ``start`` are read past without being interpreted (a cheap fast-forward on resume).
    """
    name = Path(shard).name
    for index, group in enumerate(_group(name, _tar_members(shard, skips), skips)):
        if index < start:
            continue
        key = group["__key__"].decode()
        try:
            sample = to_raw_sample(shard, group)
        except BadSample as e:
            skips.skip(e.reason, name, key, e.detail)
            continue
        sample.index = index
        yield sample
