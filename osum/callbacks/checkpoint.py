"""Checkpoints that survive a kill: atomic writes, validation, the newest complete one, per-rank RNG state.

A checkpoint file is written under a hidden temporary name next to its final name, flushed to disk and
renamed: a reader sees the previous file or the complete new one, never a torn write. A checkpoint
directory (FSDP sharded, DeepSpeed) is written in place by its strategy; it counts as complete when the
file its writer writes last exists and nothing in the directory is newer (an interrupted overwrite of
``last.ckpt`` leaves newer shards next to the old marker).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.plugins.io import TorchCheckpointIO

log = logging.getLogger("osum")

REQUIRED_KEYS = ("state_dict", "global_step", "loops")  # in every Lightning checkpoint, weights-only too
DIR_MARKERS = ("meta.pt", "latest")  # written last: Lightning's FSDP sharded checkpoints, DeepSpeed


class CorruptCheckpointError(RuntimeError):
    """A checkpoint that cannot be read or lacks what a resume needs."""


def partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(checkpoint: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary sibling, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    with open(tmp, "wb") as f:
        torch.save(checkpoint, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def missing_keys(checkpoint: Any) -> list[str]:
    if not isinstance(checkpoint, dict):
        return list(REQUIRED_KEYS)
    return [k for k in REQUIRED_KEYS if k not in checkpoint]


def directory_problem(path: Path) -> str | None:
    """Why checkpoint directory ``path`` is incomplete, or None."""
    markers = [path / m for m in DIR_MARKERS if (path / m).is_file()]
    if not markers:
        return f"incomplete directory (none of {DIR_MARKERS})"
    newest = max(f.stat().st_mtime for f in path.rglob("*") if f.is_file())
    if markers[0].stat().st_mtime < newest:
        return f"incomplete directory (files newer than {markers[0].name})"
    return None


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` cannot be resumed from, or None. Files are opened memory-mapped (tensors stay on disk)."""
    if path.is_dir():
        return directory_problem(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as e:  # any failure to read means "not this one"
        return f"unreadable ({type(e).__name__}: {str(e)[:200]})"
    missing = missing_keys(checkpoint)
    return f"missing keys {missing}" if missing else None


def newest_valid_checkpoint(directory: Path) -> Path | None:
    """The most recently written complete checkpoint in ``directory``; broken newer ones are skipped with a warning."""
    candidates = sorted(directory.glob("*.ckpt"), key=lambda p: p.stat().st_mtime if p.exists() else 0.0, reverse=True)
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        log.warning("skipping checkpoint %s: %s", path, problem)
    return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's file checkpoint I/O with atomic writes and a check of what is read."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        write_atomically(checkpoint, Path(path))

    def load_checkpoint(self, path: str | Path, map_location: Callable | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        try:
            checkpoint = super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except FileNotFoundError:
            raise
        except Exception as e:
            raise CorruptCheckpointError(f"checkpoint {path} cannot be read: {e}") from e
        if missing := missing_keys(checkpoint):
            raise CorruptCheckpointError(f"checkpoint {path} lacks {missing}: not a complete Lightning checkpoint")
        return checkpoint


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RNGState(L.Callback):
    """Saves every rank's torch RNG state (dropout) and restores it at the first step after a resume.

    Restoring at the first step, not at load time, skips draws the resumed process makes before
    training (DataLoader iterator seeds) that the uninterrupted run made at its start.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        states = [_rng_state()]
        if dist.is_available() and dist.is_initialized():
            states = [None] * dist.get_world_size()
            dist.all_gather_object(states, _rng_state())
        checkpoint["rng_states"] = states

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states") or []
        if len(states) == trainer.world_size:
            self._pending = states[trainer.global_rank]
        else:
            log.warning("checkpoint has RNG states for %d rank(s), this run has %d: RNG not restored",
                        len(states), trainer.world_size)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._pending is not None:
            _set_rng_state(self._pending)
            self._pending = None
