"""`python -m osum.speech_tokens`: fit a speech tokenizer, add speech_tokens to shards, encode a file.

    train    --encoder DIR --shards DIR_OR_TAR... --out DIR [--codes 4096] [--layer -1] [--max-clips N] [--seed 0]
    extract  --tokenizer DIR --shards IN_DIR --out OUT_DIR [--batch 16] [--member reply_flac]
    encode   --tokenizer DIR --wav a.wav
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

NORM_CHOICES = {"auto": None, "yes": True, "no": False}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m osum.speech_tokens", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="fit a k-means codebook on a Whisper layer and save the tokenizer folder")
    t.add_argument("--encoder", required=True, help="a transformers Whisper folder (or openai-whisper .pt)")
    t.add_argument("--shards", nargs="+", required=True, metavar="DIR_OR_TAR", help="shard directories or tars")
    t.add_argument("--out", type=Path, required=True, help="the tokenizer folder to write")
    t.add_argument("--codes", type=int, default=4096, help="codebook size K")
    t.add_argument("--layer", type=int, default=-1, help="1-based encoder layer; negative counts from the end")
    t.add_argument("--final-norm", choices=sorted(NORM_CHOICES), default="auto",
                   help="apply the encoder's final LayerNorm (auto: only for the last layer)")
    t.add_argument("--pool", type=int, default=2, help="encoder frames (50 Hz) averaged per code")
    t.add_argument("--metric", choices=["cosine", "euclidean"], default="cosine")
    t.add_argument("--iters", type=int, default=30, help="most Lloyd passes")
    t.add_argument("--max-clips", type=int, default=None, help="fit on at most this many clips")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch", type=int, default=16, help="clips per encoder pass")
    t.add_argument("--device", default="cpu")
    e = sub.add_parser("extract", help="copy a shard directory with speech_tokens added to every clip's JSON")
    e.add_argument("--tokenizer", type=Path, required=True)
    e.add_argument("--shards", type=Path, required=True, metavar="IN_DIR")
    e.add_argument("--out", type=Path, required=True, metavar="OUT_DIR")
    e.add_argument("--batch", type=int, default=16, help="clips per encoder pass")
    e.add_argument("--member", default=None,
                   help="encode this member instead of the audio (a dialogue's reply audio: reply_flac); "
                        "history entries naming a reply_audio member get their turn's codes too")
    e.add_argument("--device", default="cpu")
    c = sub.add_parser("encode", help="print the codes of an audio file")
    c.add_argument("--tokenizer", type=Path, required=True)
    c.add_argument("--wav", type=Path, required=True, help="any soundfile-readable file (resampled to 16 kHz)")
    return parser


def run_train(args: argparse.Namespace) -> int:
    from osum.data.skips import SkipCounter
    from osum.speech_tokens.clips import iter_clips, list_shards
    from osum.speech_tokens.tokenizer import SpeechTokenizer

    start = time.perf_counter()
    skips = SkipCounter()
    clips = iter_clips(list_shards(args.shards), skips, args.max_clips)
    tokenizer = SpeechTokenizer.train(args.encoder, clips, codes=args.codes, layer=args.layer,
                                      final_norm=NORM_CHOICES[args.final_norm], pool=args.pool, metric=args.metric,
                                      seed=args.seed, iters=args.iters, batch_size=args.batch, device=args.device)
    tokenizer.save(args.out)
    stats = tokenizer.info["training"]
    print(f"clips      {stats['clips']}  ({skips.summary()})")
    print(f"frames     {stats['frames']}  ({stats['frames'] / tokenizer.rate / 3600:.3f} h at {tokenizer.rate:g} Hz)")
    print(f"layer      {tokenizer.features.layer}  final_norm {tokenizer.features.final_norm}  {tokenizer.metric}")
    print(f"codebook   {stats['codes_used']}/{tokenizer.codes} codes used, perplexity {stats['perplexity']:.1f}, "
          f"{stats['iterations']} iterations, mean distance {stats['inertia']:.4f}")
    print(f"time       {time.perf_counter() - start:.1f} s -> {args.out}")
    return 0


def run_extract(args: argparse.Namespace) -> int:
    from osum.speech_tokens.extract import extract_shards
    from osum.speech_tokens.tokenizer import SpeechTokenizer

    start = time.perf_counter()
    tokenizer = SpeechTokenizer.load(args.tokenizer, device=args.device)
    report = extract_shards(tokenizer, args.shards, args.out, batch_size=args.batch, member=args.member)
    print(f"shards     {report.shards} -> {args.out}")
    print(f"samples    {report.samples}: {report.tokenized} with speech_tokens ({report.codes} codes), "
          f"{report.no_audio} without audio, {len(report.failed)} kept without speech_tokens")
    for line in report.failed[:20]:
        print(f"  bad audio {line}")
    if len(report.failed) > 20:
        print(f"  ... and {len(report.failed) - 20} more")
    if report.reader_skips.total:
        print(f"unreadable {report.reader_skips.summary()} (left out)")
    print(f"time       {time.perf_counter() - start:.1f} s")
    return 0


def run_encode(args: argparse.Namespace) -> int:
    from osum.data.audio import decode_audio
    from osum.speech_tokens.tokenizer import SpeechTokenizer

    tokenizer = SpeechTokenizer.load(args.tokenizer)
    print(" ".join(map(str, tokenizer.encode(decode_audio(args.wav.read_bytes())))))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return {"train": run_train, "extract": run_extract, "encode": run_encode}[args.command](args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
