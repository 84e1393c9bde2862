"""`python -m osum.evaluate tts|echat ...`: judge the TTS chain (osum/evaluate/tts.py) or dialogue models
(osum/evaluate/echat.py) and print the table."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

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
    t.add_argument("--streaming", action="store_true",
                   help="the LLM speaks as <TEXT2TOKEN> <STREAMING> (6 text : 18 speech tokens, text2token_streaming)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--max-codes", type=int, default=500, help="most codes the LLM may generate (25 a second)")
    t.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    e = sub.add_parser("echat", help="dialogue models: think per cue, reply appropriateness, memory, spoken reply")
    e.add_argument("--ckpt", required=True, action="append",
                   help="a dialogue checkpoint or export folder, as NAME=PATH to name its row; repeat for an ablation")
    e.add_argument("--shards", required=True, nargs="+", help="dialogue test shards (data_prep.dialogue_corpus)")
    e.add_argument("--out", required=True, help="writes echat_table.md, echat_report.json, echat_replies.jsonl")
    e.add_argument("--limit", type=int, default=None, help="at most this many test samples")
    e.add_argument("--s2s", type=int, default=0, help="this many samples also as S2S (reply text then speech)")
    e.add_argument("--flow", help="token2wav flow checkpoint (speaks the S2S replies)")
    e.add_argument("--vocoder", help="token2wav vocoder checkpoint (default: Griffin-Lim)")
    e.add_argument("--reference", help="a clip of the assistant's voice for token2wav")
    e.add_argument("--asr", help="the judge of spoken replies: a transformers Whisper folder (assets/whisper-base)")
    e.add_argument("--judge", help="a local causal-LM folder: EChat-eval style 1-5 scores per dimension")
    e.add_argument("--sample", action="store_true", help="the output types' sampling instead of greedy decoding")
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "echat":
        from osum.evaluate.echat import run

        models = dict(c.split("=", 1) if "=" in c else (Path(c).parent.parent.name or c, c) for c in args.ckpt)
        run(models, args.shards, args.out, limit=args.limit, s2s_limit=args.s2s, batch_size=args.batch_size,
            greedy=not args.sample, seed=args.seed, flow=args.flow, vocoder=args.vocoder, reference=args.reference,
            asr=args.asr, judge=args.judge, device=args.device)
        print(Path(args.out, "echat_table.md").read_text(), end="")
        print(f"wrote {args.out}/echat_table.md, echat_report.json, echat_replies.jsonl")
        return
    judge_tts(args.shards, args.out, args.asr, flow=args.flow, vocoder=args.vocoder, tts_ckpt=args.tts,
              tokenizer=args.tokenizer, limit=args.limit, griffin_lim=not args.no_griffin_lim,
              greedy=args.greedy, streaming=args.streaming, seed=args.seed, max_codes=args.max_codes,
              device=args.device)
    print(f"wrote {args.out}/tts_table.md, tts_table.json, tts_utterances.tsv")


if __name__ == "__main__":
    main()
