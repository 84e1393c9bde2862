"""`python -m osum.infer --ckpt X --audio a.wav (--task "<TRANSCRIBE> <GENDER>" | --prompt "...")`: one answer."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from osum.data.audio import decode_audio
from osum.inference import DecodeOptions, SpeechAssistant


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m osum.infer", description=__doc__)
    p.add_argument("--ckpt", required=True, help="a training checkpoint (.ckpt) or an osum.export folder")
    p.add_argument("--audio", required=True, help="any audio file soundfile reads; resampled to 16 kHz")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--task", default="<TRANSCRIBE>", help="task tag string, e.g. '<TRANSCRIBE> <GENDER>'")
    g.add_argument("--prompt", help="a free instruction instead of a task's prompt")
    p.add_argument("--beam", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    assistant = SpeechAssistant.load(args.ckpt, args.device)
    audio = decode_audio(Path(args.audio).read_bytes())
    speech, lengths = assistant.speech([audio])
    opts = DecodeOptions(max_new_tokens=args.max_new_tokens, num_beams=args.beam)
    instruction = args.prompt if args.prompt else assistant.instruction(assistant.registry.get(args.task), opts)
    print(assistant.answer(speech, lengths, [instruction], "text", opts)[0])


if __name__ == "__main__":
    main()
