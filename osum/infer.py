"""`python -m osum.infer`: one answer from a trained model.

    understanding  --ckpt X --audio a.wav (--task "<TRANSCRIBE> <GENDER>" | --prompt "...")   prints the answer
    tts            --ckpt X --mode tts --text "..." --flow F [--vocoder V] [--reference r.wav] --out a.wav
                   the LLM's speech codes for the text, turned into a 16 kHz wav by token2wav (the flow model,
                   then the neural vocoder, or Griffin-Lim without --vocoder); --reference gives the voice;
                   --streaming: as text2token_streaming (6 text : 18 speech tokens), for a model trained on it
    s2t | s2s      --ckpt X --mode s2t --audio turn1.wav [--audio turn2.wav ...] [--history 5] [--out-dir D]
                   one conversation (osum.chat.ChatSession), a turn per --audio: prints each turn's think and
                   reply; s2s also speaks the reply (--flow F [--vocoder V] [--reference r.wav]) and writes
                   D/turn_<i>.wav; D/turn_<i>.json holds the think, reply and codes. --interactive reads wav
                   paths from stdin instead ("new" starts a new conversation, an empty line ends).
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
    audio = decode_audio(Path(args.audio[0]).read_bytes())
    speech, lengths = assistant.speech([audio])
    opts = DecodeOptions(max_new_tokens=args.max_new_tokens, num_beams=args.beam)
    instruction = args.prompt if args.prompt else assistant.instruction(assistant.registry.get(args.task), opts)
    print(assistant.answer(speech, lengths, [instruction], "text", opts)[0])


def speak(assistant: SpeechAssistant, args: argparse.Namespace) -> None:
    from osum.token2wav import Token2Wav

    generator = torch.Generator().manual_seed(args.seed)
    output_type = "text2token_streaming" if args.streaming else "text2token"
    codes = assistant.speech_codes([args.text], output_type, greedy=args.greedy, generator=generator,
                                   max_new_tokens=args.max_codes)[0]
    if not codes:
        raise SystemExit(f"error: the model generated no speech codes for {args.text!r}")
    reference = decode_audio(Path(args.reference).read_bytes()) if args.reference else None
    synth = Token2Wav.load(args.flow, args.vocoder, device=args.device)  # no vocoder: an export's, or Griffin-Lim
    wav = np.asarray(synth(codes, reference), dtype=np.float32)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.out, wav, 16000)
    print(f"{args.out}: {len(codes)} codes, {len(wav) / 16000:.2f} s")


def chat(assistant: SpeechAssistant, args: argparse.Namespace) -> None:
    import json

    from osum.chat import ChatSession

    speech_out = args.mode == "s2s"
    session = ChatSession(assistant, speech_out=speech_out, think=not args.no_think, window=args.history,
                          greedy=not args.sample, seed=args.seed, max_new_tokens=args.max_reply_tokens)
    synth = reference = None
    if speech_out:
        from osum.token2wav import Token2Wav

        synth = Token2Wav.load(args.flow, args.vocoder, device=args.device)
        reference = decode_audio(Path(args.reference).read_bytes()) if args.reference else None
    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    turns = iter(args.audio) if not args.interactive else iter(lambda: input("wav> ").strip(), "")
    for i, path in enumerate(turns, 1):
        if path == "new":
            session.clear()
            print("-- new conversation")
            continue
        out_type, reply = session.ask(decode_audio(Path(path).read_bytes()))
        print(f"turn {i} ({out_type}, {len(session.history)} kept): {path}")
        if reply.think is not None:
            print(f"  think: {reply.think}")
        print(f"  reply: {reply.text}")
        record = {"audio": path, "output_type": out_type, "think": reply.think, "reply": reply.text,
                  "speech_codes": reply.speech}
        if synth is not None:
            if not reply.speech:
                print("  (no speech codes generated)")
            elif out_dir:
                wav = np.asarray(synth(reply.speech, reference), dtype=np.float32)
                record["wav"] = str(out_dir / f"turn_{i}.wav")
                sf.write(record["wav"], wav, 16000)
                print(f"  speech: {record['wav']} ({len(reply.speech)} codes, {len(wav) / 16000:.2f} s)")
        if out_dir:
            (out_dir / f"turn_{i}.json").write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m osum.infer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a training checkpoint (.ckpt) or an osum.export folder")
    p.add_argument("--mode", choices=("understand", "tts", "s2t", "s2s"), default="understand")
    p.add_argument("--audio", action="append", help="understand: any audio file soundfile reads (resampled to "
                   "16 kHz); s2t/s2s: one per turn, in order")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--task", default="<TRANSCRIBE>", help="task tag string, e.g. '<TRANSCRIBE> <GENDER>'")
    g.add_argument("--prompt", help="a free instruction instead of a task's prompt")
    p.add_argument("--beam", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--text", help="tts: the text to speak")
    p.add_argument("--flow", help="tts: the token2wav flow checkpoint (codes -> mel), export folder or "
                   "CosyVoice-300M-25Hz folder (flow.pt + hift.pt: its own vocoder)")
    p.add_argument("--vocoder", help="tts: the vocoder checkpoint (mel -> wav); default: the vocoder of a token2wav "
                   "export folder given as --flow, else Griffin-Lim")
    p.add_argument("--reference", help="tts: a clip of the voice to speak in")
    p.add_argument("--out", help="tts: the wav to write")
    p.add_argument("--greedy", action="store_true", help="tts: argmax codes instead of the TTS sampling")
    p.add_argument("--streaming", action="store_true", help="tts: interleaved 6 text : 18 speech tokens "
                   "(a model trained on <TEXT2TOKEN> <STREAMING>, e.g. +recipe=mini_tts_streaming)")
    p.add_argument("--seed", type=int, default=0, help="tts: seed of the code sampling")
    p.add_argument("--max-codes", type=int, default=500, help="tts: most codes to generate (25 a second)")
    p.add_argument("--history", type=int, default=5, help="s2t/s2s: earlier turns kept (0: none)")
    p.add_argument("--no-think", action="store_true", help="s2t/s2s: first turns without the think section")
    p.add_argument("--max-reply-tokens", type=int, default=None,
                   help="s2t/s2s: most tokens a reply may have, think and speech included (default: the output type's)")
    p.add_argument("--sample", action="store_true", help="s2t/s2s: the output types' sampling instead of greedy")
    p.add_argument("--interactive", action="store_true", help="s2t/s2s: read wav paths from stdin")
    p.add_argument("--out-dir", help="s2t/s2s: writes turn_<i>.json (and turn_<i>.wav for s2s)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    needed = {"understand": ["audio"], "tts": ["text", "flow", "out"], "s2t": [],
              "s2s": ["flow", "out_dir"]}[args.mode]
    if args.mode in ("s2t", "s2s") and not (args.audio or args.interactive):
        needed = [*needed, "audio"]
    if missing := [f"--{n.replace('_', '-')}" for n in needed if not getattr(args, n)]:
        p.error(f"--mode {args.mode} needs {' '.join(missing)}")
    if args.mode == "understand" and len(args.audio) > 1:
        p.error("--mode understand takes one --audio")
    assistant = SpeechAssistant.load(args.ckpt, args.device)
    {"understand": understand, "tts": speak, "s2t": chat, "s2s": chat}[args.mode](assistant, args)


if __name__ == "__main__":
    main()
