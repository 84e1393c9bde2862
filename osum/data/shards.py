"""Write WebDataset-layout tar shards: ``KEY.flac`` (16 kHz mono) + ``KEY.json`` per sample.

Every importer (synthetic corpus, Kaldi dirs, JSONL, original OSUM lists) writes through
:class:`ShardWriter`, so the layout and the JSON schema (design section 3) have one writer.
Shards are byte-identical for identical input: fixed member order, ``mtime=0``, no owner names.
A shard is written to ``NAME.tar.tmp`` and renamed to ``NAME.tar`` only once complete.
"""

from __future__ import annotations

import functools
import io
import json
import os
import tarfile
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio.transforms

from osum.data.index import add_sample, new_shard_stats

SAMPLE_RATE = 16000


def resample_to_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """``audio`` (float32 mono) at 16 kHz; returned unchanged when already at 16 kHz."""
    if sample_rate == SAMPLE_RATE:
        return audio
    wave = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    with torch.no_grad():
        return _resampler(sample_rate)(wave).numpy()


@functools.cache
def _resampler(sample_rate: int) -> torchaudio.transforms.Resample:
    """Resampler to 16 kHz with its windowed-sinc kernel computed once per input rate."""
    return torchaudio.transforms.Resample(sample_rate, SAMPLE_RATE)


# How shards store audio: FLAC is about half the size; 16-bit PCM WAV decodes about 5x faster
# (osum.data.audio reads it without a codec), which is what a data-bound CPU pipeline needs.
AUDIO_FORMATS = {"flac": "FLAC", "wav": "WAV"}


def check_audio_format(audio_format: str) -> str:
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {sorted(AUDIO_FORMATS)}, got {audio_format!r}")
    return audio_format


def audio_bytes(audio: np.ndarray, sr: int, audio_format: str = "flac") -> bytes:
    """Encode float mono ``audio`` at ``sr`` Hz as 16-bit FLAC or WAV (values clipped to [-1, 1])."""
    check_audio_format(audio_format)
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), sr, format=AUDIO_FORMATS[audio_format], subtype="PCM_16")
    return buffer.getvalue()


def check_key(key: str) -> None:
    """Raise ValueError unless ``key`` is usable as a WebDataset key (non-empty, no '.')."""
    if not key or "." in key:
        raise ValueError(f"bad sample key {key!r}: keys must be non-empty and contain no '.'")


class ShardWriter:
    """Context manager that writes samples into ``{prefix}-{i:06d}.tar`` shards of ``max_samples``.

    ``shards`` lists the completed shard paths; ``stats`` holds one dict per completed shard
    (samples, seconds, per-task / per-label / per-domain counts, durations) for
    :func:`osum.data.index.build_index`.
    """

    def __init__(self, out_dir: str | os.PathLike, prefix: str = "shard", max_samples: int = 1000,
                 audio_format: str = "flac"):
        if max_samples < 1:
            raise ValueError("max_samples must be >= 1")
        self.audio_format = check_audio_format(audio_format)  # fail here, not at the first sample
        self.out_dir = Path(out_dir).resolve()
        self.prefix = prefix
        self.max_samples = max_samples
        self.shards: list[str] = []
        self.stats: list[dict[str, Any]] = []
        self._tar: tarfile.TarFile | None = None
        self._current: dict[str, Any] | None = None

    def __enter__(self) -> ShardWriter:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()

    def write(self, key: str, audio: np.ndarray, sample_rate: int, meta: dict[str, Any],
              history_audio: list[np.ndarray] | None = None,
              extra_audio: dict[str, np.ndarray] | None = None) -> None:
        """Write ``KEY.flac`` or ``KEY.wav`` (resampled to 16 kHz) and ``KEY.json`` (meta + key + duration).

        ``history_audio``: the user audio of earlier turns 1..n of a dialogue, written as ``KEY.flac_i``
        (or ``.wav_i``) and named in ``meta["history"][i - 1]["audio"]`` (entries made when absent).
        ``extra_audio``: more clips by member name (no dot), e.g. the assistant's reply audio ``reply_flac``."""
        check_key(key)
        data, n_samples = self._encoded(key, audio, sample_rate)
        members = [(self.audio_format, data)]
        record = {**meta, "key": key, "duration": n_samples / SAMPLE_RATE}
        if history_audio:
            history = [dict(h) for h in meta.get("history") or [{} for _ in history_audio]]
            if len(history) != len(history_audio):
                raise ValueError(f"{key}: {len(history_audio)} history clips for {len(history)} history turns")
            for i, (turn, clip) in enumerate(zip(history, history_audio), 1):
                turn["audio"] = f"{self.audio_format}_{i}"
                members.append((turn["audio"], self._encoded(key, clip, sample_rate)[0]))
            record["history"] = history
        for name, clip in (extra_audio or {}).items():
            if "." in name or name in dict(members):
                raise ValueError(f"{key}: extra audio member {name!r} must be a new name without a dot")
            members.append((name, self._encoded(key, clip, sample_rate)[0]))
        self._add_members(key, members, record)

    def _encoded(self, key: str, audio: np.ndarray, sample_rate: int) -> tuple[bytes, int]:
        """The clip's bytes at 16 kHz in the shard's audio format, and its length in samples."""
        if audio.ndim != 1:
            raise ValueError(f"{key}: audio must be mono (1-D), got shape {audio.shape}")
        audio_16k = resample_to_16k(audio.astype(np.float32, copy=False), sample_rate)
        return audio_bytes(audio_16k, SAMPLE_RATE, self.audio_format), len(audio_16k)

    def write_text_only(self, key: str, meta: dict[str, Any]) -> None:
        """Write a sample without audio (only ``KEY.json``, with ``key`` filled in)."""
        check_key(key)
        self._add_members(key, [], {**meta, "key": key})

    def close(self) -> None:
        """Finish the open shard (rename ``.tar.tmp`` -> ``.tar``)."""
        if self._tar is None or self._current is None:
            return
        self._tar.close()
        final_path = self._shard_path(len(self.shards))
        os.replace(f"{final_path}.tmp", final_path)
        self.shards.append(str(final_path))
        self.stats.append(self._current)
        self._tar = None
        self._current = None

    def _add_members(self, key: str, payloads: list[tuple[str, bytes]], record: dict[str, Any]) -> None:
        if self._tar is None:
            self._open()
        assert self._tar is not None and self._current is not None
        json_bytes = json.dumps(record, ensure_ascii=False).encode("utf-8")
        for ext, data in [*payloads, ("json", json_bytes)]:
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            self._tar.addfile(info, io.BytesIO(data))
        add_sample(self._current, record)
        if self._current["samples"] >= self.max_samples:
            self.close()

    def _open(self) -> None:
        final_path = self._shard_path(len(self.shards))
        self._tar = tarfile.open(f"{final_path}.tmp", "w", format=tarfile.PAX_FORMAT)
        self._current = new_shard_stats(str(final_path))

    def _abort(self) -> None:
        if self._tar is not None:
            self._tar.close()
            Path(f"{self._shard_path(len(self.shards))}.tmp").unlink(missing_ok=True)
        self._tar = None
        self._current = None

    def _shard_path(self, index: int) -> Path:
        return self.out_dir / f"{self.prefix}-{index:06d}.tar"
