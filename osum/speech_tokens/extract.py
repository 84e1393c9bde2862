"""Write a copy of a shard set whose samples carry ``speech_tokens``: the codes of their audio.

Each input shard gives one output shard of the same name in another directory (the input is never
rewritten). Every member of a sample is copied byte for byte except its JSON, which gains
``"speech_tokens": [...]`` (for a TTS sample, the audio member is the answer audio, so these are the
target codes); original-OSUM samples (no JSON) get ``extra.speech_token`` instead, which the reader
maps to ``speech_tokens``. Samples without audio are copied unchanged. A sample whose audio cannot be
decoded is reported by key, counted and copied unchanged (without codes).

``member`` names another member to encode instead of the audio: a dialogue's reply audio
(``reply_flac``), whose codes are the S2S target, while the user audio stays input. Its history entries
that name a ``reply_audio`` member get that turn's codes as ``speech_tokens`` too. Groups the reader cannot
use at all (no or malformed JSON) are counted in the reader's skips and left out, as training would.
Shards are written as ``NAME.tar.tmp`` and renamed when complete; ``index.json`` is written last.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osum.data.audio import TARGET_SR, decode_audio
from osum.data.index import add_sample, build_index, new_shard_stats, write_index
from osum.data.reader import RawSample, read_shard
from osum.data.skips import BadSample, SkipCounter
from osum.speech_tokens.clips import list_shards
from osum.speech_tokens.tokenizer import SpeechTokenizer


@dataclass
class ExtractReport:
    """What ``extract_shards`` did: counts, and the samples kept without codes (``shard:key reason``)."""

    shards: int = 0
    samples: int = 0
    tokenized: int = 0
    codes: int = 0
    no_audio: int = 0
    failed: list[str] = field(default_factory=list)
    reader_skips: SkipCounter = field(default_factory=SkipCounter)
    audio_skips: SkipCounter = field(default_factory=SkipCounter)


@dataclass
class _Pending:
    """One sample and the clips to encode: ``None`` -> its own codes, ``i`` -> history turn ``i``'s."""

    raw: RawSample
    clips: dict[int | None, np.ndarray] = field(default_factory=dict)
    codes: dict[int | None, list[int]] = field(default_factory=dict)


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def with_codes(members: dict[str, bytes], codes: list[int] | None,
               history_codes: dict[int, list[int]] | None = None) -> dict[str, bytes]:
    """A sample's members with ``codes`` added to its JSON (or to ``extra`` for the original layout), and
    ``history_codes`` (turn index -> codes) to its ``history`` entries."""
    members = dict(members)
    name, field_name = ("json", "speech_tokens") if "json" in members else ("extra", "speech_token")
    record = json.loads(members[name].decode("utf-8")) if name in members else {}
    if codes is not None:
        record[field_name] = codes
    for i, turn_codes in (history_codes or {}).items():
        record["history"][i]["speech_tokens"] = turn_codes
    members[name] = json.dumps(record, ensure_ascii=False).encode("utf-8")
    return members


class _ShardExtractor:
    """Copies one shard, encoding its clips ``batch_size`` at a time and writing samples in input order."""

    def __init__(self, tokenizer: SpeechTokenizer, tar: tarfile.TarFile, stats: dict, report: ExtractReport,
                 shard_name: str, batch_size: int, member: str | None = None):
        self.tokenizer, self.tar, self.stats, self.report = tokenizer, tar, stats, report
        self.shard_name, self.batch_size, self.member = shard_name, batch_size, member
        self.pending: list[_Pending] = []

    def _sources(self, raw: RawSample) -> dict[int | None, bytes | None]:
        """The audio bytes to encode: the sample's own (its audio or ``member``), and history reply members."""
        if self.member is None:
            return {None: raw.audio}
        sources: dict[int | None, bytes | None] = {None: raw.members.get(self.member)}
        history = raw.meta.get("history")
        for i, turn in enumerate(history if isinstance(history, list) else []):
            if isinstance(turn, dict) and turn.get("reply_audio"):
                sources[i] = raw.members.get(str(turn["reply_audio"]))
        return sources

    def add(self, raw: RawSample) -> None:
        item = _Pending(raw)
        for target, data in self._sources(raw).items():
            where = "" if target is None else f"history turn {target + 1}: "
            if data is None:
                if target is None:
                    self.report.no_audio += 1
                else:
                    self._failed(raw, "missing_member", f"{where}no member {turn_member(raw, target)}")
                continue
            try:
                item.clips[target] = decode_audio(data)
            except BadSample as e:
                self._failed(raw, e.reason, f"{where}{e.detail}".strip())
        self.pending.append(item)
        if sum(len(p.clips) for p in self.pending) >= self.batch_size:
            self.flush()

    def _failed(self, raw: RawSample, reason: str, detail: str) -> None:
        self.report.audio_skips.skip(reason, self.shard_name, raw.key, detail)
        self.report.failed.append(f"{self.shard_name}:{raw.key} {reason} {detail}".strip())

    def _encode(self, clips: list[tuple[_Pending, int | None]]) -> None:
        audios = [p.clips[t] for p, t in clips]
        try:
            codes = self.tokenizer.encode_batch(audios, self.batch_size, [p.raw.key for p, _ in clips])
            for (p, t), c in zip(clips, codes):
                p.codes[t] = c
        except ValueError:  # find the clip(s) at fault, keep the rest
            for p, t in clips:
                try:
                    p.codes[t] = self.tokenizer.encode(p.clips[t])
                except ValueError as e:
                    self._failed(p.raw, "unencodable_audio", str(e)[:120])

    def flush(self) -> None:
        clips = [(p, t) for p in self.pending for t in p.clips]
        if clips:
            self._encode(clips)
        for p in self.pending:
            meta, members = dict(p.raw.meta), p.raw.members
            sample_codes = p.codes.get(None)
            history_codes = {t: c for t, c in p.codes.items() if t is not None}
            if sample_codes is not None or history_codes:
                members = with_codes(members, sample_codes, history_codes)
            if sample_codes is not None:
                meta["speech_tokens"] = sample_codes
                if meta.get("duration") is None and self.member is None:
                    meta["duration"] = len(p.clips[None]) / TARGET_SR
                self.report.tokenized += 1
                self.report.codes += len(sample_codes)
            for suffix, data in members.items():
                _member(self.tar, f"{p.raw.key}.{suffix}", data)
            add_sample(self.stats, meta)
            self.report.samples += 1
        self.pending = []


def turn_member(raw: RawSample, turn: int) -> str:
    return f"{raw.key}.{raw.meta['history'][turn]['reply_audio']}"


def extract_shards(tokenizer: SpeechTokenizer, in_dir: str | Path, out_dir: str | Path,
                   batch_size: int = 16, member: str | None = None) -> ExtractReport:
    """Copy the shards of ``in_dir`` into ``out_dir`` with ``speech_tokens`` added, and index them
    (``member``: encode that member of each sample, and its history's reply members, instead of its audio)."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    shards = list_shards([in_dir])
    if out_dir.resolve() == in_dir.resolve() or any(s.resolve().parent == out_dir.resolve() for s in shards):
        raise ValueError(f"{out_dir}: the output directory must differ from the input shards' directory")
    stale = sorted(p.name for p in out_dir.glob("*.tar") if p.name not in {s.name for s in shards})
    if stale:
        raise ValueError(f"{out_dir}: holds shards that would not be outputs of {in_dir} ({stale[:5]}); "
                         "use an empty or new output directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ExtractReport()
    all_stats = []
    for shard in shards:
        out_path = (out_dir / shard.name).resolve()
        tmp_path = Path(f"{out_path}.tmp")
        stats = new_shard_stats(str(out_path))
        try:
            with tarfile.open(tmp_path, "w", format=tarfile.PAX_FORMAT) as tar:
                extractor = _ShardExtractor(tokenizer, tar, stats, report, shard.name, batch_size, member)
                for raw in read_shard(str(shard), report.reader_skips):
                    extractor.add(raw)
                extractor.flush()
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        os.replace(tmp_path, out_path)
        all_stats.append(stats)
        report.shards += 1
    write_index(out_dir, build_index(all_stats))
    return report
