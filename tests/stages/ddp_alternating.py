"""Trains a tiny stage on batches that alternate speech and text-only (no encoder, no adapter) for 4 steps, with
1 process or 2 CPU DDP processes that see the same batches, and saves rank 0's final weights.

Run by tests/stages/test_ddp_skipped_parts.py: ``python ddp_alternating.py TOKENIZER_DIR OUT_FILE WORLD [plain]``;
``plain`` turns off the exact zeros for skipped parts (what DDP without unused-parameter search then does).
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]
from batches import pad, text_batch  # noqa: E402
from tiny_models import tiny_model  # noqa: E402

from osum.stages.base import StageBase  # noqa: E402
from osum.template import IGNORE, SequenceBuilder, Text, Turn  # noqa: E402
from osum.text import load_tokenizer  # noqa: E402


def batches(tokenizer) -> list[dict]:
    builder = SequenceBuilder(tokenizer)
    out = []
    for step in range(4):
        torch.manual_seed(step)
        if step % 2 == 0:
            b = text_batch(tokenizer, frames=(90, 57))
        else:  # text in, text out: no speech clip, no speech-table row
            seqs = [builder.build("text2text", [Turn([Text(q)], text="five")]) for q in ("two plus three", "one")]
            b = {"input_ids": pad([s.input_ids for s in seqs], tokenizer.pad_token_id),
                 "text_targets": pad([s.text_targets for s in seqs], IGNORE),
                 "speech_targets": pad([s.speech_targets for s in seqs], IGNORE)}
        out.append({**b, "keys": [f"s{step}a", f"s{step}b"], "tasks": ["t", "t"], "audio_seconds": 1.0})
    return out


class Stage(StageBase):
    stage_name = "test"


def main(tokenizer_dir: str, out_file: str, world: int, plain: bool) -> None:
    L.seed_everything(0)
    tokenizer = load_tokenizer(tokenizer_dir)
    model = tiny_model(tokenizer_dir, freeze=[], checkpoint_weights="full")
    stage = Stage(model, {"lr": 1e-2}, {"name": "constant"})
    initial = {k: v.detach().clone() for k, v in stage.backbone.state_dict().items()}
    if plain:
        stage._touch_idle = lambda used: 0.0
    strategy = DDPStrategy(find_unused_parameters=False, process_group_backend="gloo") if world > 1 else "auto"
    trainer = L.Trainer(accelerator="cpu", devices=world, strategy=strategy, max_steps=4, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        use_distributed_sampler=False, num_sanity_val_steps=0)
    loader = torch.utils.data.DataLoader(batches(tokenizer), batch_size=None)
    trainer.fit(stage, train_dataloaders=loader)
    if trainer.global_rank == 0:
        torch.save({"initial": initial, "final": stage.backbone.state_dict()}, out_file)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), len(sys.argv) > 4 and sys.argv[4] == "plain")
