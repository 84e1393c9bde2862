"""Shard sets with weights: which shards make up each epoch of a mixed training stream.

``data.train`` is either one shard-set spec (a directory, list file or glob) or a list of sets::

    train:
      - {name: asr, path: /data/asr, weight: 1.0}
      - {name: emotion, path: /data/ser, weight: 3.0, tasks: {"<TRANSCRIBE> <EMOTION>": 1, "<EMOTION>": 1}}
    temperature: 1.0

A set's share of an epoch is proportional to ``weight * size ** (1 / temperature)`` (size in hours
from the set's index, else in shards): temperature 1 keeps natural proportions times the weights,
larger temperatures flatten them towards uniform. Each epoch draws that many shard slots per set
(whole repeats plus a seeded random remainder, so a fractional weight sees different shards in
different epochs), and the union is shuffled with the epoch's seed. A set may carry its own task
mixture; otherwise ``data.tasks`` applies.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osum.data.shardlist import resolve_shards


@dataclass
class ShardSet:
    name: str
    shards: list[str]
    weight: float = 1.0
    tasks: dict[str, float] | None = None
    hours: float | None = None  # from the set's index.json, when there is one

    @property
    def size(self) -> float:
        return self.hours if self.hours else float(len(self.shards))


def _hours_of(spec: Any) -> float | None:
    index = Path(str(spec)) / "index.json"
    if isinstance(spec, str) and index.exists():
        return float(json.loads(index.read_text())["total"].get("hours") or 0) or None
    return None


def parse_sets(spec: Any) -> list[ShardSet]:
    """``data.train`` -> shard sets; a plain spec is one set named ``train``."""
    if isinstance(spec, Mapping):
        spec = [{"name": name, **dict(v)} for name, v in spec.items()]
    if isinstance(spec, str) or (isinstance(spec, list) and spec and not isinstance(spec[0], Mapping)):
        return [ShardSet("train", resolve_shards(spec), hours=_hours_of(spec))]
    sets = []
    for i, entry in enumerate(spec or []):
        entry = dict(entry)
        unknown = set(entry) - {"name", "path", "weight", "tasks"}
        if unknown or "path" not in entry:
            raise ValueError(f"data.train[{i}]: expected keys name, path, weight, tasks; got {sorted(entry)}")
        weight = float(entry.get("weight", 1.0))
        if weight < 0:
            raise ValueError(f"data.train[{i}].weight must be >= 0, got {weight}")
        sets.append(ShardSet(str(entry.get("name", f"set{i}")), resolve_shards(entry["path"]), weight,
                             dict(entry["tasks"]) if entry.get("tasks") else None, _hours_of(entry["path"])))
    return sets


def slot_counts(sets: list[ShardSet], temperature: float = 1.0) -> list[float]:
    """Expected shard slots per epoch for each set (the total equals the total number of shards)."""
    if temperature <= 0:
        raise ValueError(f"data.temperature must be > 0, got {temperature}")
    mass = [s.weight * s.size ** (1.0 / temperature) for s in sets]
    total_mass, total_shards = sum(mass), sum(len(s.shards) for s in sets)
    if total_mass <= 0:
        raise ValueError("data.train: every shard set has weight 0")
    per_unit = [m / total_mass * total_shards for m in mass]
    return per_unit


def epoch_shards(sets: list[ShardSet], epoch: int, seed: int, temperature: float = 1.0) -> list[str]:
    """The shard list of one epoch: each set's slots drawn with the epoch's seed (unshuffled)."""
    out: list[str] = []
    for s, slots in zip(sets, slot_counts(sets, temperature)):
        rng = random.Random(f"{seed}:{epoch}:{s.name}")
        whole, frac = divmod(slots, len(s.shards))
        out += s.shards * int(whole)
        extra = math.floor(frac) + (1 if rng.random() < frac - math.floor(frac) else 0)
        out += rng.sample(s.shards, min(extra, len(s.shards)))
    return out


def shares(sets: list[ShardSet], temperature: float = 1.0) -> dict[str, float]:
    """Expected share of each set in the audio of an epoch."""
    slots = slot_counts(sets, temperature)
    audio = [n * (s.size / len(s.shards)) for s, n in zip(sets, slots)]
    total = sum(audio)
    return {s.name: a / total for s, a in zip(sets, audio)}
