"""What the synthetic corpus builders (mini, smol) share about files: rebuilding only when the arguments
changed, rendering a split in worker processes into shards plus ``index.json``, writing ``corpus.json``."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.pool
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from osum.data.index import build_index, write_index
from osum.data.shards import SAMPLE_RATE, ShardWriter

SHARD_SIZE = 500
CORPUS_FILE = "corpus.json"

RenderChunk = Callable[[list[dict[str, Any]]], list[tuple[np.ndarray, dict[str, Any]]]]


def previous_build(out: Path, args: dict[str, Any], force: bool) -> dict[str, Any] | None:
    """The ``corpus.json`` of an earlier build of ``out`` with the same arguments (None: build again)."""
    path = out / CORPUS_FILE
    if force or not path.exists():
        return None
    previous = json.loads(path.read_text(encoding="utf-8"))
    if previous.get("args") != args:
        return None
    print(f"{path} exists with the same arguments; skipping (use --force to rebuild)")
    return previous


def write_corpus_json(out: Path, corpus: dict[str, Any]) -> None:
    """``out/corpus.json``, replaced atomically: its presence means the build finished."""
    tmp_path = out / f"{CORPUS_FILE}.tmp"
    tmp_path.write_text(json.dumps(corpus, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp_path, out / CORPUS_FILE)


def write_split(split_dir: Path, plans: list[dict[str, Any]], render_chunk: RenderChunk, workers: int,
                audio_format: str = "flac", chunk_size: int = 16) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Render ``plans`` (each with a ``key``) in order into fresh shards of ``split_dir``; returns the
    split's index and the meta written for each plan."""
    split_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*split_dir.glob("shard-*.tar"), *split_dir.glob("shard-*.tar.tmp")]:
        stale.unlink()
    chunks = [plans[i : i + chunk_size] for i in range(0, len(plans), chunk_size)]
    metas = []
    with WorkerPool(workers) as pool, ShardWriter(split_dir, max_samples=SHARD_SIZE, audio_format=audio_format) as writer:
        results = pool.imap(render_chunk, chunks) if pool else map(render_chunk, chunks)
        with tqdm(total=len(plans), desc=split_dir.name, unit="utt") as progress:
            for chunk, rendered in zip(chunks, results):
                for plan, (audio, meta) in zip(chunk, rendered):
                    writer.write(plan["key"], audio, SAMPLE_RATE, meta)
                    metas.append(meta)
                progress.update(len(chunk))
    index = build_index(writer.stats)
    write_index(split_dir, index)
    return index, metas


class WorkerPool:
    """A fork-based process pool for ``workers > 1``, else ``None`` (run in this process)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool: multiprocessing.pool.Pool | None = None

    def __enter__(self) -> multiprocessing.pool.Pool | None:
        if self.workers > 1:
            self.pool = multiprocessing.get_context("fork").Pool(self.workers, initializer=_init_worker)
        return self.pool

    def __exit__(self, *exc_info: object) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
