"""A 2-process CPU DDP training run, stopped mid-stream and resumed from its checkpoint, trains on the
same sample keys in the same steps as an uninterrupted run; uneven shards end without a hang."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def train(data_root, exp, *overrides):
    cmd = [sys.executable, "-m", "osum.train", "+recipe=mini", "model=tiny", f"paths.data_root={data_root}",
           f"paths.exp_root={exp}", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
           "trainer.val_check_interval=1000", "trainer.limit_val_batches=0", "data.num_workers=2",
           "data.batch.max_samples=2", "data.batch.buffer_size=4", "callbacks.data_stream.ledger=true",
           "callbacks.checkpoint.every_n_train_steps=3", "model.llm.tokenizer=" + str(data_root / "mini" / "tokenizer"),
           *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def ledger(run_dir, rank):
    lines = (run_dir / f"trained_keys_rank{rank}.txt").read_text().splitlines()
    return [tuple(line.split("\t")) for line in lines]


def test_ddp_stop_and_resume_trains_the_same_keys(mini_data, tmp_path):
    train(mini_data, tmp_path / "a", "trainer.max_steps=7")
    train(mini_data, tmp_path / "b", "trainer.max_steps=3")
    proc = train(mini_data, tmp_path / "b", "trainer.max_steps=7", "ckpt_path=auto")
    assert "exact resume of the data stream" in proc.stderr + proc.stdout
    for rank in (0, 1):
        full, resumed = ledger(tmp_path / "a" / "mini", rank), ledger(tmp_path / "b" / "mini", rank)
        assert len(full) == 7 and resumed == full, (rank, full, resumed)
        n_keys = sum(len(keys.split()) for _, keys in full)
        print(f"rank {rank}: stopped after step 3, resumed to step 7: the {n_keys} sample keys of the 7 steps "
              "are those of the uninterrupted run, in the same steps")


def test_uneven_shards_on_two_ranks_end_without_hang(tmp_path, tokenizer_dir):
    """Three shards of 9, 2 and 1 samples over 2 ranks x 2 workers: every rank keeps yielding until max_steps."""
    import numpy as np

    from osum.data.index import build_index, write_index
    from osum.data.shards import ShardWriter

    labels = {"gender": "MALE", "age": "ADULT", "emotion": "NEUTRAL", "style": "NEWS", "events": []}
    root = tmp_path / "data"
    (root / "mini").mkdir(parents=True)
    stats = []
    for name, n in (("big", 9), ("small", 2), ("tiny", 1)):
        with ShardWriter(root / "mini" / "train", prefix=name, max_samples=100) as w:
            for i in range(n):
                audio = (0.3 * np.sin(np.arange(8000 + 800 * i) / 16000 * 2 * np.pi * 180)).astype(np.float32)
                w.write(f"{name}{i}", audio, 16000, {"txt": "one two", "labels": labels})
        stats += w.stats
    write_index(root / "mini" / "train", build_index(stats))
    (root / "mini" / "tokenizer").symlink_to(tokenizer_dir)
    proc = train(root, tmp_path / "exp", "trainer.max_steps=6", "data.valid=null")
    assert "Trainer.fit` stopped: `max_steps=6` reached" in proc.stderr + proc.stdout
    assert "shards repeat across readers" in proc.stderr + proc.stdout
