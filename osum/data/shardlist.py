"""Resolving a shard-set spec (directory, list file, glob, or list of paths) into shard paths."""

from __future__ import annotations

import glob
import json
from pathlib import Path


def resolve_shards(spec: str | list[str]) -> list[str]:
    """Paths of every shard named by ``spec``; a missing file fails here, with the list of what is missing.

    A directory gives the shards of its ``index.json`` (or all ``*.tar`` in it); a ``.txt`` file lists
    one shard per line; a pattern with ``*`` is globbed; URLs (``pipe:``, ``s3://`` ...) pass through.
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    shards: list[str] = []
    for s in specs:
        s = str(s)
        p = Path(s)
        if s.startswith("pipe:") or "://" in s:
            shards.append(s)
        elif p.is_dir():
            index = p / "index.json"
            if index.exists():
                shards += [str(p / e["path"]) for e in json.loads(index.read_text())["shards"]]
            else:
                shards += sorted(str(x) for x in p.glob("*.tar"))
        elif p.suffix == ".txt" and p.exists():
            lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
            shards += [ln if Path(ln).is_absolute() or "://" in ln or ln.startswith("pipe:") else str(p.parent / ln)
                       for ln in lines]
        elif any(c in s for c in "*?["):
            shards += sorted(glob.glob(s))
        else:
            shards.append(s)
    missing = [s for s in shards if not (s.startswith("pipe:") or "://" in s) and not Path(s).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(shards)} shard(s) missing: {missing[:20]}")
    if not shards:
        raise FileNotFoundError(f"no shards found for {spec!r}")
    return shards
