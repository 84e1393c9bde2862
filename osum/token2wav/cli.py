"""`python -m osum.token2wav`: speech codes -> a 16 kHz wav with a trained flow model (and vocoder).

    python -m osum.token2wav --flow FLOW [--vocoder VOC] --codes "1 2 3 ..." [--reference ref.wav] --out out.wav
    python -m osum.token2wav --flow FLOW [--vocoder VOC] --codes-from-shards DIR [--num 3] [--key K]
                             [--reference ref.wav | --self-reference] --out OUT
    python -m osum.token2wav --flow FLOW [--vocoder VOC] --export DIR      (a self-contained folder)

FLOW / VOC: a checkpoint of the mini_flow / mini_vocoder recipe or a ``--export`` folder; without
``--vocoder``, the export folder's vocoder or Griffin-Lim. FLOW may also be a CosyVoice-300M-25Hz model folder
(``flow.pt`` + ``hift.pt`` [+ ``campplus.onnx``]): CosyVoice's own flow and HiFT vocoder, for the codes of
CosyVoice's 25 Hz tokenizer (``--vocoder griffin_lim`` or none). From shards, the samples with ``speech_tokens``
are read in order (``--key`` picks one); ``--num 1`` writes OUT itself, more write ``OUT/KEY.wav``.
``--self-reference`` takes each sample's own audio as the voice (a resynthesis check).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from osum.data.audio import decode_audio
from osum.data.reader import read_shard
from osum.data.shardlist import resolve_shards
from osum.data.skips import SkipCounter


def parse_codes(text: str) -> list[int]:
    """``"1 2 3"`` or ``"1,2,3"`` -> [1, 2, 3]; a clear error for anything else."""
    parts = text.replace(",", " ").split()
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError(f"--codes must be non-negative integers separated by spaces or commas, got {text!r}")
    return [int(p) for p in parts]


def codes_from_shards(spec: str, num: int, key: str | None) -> list[tuple[str, list[int], np.ndarray | None]]:
    """(key, codes, audio or None) of the first ``num`` samples with ``speech_tokens`` (or of sample ``key``)."""
    found = []
    for shard in resolve_shards(spec):
        for sample in read_shard(shard, SkipCounter()):
            codes = sample.meta.get("speech_tokens")
            if not isinstance(codes, list) or not codes or (key is not None and sample.key != key):
                continue
            audio = decode_audio(sample.audio) if sample.audio is not None else None
            found.append((sample.key, [int(c) for c in codes], audio))
            if len(found) == num:
                return found
    if not found:
        raise ValueError(f"no sample {'with key ' + key + ' and ' if key else 'with '}speech_tokens in {spec}")
    return found


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m osum.token2wav", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flow", required=True,
                   help="flow checkpoint (.ckpt), export folder, or CosyVoice-300M-25Hz folder (flow.pt + hift.pt)")
    p.add_argument("--vocoder", help="vocoder checkpoint or export folder, or griffin_lim")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--codes", help='codes as "1 2 3" or "1,2,3"')
    src.add_argument("--codes-from-shards", help="a shard folder (index.json), list file or glob")
    p.add_argument("--num", type=int, default=1, help="with --codes-from-shards: how many samples")
    p.add_argument("--key", help="with --codes-from-shards: the sample key to synthesize")
    ref = p.add_mutually_exclusive_group()
    ref.add_argument("--reference", help="a clip of the voice (any format soundfile reads)")
    ref.add_argument("--self-reference", action="store_true", help="with --codes-from-shards: each sample's own audio")
    p.add_argument("--out", help="the wav to write (a folder when --num > 1)")
    p.add_argument("--export", help="write the loaded models as a self-contained folder")
    p.add_argument("--steps", type=int, help="Euler steps (default: the model's)")
    p.add_argument("--cfg-strength", type=float, help="classifier-free guidance w (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if (args.codes or args.codes_from_shards) and not args.out:
        p.error("--out is needed with --codes / --codes-from-shards")
    if not (args.codes or args.codes_from_shards or args.export):
        p.error("give --codes, --codes-from-shards or --export")
    if args.self_reference and not args.codes_from_shards:
        p.error("--self-reference needs --codes-from-shards")
    if args.num < 1:
        p.error("--num must be >= 1")

    from osum.token2wav.synthesizer import Token2Wav

    try:
        synth = Token2Wav.load(args.flow, args.vocoder, device=args.device)
        if args.export:
            print(f"exported to {synth.export(args.export)}")
        if args.codes:
            items = [("codes", parse_codes(args.codes), None)]
        elif args.codes_from_shards:
            items = codes_from_shards(args.codes_from_shards, args.num, args.key)
        else:
            return
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    reference = decode_audio(Path(args.reference).read_bytes()) if args.reference else None
    refs = [audio if args.self_reference else reference for _, _, audio in items]
    wavs = synth.synthesize_batch([codes for _, codes, _ in items], refs, args.steps, args.cfg_strength, args.seed)
    out = Path(args.out)
    paths = [out] if len(items) == 1 else [out / f"{k}.wav" for k, _, _ in items]
    for path, (_key, codes, _), wav in zip(paths, items, wavs):
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wav, synth.mel.sample_rate)
        print(f"{path}: {len(codes)} codes, {len(wav) / synth.mel.sample_rate:.2f} s")
