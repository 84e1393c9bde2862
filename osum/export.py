"""`python -m osum.export --ckpt X.ckpt --out DIR`: a self-contained folder for inference.

The LLM's LoRA (if any) is merged into its weights (peft ``merge_and_unload``); the folder holds the merged
LLM with its tokenizer, the encoder, adapter and speech tables, and ``osum.yaml`` (the layout is described
in ``osum.models.artifacts``). ``SpeechAssistant.from_export(DIR)`` loads it. A checkpoint of any stage works.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from osum.models.artifacts import load_checkpoint, save_export

log = logging.getLogger("osum.export")


def export(ckpt: str | Path, out: str | Path) -> Path:
    """Write the export folder of a training checkpoint."""
    backbone, model_cfg, text_cfg = load_checkpoint(ckpt)
    return save_export(backbone, model_cfg, text_cfg, out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m osum.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="a training checkpoint (.ckpt)")
    p.add_argument("--out", required=True, help="the folder to write")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(f"wrote {export(args.ckpt, args.out)}")


if __name__ == "__main__":
    main()
