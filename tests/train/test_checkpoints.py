"""Atomic checkpoints: a kill during a save leaves the previous checkpoint loadable; `ckpt_path=auto` skips
broken ones with a warning; a broken explicit checkpoint is refused by name."""

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from osum.callbacks.checkpoint import (
    AtomicCheckpointIO,
    CorruptCheckpointError,
    checkpoint_problem,
    partial_path,
)
from osum.train import resolve_ckpt

ROOT = Path(__file__).resolve().parents[2]

SAVE_FOREVER = """
import sys, torch
from osum.callbacks.checkpoint import AtomicCheckpointIO
io, weights = AtomicCheckpointIO(), torch.zeros(4 * 2**20)
for step in range(10**9):
    io.save_checkpoint({"state_dict": {"w": weights + step}, "global_step": step, "loops": {}}, sys.argv[1])
"""


def test_kill_during_save_leaves_the_previous_checkpoint(tmp_path, wait_until):
    path = tmp_path / "last.ckpt"
    out = open(tmp_path / "saver.out", "w")
    proc = subprocess.Popen([sys.executable, "-c", SAVE_FOREVER, str(path)], stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.out = out
    wait_until(path.exists, proc)
    wait_until(partial_path(path).exists, proc)  # the next save is being written
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint_problem(path) is None
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["state_dict"]["w"][0] == ckpt["global_step"]


def write(path: Path, age: int, **checkpoint) -> None:
    """``torch.save`` with a modification time ``age`` seconds in the past."""
    torch.save(checkpoint, path)
    os.utime(path, (1e9 - age, 1e9 - age))


def test_auto_takes_the_newest_complete_checkpoint(tmp_path, caplog):
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    write(ckpts / "step0000002.ckpt", 40, state_dict={}, global_step=2, loops={})
    write(ckpts / "last.ckpt", 30, state_dict={}, global_step=2, loops={})
    with open(ckpts / "last.ckpt", "r+b") as f:  # a torn write, newer
        f.truncate(300)
    write(ckpts / "step0000004.ckpt", 20, state_dict={})  # not a Lightning checkpoint
    (ckpts / "step0000006.ckpt").mkdir()  # a sharded checkpoint directory without its final marker
    torn = ckpts / "step0000008.ckpt"  # an overwrite in place: shards newer than the old marker
    torn.mkdir()
    write(torn / "meta.pt", 10, global_step=8)
    write(torn / "shard0.distcp", 5)
    with caplog.at_level(logging.WARNING, logger="osum"):
        assert resolve_ckpt("auto", tmp_path) == str(ckpts / "step0000002.ckpt")
    skipped = " ".join(r.getMessage() for r in caplog.records)
    assert all(f"{n}.ckpt" in skipped for n in ("last", "step0000004", "step0000006", "step0000008"))
    write(torn / "meta.pt", 0, global_step=8)  # the marker written last: complete
    assert checkpoint_problem(torn) is None


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_explicit_broken_checkpoint_is_refused_by_name(tmp_path, content):
    path = tmp_path / "x.ckpt"
    if content is None:
        torch.save({"state_dict": {}}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CorruptCheckpointError, match="x.ckpt"):
        AtomicCheckpointIO().load_checkpoint(path)
