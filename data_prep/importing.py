"""Shared machinery of the corpus importers: validate, write shards in parallel, restart, report.

An importer (``import_kaldi``, ``import_jsonl``, ``import_osum_list``) only turns its input into a
list of :class:`ImportItem` (key, audio source, sample JSON) plus the :class:`Reject` of inputs it
could not parse; :func:`import_items` does the rest:

- The items are cut into slices of ``shard_size`` in input order; slice ``i`` is written by its own
  :class:`~osum.data.shards.ShardWriter` as ``OUT/{prefix}-{i:06d}-000000.tar`` (none when every
  item of the slice is rejected), so workers write disjoint shards and the output does not depend
  on the number of workers. A key seen before is rejected (``duplicate_key``).
- Every item is validated: the key, the task tag, the labels (canonical form, known label set),
  a non-empty transcript / target where the sample has one, the audio (decoded by
  :func:`osum.data.audio.decode_audio`, cut to ``start``/``end``), and the duration. Audio is
  stored as 16 kHz mono FLAC. An item may carry more clips, validated alike: the user audio of the
  earlier turns of a dialogue (``history_audio``: members ``KEY.flac_i``, named in ``history``) and
  clips by member name (``extra_audio``, e.g. the reply audio ``reply_flac``). ``label_sets=None``
  (``--label-sets any``) only puts labels in canonical form; the label-set check is then training's.
- A finished slice leaves ``OUT/.import/{prefix}-{i:06d}.done`` (JSON: a fingerprint of the slice's
  items and of the checks, its shard stats and its rejects). A rerun keeps every slice whose marker
  matches and whose tar exists, and writes the others again: a killed import continues where it
  stopped. Files of the prefix that no finished slice owns are removed, since OUT belongs to the import.
- ``OUT/index.json`` (:mod:`osum.data.index`) and ``OUT/rejects.jsonl`` (one line per rejected
  input: key, reason, detail) are written at the end (an unfinished import leaves no index), and a
  summary with counts by reason is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import io
import json
import multiprocessing
import os
import re
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from osum.data.audio import TARGET_SR, decode_audio
from osum.data.index import INDEX_NAME, build_index, write_index
from osum.data.shards import AUDIO_FORMATS, ShardWriter, check_key
from osum.data.skips import BadSample
from osum.tasks import TaskRegistry, UnknownTaskError
from osum.tasks.labels import MINI_LABEL_SETS, OSUM_LABEL_SETS, canonical

LABEL_SETS = {"osum": OSUM_LABEL_SETS, "mini": MINI_LABEL_SETS}
ANY_LABELS = "any"  # --label-sets any: no label-set check at import
MARKER_DIR = ".import"
REJECTS_NAME = "rejects.jsonl"
MAX_OVERSHOOT_S = 0.5  # a segment may end this far past its recording (clipped), as Kaldi allows
COMMAND_TIMEOUT_S = 600
FINGERPRINT_VERSION = 1


@dataclass(frozen=True)
class AudioSource:
    """A file (``path``) or a shell command whose stdout is the audio (``command``), optionally cut
    to ``[start, end)`` seconds (``end=None``: to the end of the recording)."""

    path: str = ""
    command: str = ""
    start: float | None = None
    end: float | None = None

    @property
    def recording(self) -> str:
        return f"{self.command} |" if self.command else self.path


@dataclass(frozen=True)
class ImportItem:
    """One input sample: its key, where its audio is, and its sample JSON (design section 3); optionally the
    user audio of earlier dialogue turns 1..n (``meta["history"]`` has one entry per clip when present) and
    more clips by member name (no dot), as :meth:`~osum.data.shards.ShardWriter.write` takes them."""

    key: str
    audio: AudioSource
    meta: dict[str, Any]
    history_audio: tuple[AudioSource, ...] = ()
    extra_audio: dict[str, AudioSource] = field(default_factory=dict)


@dataclass(frozen=True)
class Reject:
    """An input that was not imported, with a short stable reason and a detail for people."""

    key: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Checks:
    """What every sample must satisfy to be imported."""

    max_seconds: float = 30.0
    # None: labels are only put in canonical form (any label passes; training checks its label sets)
    label_sets: dict[str, list[str]] | None = field(default_factory=lambda: dict(OSUM_LABEL_SETS))


@dataclass
class ImportReport:
    """What an import produced: shard paths, sample and second totals, rejects, reused slices."""

    out_dir: Path
    shards: list[str]
    samples: int
    seconds: float
    rejects: list[Reject]
    slices: int
    reused_slices: int

    def summary(self) -> str:
        lines = [f"imported {self.samples} samples ({self.seconds / 3600.0:.4f} h) into {len(self.shards)} "
                 f"shards in {self.out_dir}; {self.reused_slices} of {self.slices} slices kept from an earlier run"]
        counts = Counter(reject.reason for reject in self.rejects)
        if counts:
            lines.append(f"rejected {len(self.rejects)} inputs ({self.out_dir / REJECTS_NAME}):")
            lines += [f"  {reason:<24} {n:>8}" for reason, n in sorted(counts.items())]
        else:
            lines.append("rejected 0 inputs")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- validation
def checked_meta(meta: dict[str, Any], checks: Checks) -> dict[str, Any]:
    """``meta`` with its task tag normalized and labels in canonical form; ``BadSample`` if invalid."""
    meta = dict(meta)
    if meta.get("task"):
        try:
            meta["task"] = _task_registry().get(str(meta["task"])).tag
        except UnknownTaskError:
            raise BadSample("unknown_task", str(meta["task"])[:80]) from None
    else:
        meta.pop("task", None)
    for name, reason in (("txt", "empty_transcript"), ("target", "empty_target")):
        if name in meta and not str(meta[name] or "").strip():
            raise BadSample(reason, f"{name} is empty")
    if "labels" in meta:
        meta["labels"] = checked_labels(meta["labels"], checks.label_sets)
    return meta


def checked_labels(labels: Any, label_sets: dict[str, list[str]] | None) -> dict[str, Any]:
    """Labels in canonical form (a list stays a list); ``BadSample("unknown_label")`` for any label
    outside ``label_sets`` or of an unknown kind (no such check when ``label_sets`` is None)."""
    if not isinstance(labels, dict):
        raise BadSample("unknown_label", f"labels must be an object, got {type(labels).__name__}")
    checked: dict[str, Any] = {}
    for kind, value in labels.items():
        values = value if isinstance(value, list) else [value]
        canonical_values = [canonical(kind, str(v)) if v is not None else "" for v in values]
        unknown = [v for v in canonical_values if v not in label_sets.get(kind, [])] if label_sets is not None else []
        if unknown:
            known = "unknown label type" if kind not in label_sets else f"known: {label_sets[kind]}"
            raise BadSample("unknown_label", f"{kind}={unknown[0]!r} ({known})")
        checked[kind] = canonical_values if isinstance(value, list) else canonical_values[0]
    return checked


@functools.cache
def _task_registry() -> TaskRegistry:
    return TaskRegistry.from_config()


# ----------------------------------------------------------------------------- audio
def read_audio_bytes(source: AudioSource) -> bytes:
    """The encoded bytes of a recording: the file, or the stdout of the command run through a shell."""
    if source.command:
        try:
            result = subprocess.run(source.command, shell=True, capture_output=True, timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise BadSample("audio_command_failed", f"timed out after {COMMAND_TIMEOUT_S} s") from None
        if result.returncode != 0:
            stderr = result.stderr.decode("utf-8", "replace").strip()[-120:]
            raise BadSample("audio_command_failed", f"exit status {result.returncode}: {stderr}")
        return result.stdout
    try:
        return Path(source.path).read_bytes()
    except FileNotFoundError:
        raise BadSample("missing_audio", source.path) from None
    except OSError as e:
        raise BadSample("unreadable_audio", f"{source.path}: {e}") from None


def cut_segment(recording: np.ndarray, start: float | None, end: float | None) -> np.ndarray:
    """``recording[start:end]`` (seconds, 16 kHz); an end up to ``MAX_OVERSHOOT_S`` late is clipped."""
    length = len(recording) / TARGET_SR
    start = start or 0.0
    if start < 0 or (end is not None and end <= start):
        raise BadSample("bad_segment", f"start {start} end {end}")
    if start >= length or (end is not None and end > length + MAX_OVERSHOOT_S):
        raise BadSample("bad_segment", f"[{start}, {end}] outside the recording of {length:.2f} s")
    stop = len(recording) if end is None else min(round(end * TARGET_SR), len(recording))
    return recording[round(start * TARGET_SR) : stop]


class RecordingCache:
    """Decodes recordings, keeping the last one: consecutive segments of a recording decode it once
    (and a pipe command runs once)."""

    def __init__(self) -> None:
        self._recording: str | None = None
        self._result: np.ndarray | BadSample | None = None

    def audio(self, source: AudioSource) -> np.ndarray:
        """The validated 16 kHz audio of ``source`` (cut when it has ``start``/``end``)."""
        recording = self._decoded(source)
        if source.start is None and source.end is None:
            return recording
        return decode_audio(_wav_bytes(cut_segment(recording, source.start, source.end)))

    def _decoded(self, source: AudioSource) -> np.ndarray:
        if source.recording != self._recording:
            self._recording = source.recording
            try:
                self._result = decode_audio(read_audio_bytes(source))
            except BadSample as e:
                self._result = e
        if isinstance(self._result, BadSample):
            raise BadSample(self._result.reason, self._result.detail)
        assert self._result is not None
        return self._result


def _wav_bytes(audio: np.ndarray) -> bytes:
    """A cut segment as float WAV, so that it goes through the same checks as any other audio."""
    buffer = io.BytesIO()
    sf.write(buffer, audio, TARGET_SR, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- JSONL inputs
def read_jsonl(path: Path) -> tuple[list[tuple[str, dict[str, Any]]], list[Reject]]:
    """(``FILE:LINE``, object) of every non-blank line, and rejects for lines that are not JSON objects."""
    records, rejects = [], []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path.name}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                rejects.append(Reject(where, "malformed_line", str(e)[:120]))
                continue
            if not isinstance(record, dict):
                rejects.append(Reject(where, "malformed_line", "not a JSON object"))
                continue
            records.append((where, record))
    return records, rejects


def keyed_source(where: str, record: dict[str, Any], audio_field: str,
                 base_dir: Path) -> tuple[str, AudioSource] | Reject:
    """The key and audio source of a JSONL record whose ``audio_field`` holds a path (relative to
    ``base_dir`` unless absolute) and whose optional ``start``/``end`` cut it; else its reject."""
    key = record.get("key")
    if not isinstance(key, str) or not key:
        return Reject(where, "missing_key", "no 'key' string")
    path = record.get(audio_field)
    if not isinstance(path, str) or not path:
        return Reject(key, "missing_audio", f"{where}: no {audio_field!r} path")
    try:
        start, end = (None if record.get(name) is None else float(record[name]) for name in ("start", "end"))
    except (TypeError, ValueError):
        return Reject(key, "bad_segment", f"{where}: start {record.get('start')!r} end {record.get('end')!r}")
    return key, AudioSource(path=str((base_dir / path).resolve()), start=start, end=end)


# ----------------------------------------------------------------------------- one slice
@dataclass(frozen=True)
class _SliceJob:
    out_dir: Path
    name: str
    items: list[ImportItem]
    checks: Checks
    fingerprint: str
    audio_format: str = "flac"


def _write_item(item: ImportItem, writer: ShardWriter, recordings: RecordingCache, checks: Checks) -> None:
    """Validate ``item`` and write it; ``BadSample`` with the reason when it is rejected."""
    try:
        check_key(item.key)
    except ValueError as e:
        raise BadSample("bad_key", str(e)) from None
    meta = checked_meta(item.meta, checks)
    audio = _checked_length(recordings.audio(item.audio), checks)
    history = meta.get("history")
    if item.history_audio and history is not None and (not isinstance(history, list)
                                                       or len(history) != len(item.history_audio)):
        raise BadSample("bad_history", f"{len(item.history_audio)} history clips for history {str(history)[:60]}")
    history_audio = [_other_clip(recordings, source, checks, f"history turn {i}")
                     for i, source in enumerate(item.history_audio, 1)]
    extra_audio = {name: _other_clip(recordings, source, checks, name)
                   for name, source in item.extra_audio.items()}
    writer.write(item.key, audio, TARGET_SR, meta, history_audio=history_audio or None,
                 extra_audio=extra_audio or None)


def _checked_length(audio: np.ndarray, checks: Checks, where: str = "") -> np.ndarray:
    seconds = len(audio) / TARGET_SR
    if seconds > checks.max_seconds:
        raise BadSample("too_long", f"{where}{seconds:.2f} s > {checks.max_seconds} s")
    return audio


def _other_clip(recordings: RecordingCache, source: AudioSource, checks: Checks, where: str) -> np.ndarray:
    """A history or extra clip, validated like the sample's audio; a reject's detail names the clip."""
    try:
        return _checked_length(recordings.audio(source), checks)
    except BadSample as e:
        raise BadSample(e.reason, f"{where}: {e.detail}") from None


def _import_slice(job: _SliceJob) -> dict[str, Any]:
    """Write one slice's shard, then its ``.done`` marker; returns the marker's content."""
    rejects: list[list[str]] = []
    recordings = RecordingCache()
    with ShardWriter(job.out_dir, prefix=job.name, max_samples=len(job.items), audio_format=job.audio_format) as writer:
        for item in job.items:
            try:
                _write_item(item, writer, recordings, job.checks)
            except BadSample as e:
                rejects.append([item.key, e.reason, e.detail])
    stats = [{**entry, "path": Path(entry["path"]).name} for entry in writer.stats]
    marker = {"fingerprint": job.fingerprint, "shards": [entry["path"] for entry in stats], "stats": stats,
              "rejects": rejects}
    _write_json_atomically(_marker_path(job.out_dir, job.name), marker)
    return marker


def _marker_path(out_dir: Path, name: str) -> Path:
    return out_dir / MARKER_DIR / f"{name}.done"


def _finished_marker(job: _SliceJob) -> dict[str, Any] | None:
    """The slice's marker if it matches the slice's items and checks and its shard is complete."""
    try:
        marker = json.loads(_marker_path(job.out_dir, job.name).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if marker.get("fingerprint") != job.fingerprint:
        return None
    if not all((job.out_dir / name).is_file() for name in marker["shards"]):
        return None
    return marker


def _item_content(item: ImportItem) -> dict[str, Any]:
    """What identifies an item; one without history or extra clips reads as before they existed."""
    content = dataclasses.asdict(item)
    for name in ("history_audio", "extra_audio"):
        if not content[name]:
            del content[name]
    return content


def _fingerprint(items: list[ImportItem], checks: Checks, audio_format: str) -> str:
    content = {"version": FINGERPRINT_VERSION, "checks": dataclasses.asdict(checks), "audio_format": audio_format,
               "items": [_item_content(item) for item in items]}
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- the whole import
def import_items(items: Sequence[ImportItem], out_dir: str | os.PathLike, parse_rejects: Sequence[Reject] = (),
                 checks: Checks | None = None, shard_size: int = 1000, workers: int = 1, prefix: str = "shard",
                 force: bool = False, audio_format: str = "flac") -> ImportReport:
    """Validate and write ``items`` into shards under ``out_dir`` (see the module docstring).

    ``parse_rejects`` are the inputs the importer could not turn into items; they head the rejects report.
    """
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    checks = checks or Checks()
    out_dir = Path(out_dir).resolve()
    (out_dir / MARKER_DIR).mkdir(parents=True, exist_ok=True)
    unique_items, duplicates = _split_duplicates(items)
    jobs = [_SliceJob(out_dir, f"{prefix}-{i // shard_size:06d}", chunk, checks,
                      _fingerprint(chunk, checks, audio_format), audio_format)
            for i in range(0, len(unique_items), shard_size)
            for chunk in [unique_items[i : i + shard_size]]]
    markers = {job.name: None if force else _finished_marker(job) for job in jobs}
    _remove_unowned(out_dir, prefix, markers)
    pending = [job for job in jobs if markers[job.name] is None]
    for name, marker in _run_slices(pending, workers):
        markers[name] = marker
    finished = [markers[job.name] for job in jobs]
    stats = [entry for marker in finished for entry in marker["stats"]]
    write_index(out_dir, build_index(stats))
    rejects = [*parse_rejects, *duplicates,
               *(Reject(*fields) for marker in finished for fields in marker["rejects"])]
    _write_rejects(out_dir / REJECTS_NAME, rejects)
    return ImportReport(out_dir=out_dir, shards=[str(out_dir / entry["path"]) for entry in stats],
                        samples=sum(entry["samples"] for entry in stats),
                        seconds=sum(entry["seconds"] for entry in stats), rejects=rejects,
                        slices=len(jobs), reused_slices=len(jobs) - len(pending))


def _split_duplicates(items: Sequence[ImportItem]) -> tuple[list[ImportItem], list[Reject]]:
    """The first item of each key, and a ``duplicate_key`` reject for every later one."""
    seen: set[str] = set()
    unique: list[ImportItem] = []
    duplicates: list[Reject] = []
    for item in items:
        if item.key in seen:
            duplicates.append(Reject(item.key, "duplicate_key", f"audio {item.audio.recording}"))
        else:
            seen.add(item.key)
            unique.append(item)
    return unique, duplicates


def _remove_unowned(out_dir: Path, prefix: str, markers: dict[str, dict[str, Any] | None]) -> None:
    """Delete the index, and shards, partial shards and markers of ``prefix`` that no finished slice
    owns: until the import completes, OUT has no index that could describe other shards."""
    (out_dir / INDEX_NAME).unlink(missing_ok=True)
    kept = {name for marker in markers.values() if marker for name in marker["shards"]}
    kept_markers = {f"{name}.done" for name, marker in markers.items() if marker}
    shard_name = re.compile(rf"{re.escape(prefix)}-\d+-\d+\.tar(\.tmp)?")
    marker_name = re.compile(rf"{re.escape(prefix)}-\d+\.done(\.tmp)?")
    for path in out_dir.iterdir():
        if shard_name.fullmatch(path.name) and path.name not in kept:
            path.unlink()
    for path in (out_dir / MARKER_DIR).iterdir():
        if marker_name.fullmatch(path.name) and path.name not in kept_markers:
            path.unlink()


def _run_slices(jobs: list[_SliceJob], workers: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """(slice name, marker) of every job, as they finish; ``workers > 1`` runs them in processes."""
    progress = tqdm(total=len(jobs), desc="slices", unit="shard", disable=not jobs)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield job.name, _import_slice(job)
            progress.update()
    else:
        context = multiprocessing.get_context("fork")
        with context.Pool(min(workers, len(jobs)), initializer=_init_worker) as pool:
            for job, marker in zip(jobs, pool.imap(_import_slice, jobs)):
                yield job.name, marker
                progress.update()
    progress.close()


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _write_rejects(path: Path, rejects: list[Reject]) -> None:
    lines = [json.dumps(dataclasses.asdict(reject), ensure_ascii=False) + "\n" for reject in rejects]
    tmp_path = path.with_name(f"{path.name}.tmp")
    tmp_path.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp_path, path)


def _write_json_atomically(path: Path, content: dict[str, Any]) -> None:
    tmp_path = path.with_name(f"{path.name}.tmp")
    tmp_path.write_text(json.dumps(content, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp_path, path)


# ----------------------------------------------------------------------------- command line
def run_cli(module: str, doc: str | None, source_help: str,
            read: Callable[[str], tuple[list[ImportItem], list[Reject]]], argv: list[str] | None = None) -> ImportReport:
    """The whole command line of an importer: its one input argument, the shared options, the import."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help=source_help)
    add_import_arguments(parser)
    args = parser.parse_args(argv)
    items, rejects = read(args.source)
    return import_from_args(items, rejects, args)


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every importer shares."""
    parser.add_argument("--out", required=True, help="output shard directory (owned by the import)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes, one slice at a time each (the output does not depend on it)")
    parser.add_argument("--shard-size", type=int, default=1000, help="input items per shard slice")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="reject longer samples (too_long)")
    parser.add_argument("--label-sets", choices=sorted([*LABEL_SETS, ANY_LABELS]), default="osum",
                        help="label inventories that labels must belong to (osum.tasks.labels); "
                             f"{ANY_LABELS}: canonical form only, the label sets are checked at training")
    parser.add_argument("--prefix", default="shard", help="shard file name prefix")
    parser.add_argument("--audio-format", choices=sorted(AUDIO_FORMATS), default="flac",
                        help="flac: about half the size; wav (16-bit PCM): decodes about 5x faster in training")
    parser.add_argument("--force", action="store_true", help="rewrite every slice, ignoring finished ones")


def import_from_args(items: list[ImportItem], parse_rejects: list[Reject], args: argparse.Namespace) -> ImportReport:
    """Run :func:`import_items` with the shared options and print its summary."""
    label_sets = None if args.label_sets == ANY_LABELS else dict(LABEL_SETS[args.label_sets])
    checks = Checks(max_seconds=args.max_seconds, label_sets=label_sets)
    report = import_items(items, args.out, parse_rejects, checks, args.shard_size, args.workers, args.prefix,
                          args.force, args.audio_format)
    print(report.summary())
    return report
