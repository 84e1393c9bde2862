"""Training-step speed of the mini understanding recipe in float32 and under CPU bfloat16 autocast, in one process.

    python bench/mini_step.py [--batches 8] [--rounds 2] [--threads 2] [overrides ...]

The mini recipe (``+recipe=mini``, Hydra overrides appended) on real batches of data/mini/train (``make corpus``):
the first ``--batches`` batches of its loader, their frozen-encoder outputs cached first (as from the second
epoch on, where most of a run's steps are). A step is the stage's ``training_step`` (forward, the heads' losses,
the label-choice and voice-label losses), backward and an AdamW step. The two precisions take turns over
``--rounds`` rounds from the same initial weights; the best round of each is reported, every round printed.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from osum.train import build  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", ["+recipe=mini", "data.num_workers=0", "run_dir=/tmp/osum_bench_mini", *args.overrides])
    datamodule, stage, trainer = build(cfg)
    datamodule.setup("fit")
    loader = iter(datamodule.train_dataloader())
    batches = [next(loader) for _ in range(args.batches)]
    stage.trainer = trainer  # training_step reads the world size; its logging is a no-op outside fit
    stage.log = lambda *a, **k: None
    with torch.no_grad():
        for batch in batches:  # fill the frozen-encoder cache: steps from the second epoch on
            stage.backbone.encode_speech(batch["mel"], batch["mel_lengths"], batch["clip_keys"])
    start = copy.deepcopy(stage.backbone.state_dict())
    best: dict[str, float] = {}
    for r in range(args.rounds):
        for name, dtype in (("float32", None), ("bf16 autocast", torch.bfloat16)):
            stage.backbone.load_state_dict(start)
            optim = torch.optim.AdamW([p for p in stage.parameters() if p.requires_grad], lr=1e-4)
            trainer.strategy.optimizers = [optim]  # training_step logs its learning rate
            t0 = time.perf_counter()
            for i, batch in enumerate(batches):
                with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                    loss = stage.training_step(batch, i)
                loss.backward()
                optim.step()
                optim.zero_grad()
            per_step = (time.perf_counter() - t0) / len(batches)
            print(f"round {r}: {name}: {per_step:.3f} s/step (loss of the last batch {float(loss):.3f})")
            best[name] = min(best.get(name, float("inf")), per_step)
    print(f"best: float32 {best['float32']:.3f} s/step, bf16 autocast {best['bf16 autocast']:.3f} s/step, "
          f"ratio {best['float32'] / best['bf16 autocast']:.2f}x")


if __name__ == "__main__":
    main()
