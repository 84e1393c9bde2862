"""The shards of shard sets, and the decoded audio clips in them (what the codebook is fitted on)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from osum.data.audio import decode_audio
from osum.data.reader import read_shard
from osum.data.skips import BadSample, SkipCounter


def list_shards(paths: Iterable[str | Path]) -> list[Path]:
    """Tar files named directly, and the ``shard-*.tar`` (else ``*.tar``) of directories, in order."""
    shards: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.glob("shard-*.tar")) or sorted(path.glob("*.tar"))
            if not found:
                raise FileNotFoundError(f"{path}: no shard-*.tar shards in this directory")
            shards += found
        elif path.is_file():
            shards.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such shard or shard directory")
    return shards


def iter_clips(shards: Iterable[str | Path], skips: SkipCounter, max_clips: int | None = None) -> Iterator[np.ndarray]:
    """The 16 kHz audio of every sample with audio, in shard order, up to ``max_clips``; samples whose audio
    cannot be used are counted in ``skips`` by reason, shard and key."""
    n = 0
    if max_clips is not None and max_clips <= 0:
        return
    for shard in shards:
        for raw in read_shard(str(shard), skips):
            if raw.audio is None:
                continue
            try:
                audio = decode_audio(raw.audio)
            except BadSample as e:
                skips.skip(e.reason, Path(shard).name, raw.key, e.detail)
                continue
            n += 1
            yield audio
            if max_clips is not None and n >= max_clips:
                return
