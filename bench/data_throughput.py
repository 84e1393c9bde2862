"""Data pipeline throughput and padding efficiency, against a naive pipeline run in the same process.

    python bench/data_throughput.py [--shards data/mini/train] [--samples 4000]

Ours: the training stream on one core (read tar, decode, Whisper log-mel at the real length,
task choice, target rendering, tokenization and layout, SpecAugment, token-budget batching, collation),
with the batch settings of configs/data/mini.yaml, run on the same samples from the FLAC shards as
given and from a 16-bit PCM WAV copy of them (``ShardWriter(audio_format="wav")``; made in a temporary
folder, not timed), alternately, ``--repeat`` times each; the best pass is reported (this machine's
neighbours make single passes vary by about 10%), every pass is printed.
Naive: per-sample Python with transformers' WhisperFeatureExtractor (pads every utterance to 30 s) and
per-sample tokenization, fixed-size batches. Prints audio-seconds per second per core for both, their
ratio, and the padding efficiency of our batches against fixed-size batches of the same samples in
stream order: real / padded LLM tokens, and real / padded mel frames as the encoder computes them
(in ``model.encoder_sub_batches`` calls per batch, configs/model/tiny.yaml; also shown for one call).
Also timed: the loader with ``data.features=model``, which ships waveforms and leaves the log-mel to the
model's device (its cost there is not part of these figures).
"""

from __future__ import annotations

import argparse
import io
import itertools
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from osum.data.audio import decode_audio  # noqa: E402
from osum.data.batching import BatchLimits, index_frame_bounds  # noqa: E402
from osum.data.datamodule import build_text_side  # noqa: E402
from osum.data.mixture import TaskMixture  # noqa: E402
from osum.data.processing import Filters, SampleProcessor  # noqa: E402
from osum.data.reader import read_shard  # noqa: E402
from osum.data.shardlist import resolve_shards  # noqa: E402
from osum.data.shards import audio_bytes  # noqa: E402
from osum.data.skips import SkipCounter  # noqa: E402
from osum.data.stream import ShardStream  # noqa: E402
from osum.models.encoder import length_groups  # noqa: E402

TASKS = {"<TRANSCRIBE>": 3, "<TRANSCRIBE> <GENDER>": 1, "<TRANSCRIBE> <EMOTION>": 1, "<TRANSCRIBE> <ALIGN>": 1}
SPEC_AUG = {"num_time_masks": 2, "max_time": 50, "num_freq_masks": 2, "max_freq": 10}


def our_pipeline(shards, tokenizer_dir, samples, limits, features="loader"):
    tok, builder, registry = build_text_side(tokenizer_dir, {"layout": "osum", "eos_token": "<|endoftext|>"}, {})
    processor = SampleProcessor(builder, registry, TaskMixture(registry, TASKS), Filters(), spec_aug=SPEC_AUG,
                                features=features)
    stream = ShardStream(shards, processor, limits, pad_id=tok.pad_token_id, shuffle=False, infinite=False)
    batches, audio, n = [], 0.0, 0
    start = time.perf_counter()
    for batch in stream:
        batches.append(batch)
        audio += batch["audio_seconds"]
        n += len(batch["keys"])
        if n >= samples:
            break
    return audio / (time.perf_counter() - start), n, batches


def wav_copy(shards: list[str], out_dir: Path) -> list[str]:
    """The same shards with every FLAC member re-encoded as 16-bit PCM WAV (same samples, same order)."""
    import soundfile as sf

    copies = []
    for shard in shards:
        target = out_dir / Path(shard).name
        with tarfile.open(shard) as src, tarfile.open(target, "w") as dst:
            for member in src.getmembers():
                data = src.extractfile(member).read()
                if member.name.endswith(".flac"):
                    audio, sr = sf.read(io.BytesIO(data), dtype="float32")
                    data, member.name = audio_bytes(audio, sr, "wav"), member.name[: -len("flac")] + "wav"
                member.size = len(data)
                dst.addfile(member, io.BytesIO(data))
        copies.append(str(target))
    index = Path(shards[0]).parent / "index.json"
    if index.exists():
        shutil.copy(index, out_dir / "index.json")
    return copies


def decode_only(shards, samples):
    """The floor of any pipeline on these shards: decoding alone (osum.data.audio.decode_audio), audio-s/s."""
    audio_s, n = 0.0, 0
    start = time.perf_counter()
    for raw in itertools.chain.from_iterable(read_shard(s, SkipCounter()) for s in shards):
        audio_s += len(decode_audio(raw.audio)) / 16000
        n += 1
        if n >= samples:
            break
    return audio_s / (time.perf_counter() - start)


def naive_pipeline(shards, tokenizer_dir, samples, batch_size):
    import soundfile as sf
    from transformers import AutoTokenizer, WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(feature_size=80)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    audio_s, n, batch = 0.0, 0, []
    start = time.perf_counter()
    for raw in itertools.chain.from_iterable(read_shard(s, SkipCounter()) for s in shards):
        wav, sr = sf.read(io.BytesIO(raw.audio), dtype="float32")
        feats = extractor(wav, sampling_rate=sr, return_tensors="pt").input_features[0]
        ids = tok("Transcribe the speech." + raw.meta.get("txt", ""))["input_ids"]
        batch.append((feats, ids))
        if len(batch) == batch_size:
            torch.stack([f for f, _ in batch])
            batch = []
        audio_s += len(wav) / sr
        n += 1
        if n >= samples:
            break
    return audio_s / (time.perf_counter() - start), n


def padding_efficiency(batches, sub_batches: int = 1):
    """Real / padded mel frames (the encoder run in ``sub_batches`` calls per batch) and LLM tokens."""
    real_f = padded_f = real_t = padded_t = 0
    for b in batches:
        lengths = b["mel_lengths"].tolist()
        real_f += sum(lengths)
        padded_f += sum(len(g) * max(lengths[i] for i in g) for g in length_groups(lengths, sub_batches))
        n, width = b["input_ids"].shape
        last = torch.stack([((b["text_targets"][i] != -100).nonzero().max() + 1) for i in range(n)])
        real_t += int(last.sum())
        padded_t += n * width
    return real_f / padded_f, real_t / padded_t


def fixed_size_efficiency(batches, batch_size):
    frames = [int(x) for b in batches for x in b["mel_lengths"]]
    tokens = [int((t != -100).nonzero().max()) + 1 for b in batches for t in b["text_targets"]]
    keys = [k for b in batches for k in b["keys"]]
    order = sorted(range(len(frames)), key=lambda i: keys[i])  # arrival order (shards read in order)
    real_f = padded_f = real_t = padded_t = 0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        real_f += sum(frames[i] for i in idx)
        padded_f += len(idx) * max(frames[i] for i in idx)
        real_t += sum(tokens[i] for i in idx)
        padded_t += len(idx) * max(tokens[i] for i in idx)
    return real_f / padded_f, real_t / padded_t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", default="data/mini/train")
    p.add_argument("--tokenizer", default="data/mini/tokenizer")
    p.add_argument("--samples", type=int, default=4000)
    p.add_argument("--naive-samples", type=int, default=300)
    p.add_argument("--fixed-batch", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3, help="passes of our pipeline per shard format; the best counts")
    p.add_argument("--data-config", default=str(ROOT / "configs/data/mini.yaml"), help="its `batch` settings are used")
    p.add_argument("--model-config", default=str(ROOT / "configs/model/tiny.yaml"), help="for encoder_sub_batches")
    args = p.parse_args()
    torch.set_num_threads(1)  # one worker core
    shards = resolve_shards(args.shards)
    limits = BatchLimits(**OmegaConf.to_container(OmegaConf.load(args.data_config).batch))
    sub_batches = int(OmegaConf.load(args.model_config).get("encoder_sub_batches", 1))
    limits.frame_bounds = index_frame_bounds(shards, limits.frame_groups) or ()  # as the data module sets them
    passes: dict[str, list[float]] = {"FLAC": [], "WAV": [], "FLAC, model features": [], "WAV, model features": []}
    with tempfile.TemporaryDirectory(prefix="osum-bench-") as tmp:
        wav_shards = wav_copy(shards, Path(tmp))
        for _ in range(args.repeat):
            ours, n_ours, batches = our_pipeline(shards, args.tokenizer, args.samples, limits)
            passes["FLAC"].append(ours)
            ours_wav, n_wav, _ = our_pipeline(wav_shards, args.tokenizer, args.samples, limits)
            passes["WAV"].append(ours_wav)
            for name, source in (("FLAC", shards), ("WAV", wav_shards)):  # data.features: model
                passes[f"{name}, model features"].append(our_pipeline(source, args.tokenizer, args.samples, limits,
                                                                      features="model")[0])
        naive, n_naive = naive_pipeline(shards, args.tokenizer, args.naive_samples, args.fixed_batch)
        floor, floor_wav = decode_only(shards, args.samples), decode_only(wav_shards, args.samples)
    ours, ours_wav = max(passes["FLAC"]), max(passes["WAV"])
    eff_f, eff_t = padding_efficiency(batches, sub_batches)
    one_call_f, _ = padding_efficiency(batches, 1)
    fix_f, fix_t = fixed_size_efficiency(batches, args.fixed_batch)
    each = {k: ", ".join(f"{v:.0f}" for v in vals) for k, vals in passes.items()}
    print(f"pipeline (one core)   ours, FLAC shards: {ours:6.0f} audio-s/s over {n_ours} samples in {len(batches)} batches "
          f"(passes: {each['FLAC']})")
    print(f"                      ours, WAV shards:  {ours_wav:6.0f} audio-s/s over {n_wav} samples, 16-bit PCM copy "
          f"(passes: {each['WAV']})")
    print(f"                      with data.features=model (log-mel left to the model's device; the loader's part):"
          f" FLAC {max(passes['FLAC, model features']):.0f}, WAV {max(passes['WAV, model features']):.0f} audio-s/s")
    print(f"                      naive: {naive:7.0f} audio-s/s over {n_naive} samples (WhisperFeatureExtractor, 30 s pad)")
    print(f"                      decoding alone: FLAC {floor:.0f}, WAV {floor_wav:.0f} audio-s/s (no pipeline passes it)")
    print(f"                      ratio ours/naive: FLAC {ours / naive:.1f}x, WAV {ours_wav / naive:.1f}x   "
          "(target >= 3000 audio-s/s per core)")
    bounds = ", ".join(str(b) for b in limits.frame_bounds) or "per buffer"
    print(f"padding efficiency    ours: encoder frames {eff_f:.1%} ({sub_batches} sub-batches per batch; one call: "
          f"{one_call_f:.1%}), LLM tokens {eff_t:.1%}   (target >= 95%)")
    print(f"                      batches: buffer {limits.buffer_size}, {limits.frame_groups} length buckets "
          f"(bounds {bounds} frames), budget {limits.max_tokens} tokens / {limits.max_frames} frames / "
          f"{limits.max_samples} samples")
    print(f"                      fixed batches of {args.fixed_batch}: frames {fix_f:.1%}, tokens {fix_t:.1%}")
    print(f"                      ratio ours/fixed: frames {eff_f / fix_f:.2f}x, tokens {eff_t / fix_t:.2f}x")


if __name__ == "__main__":
    main()
