"""Mini TTS corpus: the mini corpus's commands and questions, each spoken whole by a few clean voices.

    python -m data_prep.tts_corpus --out data/mini_tts [--workers 2] [--seed 0]
        [--voices flite-slt,flite-kal16] [--num-train N] [--tokenizer data/mini/tokenizer] [--force]
        [--extra N --text assets/janeaustenr]

Writes ``OUT/{train,valid,test}/shard-*.tar`` + ``index.json`` (and ``OUT/extra`` with ``--extra``) and
``OUT/corpus.json`` (arguments, voices, pool sizes, counts, tokenizer coverage). Built for training a TTS
stage on CPU in minutes.

- **Sentences**: :func:`data_prep.mini_corpus.command_sentences` and ``question_pairs`` (no digit
  strings: an ASR judge writes digits as numerals ambiguously), split by the same
  :func:`data_prep.mini_corpus.sentence_pools` as the mini corpus, so test sentences are never in train.
- **Speech**: every sentence of a split spoken whole (:func:`data_prep.sentence_tts.synthesize_sentences`,
  the engine's own prosody) by every chosen voice (any id of ``mini_corpus.VOICES``; default flite slt,
  female, and flite kal16, male: clean voices that Whisper transcribes well). Silence at the edges is
  clipped to 0.1 s, the peak set to 0.9; no effects, no events.
- **Sizes**: train = its sentences x voices; ``--num-train`` fewer takes a seeded subset, more repeats the
  list, each further copy at another speed (flite ``duration_stretch``, espeak-ng ``-s``, drawn in
  [0.85, 1.15]); festival has no cheap speed option, so its voices are never repeated.
- **Sample JSON**: ``txt``, ``speaker``, ``lang`` "en", ``domain`` (command / question), ``labels``
  (gender of the voice, ADULT, NEUTRAL, NEWS, no events), and for questions ``question`` and ``answer``.
  The train split also holds each training question once as a text-only sample (``question``,
  ``answer``, ``txt`` = the question, domain ``text_chat``) for ``<TEXT2TEXT>`` in a TTS recipe.
- **Extra** (``--extra N``, token2wav only): N open-vocabulary sentences of Jane Austen's novels
  (:func:`data_prep.text_sources.austen_sentences`, 4-10 words), the voices taking turns, one clip each, so
  the flow model hears many more words than the few hundred of the sentence pools (a held-out sentence's
  new words are where resynthesis failed). No sentence holds a word that only a valid or test sentence
  has, so the held-out sentences stay unheard in every word the training pools lack. Not for the TTS
  stage: its tokenizer covers the pools' words only.
- **Tokenizer**: the TTS stage reuses the mini corpus tokenizer; every word and text is checked to
  encode without unknown pieces (:func:`data_prep.tokenizer_coverage.tokenizer_coverage`).

Everything random derives from ``--seed``; the shards do not depend on the number of workers.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from data_prep.corpus_files import CORPUS_FILE, SHARD_SIZE, WorkerPool, previous_build, write_corpus_json
from data_prep.mini_corpus import VOICE_BY_ID, VOICES, sentence_pools
from data_prep.sentence_tts import synthesize_sentences
from data_prep.tokenizer_coverage import tokenizer_coverage
from data_prep.voices import Voice
from osum.data.index import build_index, write_index
from osum.data.shards import SAMPLE_RATE, ShardWriter

SPLITS = ("train", "valid", "test")
EXTRA_SPLIT = "extra"
EXTRA_WORDS = (4, 10)  # words per extra sentence
DOMAINS = ("command", "question")
DEFAULT_VOICES = ("flite-slt", "flite-kal16")
DEFAULT_TOKENIZER = "data/mini/tokenizer"
EDGE_SILENCE_S = 0.1
SILENCE_DB = -45.0  # a 5 ms block this far below the loudest block counts as silence
PEAK = 0.9
SPEED_RANGE = (0.85, 1.15)  # duration factor of a repeated copy
ESPEAK_DEFAULT_RATE = 175  # words per minute
NEUTRAL_LABELS = {"age": "ADULT", "emotion": "NEUTRAL", "style": "NEWS", "events": []}
TEXT_CHAT_DOMAIN = "text_chat"
Sentence = tuple[str, str, str | None]  # domain, text, answer (questions only)


def parse_voices(voice_ids: str | list[str] | tuple[str, ...]) -> list[str]:
    """Voice ids (a comma-separated string or a list), checked against ``mini_corpus.VOICES``."""
    ids = voice_ids.split(",") if isinstance(voice_ids, str) else [str(v) for v in voice_ids]
    ids = list(dict.fromkeys(v.strip() for v in ids if v.strip()))
    known = "known voices: " + ", ".join(v.id for v in VOICES)
    if not ids:
        raise ValueError(f"no voice given; {known}")
    unknown = [v for v in ids if v not in VOICE_BY_ID]
    if unknown:
        raise ValueError(f"unknown voice(s) {', '.join(unknown)}; {known}")
    return ids


def speed_supported(voice: Voice) -> bool:
    """Whether the engine changes speed cheaply on its command line (flite, espeak-ng; not festival)."""
    return voice.engine in ("flite", "espeak")


def speed_options(voice: Voice, stretch: float) -> tuple[str, ...]:
    """Command-line options that make ``voice`` speak ``stretch`` times as long (1.0: none)."""
    if stretch == 1.0:
        return ()
    if voice.engine == "flite":
        return ("--setf", f"duration_stretch={stretch}")
    if voice.engine == "espeak":
        opts = list(voice.options)
        rate = int(opts[opts.index("-s") + 1]) if "-s" in opts[:-1] else ESPEAK_DEFAULT_RATE
        return ("-s", str(round(rate / stretch)))  # a later -s overrides the voice's own
    raise ValueError(f"{voice.id}: engine {voice.engine} has no speed option")


def split_sentences(seed: int, max_sentences: int | None = None) -> dict[str, list[Sentence]]:
    """Per split: [(domain, text, answer)] from the mini corpus pools, at most ``max_sentences`` a domain."""
    pools = sentence_pools(seed)
    return {split: [(domain, text, answer) for domain in DOMAINS
                    for text, answer in pools[split][domain][:max_sentences]] for split in SPLITS}


def held_out_words(sentences: dict[str, list[Sentence]]) -> set[str]:
    """Words of valid and test sentences (and answers) that no training sentence has."""
    def words(split: str) -> set[str]:
        return {w for _, text, answer in sentences[split] for t in (text, answer) if t for w in t.split()}

    return (words("valid") | words("test")) - words("train")


def extra_sentences(text_dir: str | os.PathLike, count: int, seed: int, banned: set[str]) -> list[str]:
    """``count`` Austen sentences of ``EXTRA_WORDS`` words without a ``banned`` word, drawn by ``seed``."""
    from data_prep.text_sources import austen_sentences

    low, high = EXTRA_WORDS
    usable = [t for t in austen_sentences(text_dir)
              if low <= len(t.split()) <= high and not banned.intersection(t.split())]
    if len(usable) < count:
        raise ValueError(f"--extra {count}: only {len(usable)} usable sentences of {low}-{high} words in {text_dir}")
    rng = np.random.default_rng([seed, 4])
    return [usable[i] for i in sorted(rng.permutation(len(usable))[:count])]


def plan_extra(texts: list[str], voice_ids: list[str]) -> list[dict[str, Any]]:
    """One clip per extra sentence, the voices taking turns."""
    return [{"key": f"tts_{EXTRA_SPLIT}_{i:06d}", "voice": voice_ids[i % len(voice_ids)], "domain": "extra",
             "text": text, "answer": None, "copy": 0, "stretch": 1.0} for i, text in enumerate(texts)]


def plan_split(split: str, sentences: list[Sentence], voice_ids: list[str], seed: int,
               count: int | None = None) -> list[dict[str, Any]]:
    """One plan per (copy, voice, sentence); ``count`` (train only) subsets or repeats the list."""
    rng = np.random.default_rng([seed, 3, SPLITS.index(split)])
    base = [(voice_id, item) for voice_id in voice_ids for item in sentences]
    if count is None or count == len(base):
        chosen = [(0, voice_id, item) for voice_id, item in base]
    elif count < len(base):
        chosen = [(0, *base[i]) for i in sorted(rng.permutation(len(base))[:count])]
    else:
        copies = math.ceil(count / len(base))
        chosen = [(copy, voice_id, item) for copy in range(copies) for voice_id, item in base
                  if copy == 0 or speed_supported(VOICE_BY_ID[voice_id])][:count]
    plans = []
    for i, (copy, voice_id, (domain, text, answer)) in enumerate(chosen):
        stretch = 1.0 if copy == 0 else round(float(rng.uniform(*SPEED_RANGE)), 3)
        plans.append({"key": f"tts_{split}_{i:06d}", "voice": voice_id, "domain": domain, "text": text,
                      "answer": answer, "copy": copy, "stretch": stretch})
    return plans


def text_chat_samples(sentences: list[Sentence]) -> list[tuple[str, dict[str, Any]]]:
    """Each question once as a text-only sample for ``<TEXT2TEXT>``: (key, meta)."""
    questions = [(text, answer) for domain, text, answer in sentences if domain == "question"]
    return [(f"tts_text_{i:06d}", {"txt": text, "question": text, "answer": answer, "lang": "en",
                                   "domain": TEXT_CHAT_DOMAIN}) for i, (text, answer) in enumerate(questions)]


def clip_silence(audio: np.ndarray, key: str, keep_s: float = EDGE_SILENCE_S,
                 threshold_db: float = SILENCE_DB) -> np.ndarray:
    """``audio`` with exactly ``keep_s`` of (original or added) silence before and after the speech."""
    block = SAMPLE_RATE // 200
    n_blocks = len(audio) // block
    rms = np.sqrt((audio[: n_blocks * block].reshape(n_blocks, block) ** 2).mean(axis=1))
    if n_blocks == 0 or rms.max() <= 1e-6:
        raise ValueError(f"{key}: the synthesized audio is silent")
    loud = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20))
    start, end = loud[0] * block, (loud[-1] + 1) * block
    keep = int(keep_s * SAMPLE_RATE)
    lead, trail = audio[max(0, start - keep) : start], audio[end : end + keep]
    return np.concatenate([np.zeros(keep - len(lead), np.float32), lead, audio[start:end], trail,
                           np.zeros(keep - len(trail), np.float32)]).astype(np.float32)


def render_chunk(plans: list[dict[str, Any]]) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """Audio and meta of planned samples; one synthesis call (festival: one process) per voice."""
    by_voice: dict[str, list[int]] = defaultdict(list)
    for i, plan in enumerate(plans):
        by_voice[plan["voice"]].append(i)
    spoken: dict[int, np.ndarray] = {}
    for voice_id, idx in by_voice.items():
        voice = VOICE_BY_ID[voice_id]
        options = [speed_options(voice, plans[i]["stretch"]) for i in idx]
        results = synthesize_sentences(voice, [plans[i]["text"] for i in idx], options)
        spoken.update((i, audio) for i, (audio, _) in zip(idx, results))
    return [render_sample(plan, spoken[i]) for i, plan in enumerate(plans)]


def render_sample(plan: dict[str, Any], speech: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Edge silence clipped, peak set; the JSON meta of one sample."""
    audio = clip_silence(speech, plan["key"])
    audio = audio * (PEAK / float(np.abs(audio).max()))
    labels = {"gender": VOICE_BY_ID[plan["voice"]].gender, **NEUTRAL_LABELS, "events": []}
    meta: dict[str, Any] = {"txt": plan["text"], "lang": "en", "speaker": plan["voice"],
                            "domain": plan["domain"], "labels": labels}
    if plan["stretch"] != 1.0:
        meta["speed_stretch"] = plan["stretch"]
    if plan["domain"] == "question":
        meta["question"], meta["answer"] = plan["text"], plan["answer"]
    return audio, meta


def write_tts_split(split_dir: Path, plans: list[dict[str, Any]], text_only: list[tuple[str, dict[str, Any]]],
                    workers: int, audio_format: str = "flac", chunk_size: int = 16) -> dict[str, Any]:
    """Render ``plans`` into fresh shards of ``split_dir``, then the text-only samples; writes and returns
    the split's index."""
    split_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*split_dir.glob("shard-*.tar"), *split_dir.glob("shard-*.tar.tmp")]:
        stale.unlink()
    chunks = [plans[i : i + chunk_size] for i in range(0, len(plans), chunk_size)]
    writer = ShardWriter(split_dir, max_samples=SHARD_SIZE, audio_format=audio_format)
    with WorkerPool(workers) as pool, writer:
        results = pool.imap(render_chunk, chunks) if pool else map(render_chunk, chunks)
        with tqdm(total=len(plans), desc=split_dir.name, unit="utt") as progress:
            for chunk, rendered in zip(chunks, results):
                for plan, (audio, meta) in zip(chunk, rendered):
                    writer.write(plan["key"], audio, SAMPLE_RATE, meta)
                progress.update(len(chunk))
        for key, meta in text_only:
            writer.write_text_only(key, meta)
    index = build_index(writer.stats)
    write_index(split_dir, index)
    return index


def build(out: str | os.PathLike, seed: int = 0, voices: str | list[str] | tuple[str, ...] = DEFAULT_VOICES,
          num_train: int | None = None, workers: int = 2, force: bool = False, audio_format: str = "flac",
          max_sentences: int | None = None,
          tokenizer_dir: str | os.PathLike | None = DEFAULT_TOKENIZER, extra: int = 0,
          text_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Build the corpus into ``out`` (skipped when ``out/corpus.json`` has the same arguments).

    ``max_sentences``: at most this many sentences per domain and split (small test builds).
    ``tokenizer_dir``: the tokenizer the TTS stage will use (None: not checked).
    ``extra``: that many open-vocabulary clips in ``out/extra`` (module docstring), from ``text_dir``."""
    out = Path(out)
    voice_ids = parse_voices(voices)
    if num_train is not None and num_train < 1:
        raise ValueError(f"num_train must be >= 1, got {num_train}")
    if extra < 0 or (extra and not text_dir):
        raise ValueError(f"extra must be >= 0 and needs a text folder (--text), got extra={extra}, text={text_dir}")
    args = {"seed": seed, "voices": voice_ids, "num_train": num_train, "max_sentences": max_sentences,
            "audio_format": audio_format, **({"extra": extra, "text": str(text_dir)} if extra else {})}
    previous = previous_build(out, args, force)
    if previous is not None:
        return previous
    (out / CORPUS_FILE).unlink(missing_ok=True)  # a build that stops half way must not look finished

    sentences = split_sentences(seed, max_sentences)
    texts = [t for items in sentences.values() for _, text, answer in items for t in (text, answer) if t]
    coverage = _coverage(texts, tokenizer_dir)
    plans = {split: plan_split(split, sentences[split], voice_ids, seed,
                               num_train if split == "train" else None) for split in SPLITS}
    if num_train is not None and len(plans["train"]) < num_train:
        print(f"note: {len(plans['train'])} training utterances, not {num_train}: festival voices have no "
              "cheap speed change and are not repeated")
    text_only = {"train": text_chat_samples(sentences["train"])}
    if extra:
        plans[EXTRA_SPLIT] = plan_extra(extra_sentences(text_dir, extra, seed, held_out_words(sentences)), voice_ids)
    counts = {}
    for split in plans:
        index = write_tts_split(out / split, plans[split], text_only.get(split, []), workers, audio_format)
        counts[split] = {"samples": index["total"]["samples"], "audio_samples": len(plans[split]),
                         "text_only": len(text_only.get(split, [])), "hours": index["total"]["hours"],
                         "domains": index["total"]["domains"],
                         "sentences": {d: sum(dom == d for dom, _, _ in sentences.get(split, [])) for d in DOMAINS},
                         "speakers": dict(sorted(Counter(p["voice"] for p in plans[split]).items())),
                         "speed_copies": sum(p["copy"] > 0 for p in plans[split])}
    references = write_references(out / "references", plans["test"])
    corpus = {
        "args": args,
        "references": references,
        "voices": [{"id": v, "engine": VOICE_BY_ID[v].engine, "name": VOICE_BY_ID[v].name,
                    "options": list(VOICE_BY_ID[v].options), "gender": VOICE_BY_ID[v].gender,
                    "speed_variation": speed_supported(VOICE_BY_ID[v])} for v in voice_ids],
        "labels": NEUTRAL_LABELS,
        "edge_silence_s": EDGE_SILENCE_S,
        "speed_range": list(SPEED_RANGE),
        "counts": counts,
        "tokenizer": coverage,
    }
    write_corpus_json(out, corpus)
    return corpus


def write_references(out: Path, test_plans: list[dict[str, Any]]) -> dict[str, str]:
    """One held-out recording per voice as ``out/<voice>.wav`` (16 kHz): the voice prompt for synthesis
    (``osum.infer --mode tts --reference``); voice id -> the sentence it says."""
    first = {}
    for plan in test_plans:
        first.setdefault(plan["voice"], plan)
    out.mkdir(parents=True, exist_ok=True)
    for (audio, _), voice in zip(render_chunk(list(first.values())), first):
        sf.write(out / f"{voice}.wav", audio, SAMPLE_RATE)
    return {voice: plan["text"] for voice, plan in first.items()}


def _coverage(texts: list[str], tokenizer_dir: str | os.PathLike | None) -> dict[str, Any]:
    if tokenizer_dir is None:
        return {"checked": False, "reason": "no tokenizer given"}
    if not Path(tokenizer_dir).is_dir():
        print(f"warning: no tokenizer at {tokenizer_dir} (python -m data_prep.mini_corpus builds it); "
              "coverage not checked")
        return {"path": str(tokenizer_dir), "checked": False, "reason": "tokenizer folder not found"}
    return {"checked": True, **tokenizer_coverage(texts, tokenizer_dir)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_prep.tts_corpus",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output directory (e.g. data/mini_tts)")
    parser.add_argument("--seed", type=int, default=0, help="the mini corpus seed (same sentence pools)")
    parser.add_argument("--voices", default=",".join(DEFAULT_VOICES),
                        help="comma-separated voice ids of data_prep.mini_corpus.VOICES")
    parser.add_argument("--num-train", type=int, default=None,
                        help="training utterances (default: every training sentence once per voice)")
    parser.add_argument("--workers", type=int, default=2,
                        help="synthesis processes (results do not depend on it)")
    parser.add_argument("--audio-format", choices=["flac", "wav"], default="flac")
    parser.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, help="tokenizer whose coverage is checked")
    parser.add_argument("--force", action="store_true", help="rebuild even if OUT/corpus.json matches")
    parser.add_argument("--extra", type=int, default=0,
                        help="open-vocabulary clips for token2wav in OUT/extra (needs --text)")
    parser.add_argument("--text", default=None, help="an unpacked r-cran-janeaustenr (make smol-assets)")
    args = parser.parse_args(argv)
    try:
        parse_voices(args.voices)
    except ValueError as e:
        parser.error(str(e))
    start = time.perf_counter()
    corpus = build(args.out, args.seed, args.voices, args.num_train, args.workers, args.force,
                   args.audio_format, tokenizer_dir=args.tokenizer, extra=args.extra, text_dir=args.text)
    for split, c in corpus["counts"].items():
        print(f"{split:5s} {c['audio_samples']:5d} utterances {c['hours']:.3f} h  + {c['text_only']} "
              f"text-only  sentences {c['sentences']}  speakers {c['speakers']}")
    tok = corpus["tokenizer"]
    print(f"tokenizer: {'covers every word' if tok.get('ok') else 'not checked'} ({tok.get('path', '-')})")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
