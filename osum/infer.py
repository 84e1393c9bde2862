"""`python -m osum.infer`: one answer from a trained model.

    understanding  --ckpt X --audio a.wav (--task "<TRANSCRIBE> <GENDER>" | --prompt "...")   prints the answer
    tts            --ckpt X --mode tts --text "..." --flow F [--vocoder V] [--reference r.wav] --out a.wav
                   the LLM's speech codes for the text, turned into a 16 kHz wav by token2wav (the flow model,
                   then the neural vocoder, or Griffin-Lim without --vocoder); --reference gives the voice
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from osum.data.audio import decode_audio
from osum.inference import DecodeOptions, SpeechAssistant


def understand(assistant: SpeechAssistant, args: argparse.Namespace) -> None:
    audio = decode_audio(Path(args.audio).read_bytes())
    speech, lengths = assistant.speech([audio])
    opts = DecodeOptions(max_new_tokens=args.max_new_tokens, num_beams=args.beam)
    instruction = args.prompt if args.prompt else assistant.instruction(assistant.registry.get(args.task), opts)
    print(assistant.answer(speech, lengths, [instruction], "text", opts)[0])


def speak(assistant: SpeechAssistant, args: argparse.Namespace) -> None:
    from osum.token2wav import Token2Wav

    generator = torch.Generator().manual_seed(args.seed)
    codes = assistant.speech_codes([args.text], greedy=args.greedy, generator=generator,
                                   max_new_tokens=args.max_codes)[0]
    if not codes:
        raise SystemExit(f"error: the model generated no speech codes for {args.text!r}")
    reference = decode_audio(Path(args.reference).read_bytes()) if args.reference else None
    synth = Token2Wav.load(args.flow, args.vocoder, device=args.device)  # no vocoder: an export's, or Griffin-Lim
    wav = np.asarray(synth(codes, reference), dtype=np.float32)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.out, wav, 16000)
    print(f"{args.out}: {len(codes)} codes, {len(wav) / 16000:.2f} s")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m osum.infer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a training checkpoint (.ckpt) or an osum.export folder")
    p.add_argument("--mode", choices=("understand", "tts"), default="understand")
    p.add_argument("--audio", help="understand: any audio file soundfile reads; resampled to 16 kHz")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--task", default="<TRANSCRIBE>", help="task tag string, e.g. '<TRANSCRIBE> <GENDER>'")
    g.add_argument("--prompt", help="a free instruction instead of a task's prompt")
    p.add_argument("--beam", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--text", help="tts: the text to speak")
    p.add_argument("--flow", help="tts: the token2wav flow checkpoint (codes -> mel)")
    p.add_argument("--vocoder", help="tts: the vocoder checkpoint (mel -> wav); default: the vocoder of a token2wav "
                   "export folder given as --flow, else Griffin-Lim")
    p.add_argument("--reference", help="tts: a clip of the voice to speak in")
    p.add_argument("--out", help="tts: the wav to write")
    p.add_argument("--greedy", action="store_true", help="tts: argmax codes instead of the TTS sampling")
    p.add_argument("--seed", type=int, default=0, help="tts: seed of the code sampling")
    p.add_argument("--max-codes", type=int, default=500, help="tts: most codes to generate (25 a second)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    needed = {"understand": ["audio"], "tts": ["text", "flow", "out"]}[args.mode]
    if missing := [f"--{n}" for n in needed if not getattr(args, n)]:
        p.error(f"--mode {args.mode} needs {' '.join(missing)}")
    assistant = SpeechAssistant.load(args.ckpt, args.device)
    (speak if args.mode == "tts" else understand)(assistant, args)


if __name__ == "__main__":
    main()
