"""The shard-set index (``index.json``): per-shard sample counts, hours, task/label/domain counts.

Mixing weights, epoch sizes and length-bucket bins are read from the index instead of scanning
shards. ``index.json`` lives in the shard directory and names shards relative to it::

    {"version": 1,
     "shards": [{"path": "shard-000000.tar", "samples": n, "seconds": s, "tasks": {...},
                 "labels": {"gender": {"MALE": n, ...}, "events": {...}}, "domains": {...},
                 "duration_hist": {"edges": [0, 1, ..., 30, null], "counts": [...]}}],
     "total": {same fields summed, plus "hours"}}

The last histogram edge is ``null`` (infinity).
"""

from __future__ import annotations

import bisect
import json
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

INDEX_VERSION = 1
INDEX_NAME = "index.json"
DURATION_EDGES: list[float | None] = [0, 1, 2, 3, 4, 5, 7.5, 10, 15, 20, 30, None]
_FINITE_EDGES = [float(e) for e in DURATION_EDGES[:-1]]
_COUNT_FIELDS = ("tasks", "domains")


def new_shard_stats(path: str) -> dict[str, Any]:
    """Empty per-shard counters, filled by :func:`add_sample`."""
    return {"path": path, "samples": 0, "seconds": 0.0, "tasks": {}, "labels": {}, "domains": {},
            "durations": []}


def add_sample(stats: dict[str, Any], meta: dict[str, Any]) -> None:
    """Count one sample's JSON ``meta`` into ``stats`` (task, labels, domain, duration)."""
    stats["samples"] += 1
    if meta.get("duration") is not None:
        stats["seconds"] += float(meta["duration"])
        stats["durations"].append(float(meta["duration"]))
    if meta.get("task"):
        _bump(stats["tasks"], str(meta["task"]))
    if meta.get("domain"):
        _bump(stats["domains"], str(meta["domain"]))
    for kind, value in (meta.get("labels") or {}).items():
        kind_counts = stats["labels"].setdefault(kind, {})
        for label in value if isinstance(value, list) else [value]:
            if label is not None:
                _bump(kind_counts, str(label))


def build_index(shard_stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Index dict from per-shard stats (``ShardWriter.stats`` or :func:`index_from_shards`)."""
    shards = [_shard_entry(stats) for stats in shard_stats]
    total: dict[str, Any] = {"samples": 0, "seconds": 0.0, "tasks": {}, "labels": {}, "domains": {},
                             "duration_hist": {"edges": list(DURATION_EDGES),
                                               "counts": [0] * (len(DURATION_EDGES) - 1)}}
    for entry in shards:
        total["samples"] += entry["samples"]
        total["seconds"] += entry["seconds"]
        for field in _COUNT_FIELDS:
            _merge(total[field], entry[field])
        for kind, counts in entry["labels"].items():
            _merge(total["labels"].setdefault(kind, {}), counts)
        hist = total["duration_hist"]["counts"]
        for i, n in enumerate(entry["duration_hist"]["counts"]):
            hist[i] += n
    total["seconds"] = round(total["seconds"], 3)
    total["hours"] = round(total["seconds"] / 3600.0, 4)
    return {"version": INDEX_VERSION, "shards": shards, "total": total}


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
    """Rebuild an index by scanning existing tars; only the ``.json`` members are read.

    A key without a JSON member still counts as a sample (with no duration or labels).
    """
    all_stats = []
    for path in paths:
        stats = new_shard_stats(str(Path(path).resolve()))
        keys_with_json: set[str] = set()
        all_keys: list[str] = []
        with tarfile.open(path, "r") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = _split_member_name(member.name)
                if not all_keys or all_keys[-1] != key:
                    all_keys.append(key)
                if ext == "json":
                    file = tar.extractfile(member)
                    assert file is not None
                    add_sample(stats, json.loads(file.read().decode("utf-8")))
                    keys_with_json.add(key)
        stats["samples"] += len(set(all_keys) - keys_with_json)
        all_stats.append(stats)
    return build_index(all_stats)


def summary(index: dict[str, Any]) -> str:
    """Readable table of an index: samples, hours, label and domain counts, duration percentiles."""
    total = index["total"]
    lines = [f"shards   {len(index['shards'])}",
             f"samples  {total['samples']}",
             f"hours    {total['hours']:.3f}  ({total['seconds']:.1f} s)"]
    sections = [("task", total["tasks"]), ("domain", total["domains"])]
    sections += [(kind, counts) for kind, counts in sorted(total["labels"].items())]
    for name, counts in sections:
        if not counts:
            continue
        lines.append(f"{name}:")
        n_all = sum(counts.values())
        for label, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"  {label:<24} {n:>8}  {100.0 * n / n_all:5.1f}%")
    percentiles = _hist_percentiles(total["duration_hist"], (10, 50, 90, 99))
    if percentiles:
        text = "  ".join(f"p{p} {value}" for p, value in percentiles.items())
        lines.append(f"duration (approximate, interpolated in histogram bins): {text}")
    return "\n".join(lines)


def _shard_entry(stats: dict[str, Any]) -> dict[str, Any]:
    counts = [0] * (len(DURATION_EDGES) - 1)
    for duration in stats["durations"]:
        counts[max(bisect.bisect_right(_FINITE_EDGES, duration) - 1, 0)] += 1
    return {"path": stats["path"], "samples": stats["samples"], "seconds": round(stats["seconds"], 3),
            "tasks": dict(sorted(stats["tasks"].items())),
            "labels": {kind: dict(sorted(c.items())) for kind, c in sorted(stats["labels"].items())},
            "domains": dict(sorted(stats["domains"].items())),
            "duration_hist": {"edges": list(DURATION_EDGES), "counts": counts}}


def _hist_percentiles(hist: dict[str, Any], percents: Iterable[int]) -> dict[int, str]:
    counts, edges = hist["counts"], hist["edges"]
    n_all = sum(counts)
    if n_all == 0:
        return {}
    result = {}
    for p in percents:
        target = p / 100.0 * n_all
        below = 0
        for i, n in enumerate(counts):
            if n and below + n >= target:
                if edges[i + 1] is None:
                    result[p] = f">{edges[i]:g} s"
                else:
                    value = edges[i] + (edges[i + 1] - edges[i]) * (target - below) / n
                    result[p] = f"{value:.1f} s"
                break
            below += n
    return result


def _split_member_name(name: str) -> tuple[str, str]:
    """WebDataset convention: the key ends at the first '.' of the file name."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext


def _relative_to(path: str, root: Path) -> str:
    return os.path.relpath(path, root) if os.path.isabs(path) else path


def _bump(counts: dict[str, int], name: str) -> None:
    counts[name] = counts.get(name, 0) + 1


def _merge(into: dict[str, int], counts: dict[str, int]) -> None:
    for name, n in counts.items():
        into[name] = into.get(name, 0) + n
