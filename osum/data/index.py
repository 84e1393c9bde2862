"""The shard-set index (``index.json``): per-shard sample counts, hours, task/label/domain counts.

Mixing weights, epoch sizes and length-bucket bins are read from the index instead of scanning
shards. ``index.json`` lives in the shard directory and names shards relative to it::

    {"version": 1,
     "shards": [{"path": "shard-000000.tar", "samples": n, "seconds": s, "tasks": {...},
                 "labels": {"gender": {"MALE": n, ...}, "events": {...}}, "domains": {...},
                 "field_sets": {"audio,labels.gender,txt": n, ...},
                 "seconds_by": {"tasks": {...}, "labels": {"gender": {"MALE": s}}, "domains": {...}},
                 "duration_hist": {"edges": [0, 1, ..., 30, null], "counts": [...]}}],
     "total": {same fields summed, plus "hours"}}

``field_sets`` counts the samples without their own ``task`` by the set of task fields they hold
(``osum.tasks.registry.sample_keys``, plus ``audio``), so that the printed task shares say what samples
really serve (``osum.data.mixture_report``). ``seconds_by`` holds the audio seconds behind each count
(not for ``field_sets``). The last histogram edge is ``null``
(infinity). ``python -m osum.data.index summary DIR [DIR ...]`` prints the summary of shard sets;
``python -m osum.data.index rebuild DIR`` writes ``DIR/index.json`` from the shards in ``DIR``.
"""

from __future__ import annotations

import argparse
import bisect
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import soundfile as sf

from osum.data.reader import read_shard
from osum.data.skips import SkipCounter
from osum.tasks.registry import sample_keys

INDEX_VERSION = 1
INDEX_NAME = "index.json"
DURATION_EDGES: list[float | None] = [0, 1, 2, 3, 4, 5, 7.5, 10, 15, 20, 30, None]
_FINITE_EDGES = [float(e) for e in DURATION_EDGES[:-1]]
_COUNT_FIELDS = ("tasks", "domains")  # with seconds_by


def new_shard_stats(path: str) -> dict[str, Any]:
    """Empty per-shard counters, filled by :func:`add_sample`."""
    return {"path": path, "samples": 0, "seconds": 0.0, "tasks": {}, "labels": {}, "domains": {}, "field_sets": {},
            "seconds_by": {"tasks": {}, "labels": {}, "domains": {}}, "durations": []}


def add_sample(stats: dict[str, Any], meta: dict[str, Any]) -> None:
    """Count one sample's JSON ``meta`` into ``stats`` (task, labels, domain, duration)."""
    stats["samples"] += 1
    seconds = float(meta["duration"]) if meta.get("duration") is not None else 0.0
    if meta.get("duration") is not None:
        stats["seconds"] += seconds
        stats["durations"].append(seconds)
    seconds_by = stats["seconds_by"]
    if meta.get("task"):
        _bump(stats["tasks"], str(meta["task"]))
        _add(seconds_by["tasks"], str(meta["task"]), seconds)
    else:
        _bump(stats["field_sets"], field_set(meta))
    if meta.get("domain"):
        _bump(stats["domains"], str(meta["domain"]))
        _add(seconds_by["domains"], str(meta["domain"]), seconds)
    for kind, value in (meta.get("labels") or {}).items():
        kind_counts = stats["labels"].setdefault(kind, {})
        kind_seconds = seconds_by["labels"].setdefault(kind, {})
        for label in value if isinstance(value, list) else [value]:
            if label is not None:
                _bump(kind_counts, str(label))
                _add(kind_seconds, str(label), seconds)


def field_set(meta: dict[str, Any]) -> str:
    """The task fields a sample holds, as an index key: ``"audio,labels.gender,txt"`` (sorted)."""
    return ",".join(sorted(sample_keys(meta) + (["audio"] if meta.get("duration") is not None else [])))


def build_index(shard_stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Index dict from per-shard stats (``ShardWriter.stats`` or :func:`index_from_shards`)."""
    shards = [_shard_entry(stats) for stats in shard_stats]
    return {"version": INDEX_VERSION, "shards": shards, "total": _total(shards)}


def combine_indexes(indexes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One index over several shard sets (``{directory: index}``); shard paths gain the directory."""
    shards = [{**entry, "path": os.path.join(directory, entry["path"])}
              for directory, index in indexes.items() for entry in index["shards"]]
    return {"version": INDEX_VERSION, "shards": shards, "total": _total(shards)}


def write_index(out_dir: str | os.PathLike, index: dict[str, Any]) -> Path:
    """Write ``out_dir/index.json`` atomically; absolute shard paths become relative to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = [{**entry, "path": _relative_to(entry["path"], out_dir)} for entry in index["shards"]]
    path = out_dir / INDEX_NAME
    tmp_path = path.with_name(f"{INDEX_NAME}.tmp")
    tmp_path.write_text(json.dumps({**index, "shards": shards}, indent=1, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    os.replace(tmp_path, path)
    return path


def read_index(path_or_dir: str | os.PathLike) -> dict[str, Any]:
    """Load an ``index.json`` (or the one inside a directory); shard paths stay relative to it."""
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / INDEX_NAME
    index = json.loads(path.read_text(encoding="utf-8"))
    if index.get("version") != INDEX_VERSION:
        raise ValueError(f"{path}: unsupported index version {index.get('version')!r}")
    return index


def index_from_shards(paths: Iterable[str | os.PathLike]) -> dict[str, Any]:
    """Rebuild an index by reading existing tars through the shard reader: the JSON of our shards, the
    members of original OSUM shards (their task; the duration from the audio header when no member
    gives it). Samples the reader cannot use are left out and reported."""
    all_stats = []
    for path in paths:
        stats = new_shard_stats(str(Path(path).resolve()))
        skips = SkipCounter()
        for raw in read_shard(str(path), skips):
            meta = dict(raw.meta)
            if meta.get("duration") is None and raw.audio:
                try:
                    meta["duration"] = sf.info(io.BytesIO(raw.audio)).duration
                except (sf.LibsndfileError, RuntimeError, TypeError):
                    pass  # undecodable audio: counted without a duration; training will skip it
            add_sample(stats, meta)
        if skips.total:
            print(f"{path}: {skips.summary()}")
        all_stats.append(stats)
    return build_index(all_stats)


def summary(index: dict[str, Any]) -> str:
    """Readable table of an index: samples, hours, per task / domain / label counts and hours,
    duration percentiles. Indexes written before ``seconds_by`` existed show counts only."""
    total = index["total"]
    seconds_by = total.get("seconds_by", {})
    lines = [f"shards   {len(index['shards'])}",
             f"samples  {total['samples']}",
             f"hours    {total['hours']:.4f}  ({total['seconds']:.1f} s)"]
    sections = [("task", total["tasks"], seconds_by.get("tasks")),
                ("domain", total["domains"], seconds_by.get("domains")),
                ("fields (samples without their own task)", total.get("field_sets", {}), None)]
    sections += [(kind, counts, seconds_by.get("labels", {}).get(kind))
                 for kind, counts in sorted(total["labels"].items())]
    for name, counts, seconds in sections:
        if counts:
            lines.append(f"{name}:")
            lines += _count_lines(counts, seconds)
    percentiles = _hist_percentiles(total["duration_hist"], (10, 50, 90, 99))
    if percentiles:
        text = "  ".join(f"p{p} {value}" for p, value in percentiles.items())
        lines.append(f"duration (approximate, interpolated in histogram bins): {text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m osum.data.index",
                                     description="Summarize shard sets or rebuild their index.json.")
    commands = parser.add_subparsers(dest="command", required=True)
    summary_parser = commands.add_parser("summary", help="print the summary of one or more shard directories")
    summary_parser.add_argument("dirs", nargs="+", metavar="DIR", help="directory holding index.json")
    rebuild_parser = commands.add_parser("rebuild", help="write DIR/index.json by scanning DIR/*.tar")
    rebuild_parser.add_argument("dir", metavar="DIR")
    args = parser.parse_args(argv)
    if args.command == "rebuild":
        print(summary(rebuild(args.dir)))
        return
    indexes = {directory: read_index(directory) for directory in args.dirs}
    for directory, index in indexes.items():
        print(f"== {directory}\n{summary(index)}")
    if len(indexes) > 1:
        print(f"== all {len(indexes)} directories\n{summary(combine_indexes(indexes))}")


def rebuild(directory: str | os.PathLike) -> dict[str, Any]:
    """Scan ``directory/*.tar`` and write ``directory/index.json``; returns the index."""
    shards = sorted(Path(directory).glob("*.tar"))
    if not shards:
        raise FileNotFoundError(f"no *.tar shards in {directory}")
    index = index_from_shards(shards)
    write_index(directory, index)
    return read_index(directory)


def _shard_entry(stats: dict[str, Any]) -> dict[str, Any]:
    counts = [0] * (len(DURATION_EDGES) - 1)
    for duration in stats["durations"]:
        counts[max(bisect.bisect_right(_FINITE_EDGES, duration) - 1, 0)] += 1
    return {"path": stats["path"], "samples": stats["samples"], "seconds": round(stats["seconds"], 3),
            "tasks": dict(sorted(stats["tasks"].items())),
            "labels": {kind: dict(sorted(c.items())) for kind, c in sorted(stats["labels"].items())},
            "domains": dict(sorted(stats["domains"].items())),
            "field_sets": dict(sorted(stats["field_sets"].items())),
            "seconds_by": _rounded_seconds_by(stats["seconds_by"]),
            "duration_hist": {"edges": list(DURATION_EDGES), "counts": counts}}


def _total(shards: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum of shard entries; entries without ``seconds_by`` (older indexes) add counts only."""
    total: dict[str, Any] = {"samples": 0, "seconds": 0.0, "tasks": {}, "labels": {}, "domains": {}, "field_sets": {},
                             "seconds_by": {"tasks": {}, "labels": {}, "domains": {}},
                             "duration_hist": {"edges": list(DURATION_EDGES),
                                               "counts": [0] * (len(DURATION_EDGES) - 1)}}
    for entry in shards:
        total["samples"] += entry["samples"]
        total["seconds"] += entry["seconds"]
        for field in _COUNT_FIELDS:
            _merge(total[field], entry[field])
        _merge(total["field_sets"], entry.get("field_sets", {}))  # older indexes have none
        for kind, counts in entry["labels"].items():
            _merge(total["labels"].setdefault(kind, {}), counts)
        seconds_by = entry.get("seconds_by", {})
        for field in _COUNT_FIELDS:
            _merge(total["seconds_by"][field], seconds_by.get(field, {}))
        for kind, seconds in seconds_by.get("labels", {}).items():
            _merge(total["seconds_by"]["labels"].setdefault(kind, {}), seconds)
        hist = total["duration_hist"]["counts"]
        for i, n in enumerate(entry["duration_hist"]["counts"]):
            hist[i] += n
    total["seconds"] = round(total["seconds"], 3)
    total["hours"] = round(total["seconds"] / 3600.0, 4)
    total["seconds_by"] = _rounded_seconds_by(total["seconds_by"])
    return total


def _count_lines(counts: dict[str, int], seconds: dict[str, float] | None) -> list[str]:
    """One line per name: count, share of the counts, and hours when ``seconds`` is known."""
    n_all = sum(counts.values())
    lines = []
    for name, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        hours = f"  {seconds[name] / 3600.0:9.4f} h" if seconds and name in seconds else ""
        lines.append(f"  {name:<24} {n:>8}  {100.0 * n / n_all:5.1f}%{hours}")
    return lines


def _rounded_seconds_by(seconds_by: dict[str, Any]) -> dict[str, Any]:
    """``seconds_by`` with names sorted and seconds rounded to milliseconds."""
    def rounded(seconds: dict[str, float]) -> dict[str, float]:
        return {name: round(value, 3) for name, value in sorted(seconds.items())}

    return {"tasks": rounded(seconds_by["tasks"]), "domains": rounded(seconds_by["domains"]),
            "labels": {kind: rounded(seconds) for kind, seconds in sorted(seconds_by["labels"].items())}}


def hist_quantile(hist: dict[str, Any], q: float) -> float | None:
    """Duration (s) below which a fraction ``q`` of the samples lie, interpolated inside histogram bins;
    ``None`` for an empty histogram, ``inf`` when it falls in the open last bin."""
    counts, edges = hist["counts"], hist["edges"]
    n_all = sum(counts)
    if n_all == 0:
        return None
    target, below = q * n_all, 0
    for i, n in enumerate(counts):
        if n and below + n >= target:
            if edges[i + 1] is None:
                return float("inf")
            return edges[i] + (edges[i + 1] - edges[i]) * (target - below) / n
        below += n
    return None


def entries_for(shards: Iterable[str]) -> list[dict[str, Any]] | None:
    """The index entries of ``shards`` (from the ``index.json`` next to each), or ``None`` when any
    shard has no index entry (remote shards, a plain directory of tars)."""
    by_dir: dict[Path, dict[str, dict[str, Any]]] = {}
    entries = []
    for shard in shards:
        path = Path(shard)
        if path.parent not in by_dir:
            file = path.parent / INDEX_NAME
            by_dir[path.parent] = {e["path"]: e for e in read_index(file)["shards"]} if file.is_file() else {}
        entry = by_dir[path.parent].get(path.name)
        if entry is None:
            return None
        entries.append(entry)
    return entries


def duration_bounds(entries: list[dict[str, Any]], groups: int) -> list[float]:
    """Inner bucket bounds (s) that split the samples of index ``entries`` into ``groups`` equal-count
    length buckets, from their duration histograms (no audio is read)."""
    total = _total(entries)
    bounds = [hist_quantile(total["duration_hist"], k / groups) for k in range(1, groups)]
    return sorted({round(b, 3) for b in bounds if b is not None and b != float("inf")})


def _hist_percentiles(hist: dict[str, Any], percents: Iterable[int]) -> dict[int, str]:
    result = {}
    for p in percents:
        value = hist_quantile(hist, p / 100.0)
        if value is not None:
            last_edge = hist["edges"][-2]
            result[p] = f">{last_edge:g} s" if value == float("inf") else f"{value:.1f} s"
    return result


def _relative_to(path: str, root: Path) -> str:
    return os.path.relpath(path, root) if os.path.isabs(path) else path


def _bump(counts: dict[str, int], name: str) -> None:
    counts[name] = counts.get(name, 0) + 1


def _add(seconds: dict[str, float], name: str, value: float) -> None:
    seconds[name] = seconds.get(name, 0.0) + value


def _merge(into: dict[str, Any], counts: dict[str, Any]) -> None:
    for name, n in counts.items():
        into[name] = into.get(name, 0) + n


if __name__ == "__main__":
    main()
