"""Reads every sample of a shard folder back as (16 kHz audio, meta), in key order, for corpus tests."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf


def read_samples(split_dir: Path) -> list[tuple[np.ndarray, dict[str, Any]]]:
    samples = []
    for shard in sorted(split_dir.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name in sorted(n for n in members if n.endswith(".json")):
            key = name[: -len(".json")]
            audio, sr = sf.read(io.BytesIO(members[f"{key}.flac"]), dtype="float32")
            assert sr == 16000
            samples.append((audio, json.loads(members[name])))
    return samples
