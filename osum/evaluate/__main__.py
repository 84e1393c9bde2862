"""`python -m osum.evaluate tts ...`: judge the TTS chain (osum/evaluate/tts.py) and print its table."""

from __future__ import annotations

import argparse
import logging

import torch

from osum.evaluate.tts import judge_tts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m osum.evaluate", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tts", help="WER of an independent ASR on held-out sentences, step by step")
    t.add_argument("--shards", required=True, nargs="+", help="held-out samples (audio, txt, speech_tokens)")
    t.add_argument("--asr", required=True, help="the judge: a transformers Whisper folder (e.g. assets/whisper-base)")
    t.add_argument("--out", required=True, help="writes tts_table.md, tts_table.json, tts_utterances.tsv")
    t.add_argument("--flow", help="token2wav flow checkpoint or export folder (rows with token2wav)")
    t.add_argument("--vocoder", help="vocoder checkpoint (rows with the neural vocoder)")
    t.add_argument("--tts", help="TTS stage checkpoint (the text -> LLM codes rows)")
    t.add_argument("--tokenizer", help="speech tokenizer folder (the round trip; codes of samples without them)")
    t.add_argument("--limit", type=int, default=60, help="sentences to judge (spread over the test set)")
    t.add_argument("--no-griffin-lim", action="store_true", help="leave out the Griffin-Lim rows")
    t.add_argument("--greedy", action="store_true", help="argmax codes instead of the TTS sampling")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--max-codes", type=int, default=500, help="most codes the LLM may generate (25 a second)")
    t.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    judge_tts(args.shards, args.out, args.asr, flow=args.flow, vocoder=args.vocoder, tts_ckpt=args.tts,
              tokenizer=args.tokenizer, limit=args.limit, griffin_lim=not args.no_griffin_lim,
              greedy=args.greedy, seed=args.seed, max_codes=args.max_codes, device=args.device)
    print(f"wrote {args.out}/tts_table.md, tts_table.json, tts_utterances.tsv")


if __name__ == "__main__":
    main()
