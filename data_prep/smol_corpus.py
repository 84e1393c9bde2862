"""Open-vocabulary synthetic English corpus for the smol recipe: Austen sentences, 34 TTS voices.

    python -m data_prep.smol_corpus --out data/smol --text assets/janeaustenr [--num-train 6000
        --num-valid 200 --num-test 400] [--workers 2] [--force]

Writes ``OUT/{train,valid,test}/shard-*.tar`` + ``index.json``, ``OUT/real/`` (the 10 real recorded
utterances of Debian's pocketsphinx-testdata: 5 LibriVox clips of *Sense and Sensibility* and 5
"cards" utterances, with their transcripts) and ``OUT/corpus.json``.

- **Text**: sentences of 4-24 words from five Austen novels (:mod:`data_prep.text_sources`; *Sense
  and Sensibility*, the book of the real test clips, is never used), split into disjoint
  train/valid/test pools; 10% of the samples are STTC questions with exact answers (the mini
  corpus's arithmetic and fact pairs, disjoint pools too).
- **Speech**: each sentence synthesized whole (:mod:`data_prep.sentence_tts`), so it has the
  engine's prosody. Word times (the ALIGN task) come from festival and flite; espeak-ng samples
  have none and serve every other task.
- **Voices**: 30 training voices (flite 4, festival 2, espeak-ng 24 = 6 accents x 2 male and 2
  female variants; flite and festival voices are drawn 4x as often as each espeak-ng one) and 4
  held-out voices used only by the test split (festival ked, espeak-ng en-us+f2, en-gb+m2,
  en-gb-scotland+f2: variants no training voice uses).
- **Labels**: as the mini corpus (:data:`data_prep.mini_effects.PROXIES`), applied to the whole
  sentence: tempo and pitch with sox (word times scaled by the tempo), filters, tremolo/vibrato,
  whisper; CHAT doubles the pauses between words (espeak-ng ``-g``; flite and festival: silence
  inserted at word boundaries; a flite sample without word times falls back to NEWS, counted in
  corpus.json). About half of the samples carry one event before or after the speech.

Everything random derives from ``--seed``; every sample has its own generator, so the shards do not
depend on the number of workers.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from data_prep import mini_effects as fx
from data_prep.corpus_files import SHARD_SIZE, previous_build, write_corpus_json, write_split
from data_prep.mini_corpus import question_pairs
from data_prep.sentence_tts import flite_phone_counts, synthesize_sentences
from data_prep.text_sources import austen_sentences
from data_prep.voices import Voice
from osum.data.index import build_index, write_index
from osum.data.shards import SAMPLE_RATE, ShardWriter
from osum.tasks.labels import MINI_LABEL_SETS

SPLITS = ("train", "valid", "test")
QUESTION_FRACTION = 0.1
POOL_FRACTIONS = {"test": 0.05, "valid": 0.03}  # of the sentences and questions; the rest is train
REAL_DIR = Path("/usr/share/pocketsphinx/test/data")
CHAT_GAP_S = (0.12, 0.3)  # silence added between words for the CHAT style (flite, festival)
ESPEAK_CHAT_GAP = "20"  # espeak-ng -g: extra pause between words, in 10 ms units

ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbcwmd"]
TRAIN_MALE_VARIANTS = ["m1", "m3", "m4", "m5", "m6", "m7"]
TRAIN_FEMALE_VARIANTS = ["f1", "f3", "f4", "f5"]


def _voices() -> list[Voice]:
    voices = [Voice("flite-kal16", "flite", "kal16", "MALE"), Voice("flite-awb", "flite", "awb", "MALE"),
              Voice("flite-rms", "flite", "rms", "MALE"), Voice("flite-slt", "flite", "slt", "FEMALE"),
              Voice("festival-kal", "festival", "kal_diphone", "MALE"),
              Voice("festival-slt", "festival", "cmu_us_slt_arctic_hts", "FEMALE")]
    for i, accent in enumerate(ACCENTS):
        for k in range(2):
            male = TRAIN_MALE_VARIANTS[(2 * i + k) % len(TRAIN_MALE_VARIANTS)]
            female = TRAIN_FEMALE_VARIANTS[(2 * i + k) % len(TRAIN_FEMALE_VARIANTS)]
            voices.append(Voice(f"espeak-{accent}+{male}", "espeak", f"{accent}+{male}", "MALE", ("-s", "160")))
            voices.append(Voice(f"espeak-{accent}+{female}", "espeak", f"{accent}+{female}", "FEMALE", ("-s", "165")))
    voices += [Voice("festival-ked", "festival", "ked_diphone", "MALE"),
               Voice("espeak-en-us+f2", "espeak", "en-us+f2", "FEMALE", ("-s", "165")),
               Voice("espeak-en-gb+m2", "espeak", "en-gb+m2", "MALE", ("-s", "160")),
               Voice("espeak-en-gb-scotland+f2", "espeak", "en-gb-scotland+f2", "FEMALE", ("-s", "165"))]
    return voices


VOICES = _voices()
VOICE_BY_ID = {v.id: v for v in VOICES}
HELDOUT_VOICES = ("festival-ked", "espeak-en-us+f2", "espeak-en-gb+m2", "espeak-en-gb-scotland+f2")
TRAIN_VOICES = [v.id for v in VOICES if v.id not in HELDOUT_VOICES]
VOICE_WEIGHT = {"flite": 4.0, "festival": 4.0, "espeak": 1.0}

_PHONE_COUNTS: dict[str, int] = {}  # flite lexicon, filled before rendering; workers inherit it (fork)


def text_pools(text_dir: str | Path, seed: int) -> dict[str, dict[str, list[tuple[str, str | None]]]]:
    """Disjoint sentence and question pools per split: split -> domain -> [(text, answer)]."""
    rng = np.random.default_rng([seed, 1])
    by_domain = {"austen": [(t, None) for t in austen_sentences(text_dir)], "question": question_pairs()}
    pools: dict[str, dict[str, list[tuple[str, str | None]]]] = {split: {} for split in SPLITS}
    for domain, items in by_domain.items():
        order = [items[i] for i in rng.permutation(len(items))]
        n_test, n_valid = (max(1, round(POOL_FRACTIONS[s] * len(order))) for s in ("test", "valid"))
        pools["test"][domain] = order[:n_test]
        pools["valid"][domain] = order[n_test : n_test + n_valid]
        pools["train"][domain] = order[n_test + n_valid :]
    return pools


def plan_split(split: str, count: int, seed: int, pools: dict[str, list[tuple[str, str | None]]],
               voice_ids: list[str]) -> list[dict[str, Any]]:
    """Everything random about each sample of a split (text, voice, labels, event, seed)."""
    rng = np.random.default_rng([seed, 2, SPLITS.index(split)])
    weights = np.array([VOICE_WEIGHT[VOICE_BY_ID[v].engine] for v in voice_ids])
    voices = rng.choice(voice_ids, size=count, p=weights / weights.sum())
    sentences = rng.permutation(len(pools["austen"]))  # each sentence at most once while the pool lasts
    plans = []
    for i in range(count):
        domain = "question" if rng.random() < QUESTION_FRACTION else "austen"
        if domain == "austen":
            text, answer = pools["austen"][int(sentences[i % len(sentences)])]
        else:
            text, answer = pools["question"][int(rng.integers(len(pools["question"])))]
        plan: dict[str, Any] = {
            "key": f"smol_{split}_{i:06d}", "voice": str(voices[i]), "domain": domain, "text": text,
            "answer": answer,
            "labels": {"gender": VOICE_BY_ID[str(voices[i])].gender,
                       **{kind: str(rng.choice(MINI_LABEL_SETS[kind])) for kind in ("age", "emotion", "style")}},
            "seed": int(rng.integers(2**63)),
        }
        plan["event"] = fx.draw_event(rng)
        plans.append(plan)
    return plans


def render_chunk(plans: list[dict[str, Any]]) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """Audio and meta of planned samples; one TTS call (festival: one process) per voice."""
    by_voice: dict[str, list[int]] = defaultdict(list)
    for i, plan in enumerate(plans):
        by_voice[plan["voice"]].append(i)
    spoken: dict[int, tuple[np.ndarray, Any]] = {}
    for voice_id, idx in by_voice.items():
        voice = VOICE_BY_ID[voice_id]
        options = [("-g", ESPEAK_CHAT_GAP) if voice.engine == "espeak" and plans[i]["labels"]["style"] == "CHAT"
                   else () for i in idx]
        results = synthesize_sentences(voice, [plans[i]["text"] for i in idx], options, _PHONE_COUNTS)
        spoken.update(zip(idx, results))
    return [render_sample(plan, *spoken[i]) for i, plan in enumerate(plans)]


def render_sample(plan: dict[str, Any], speech: np.ndarray, words: list | None) -> tuple[np.ndarray, dict[str, Any]]:
    """Label effects, event and level on one synthesized sentence."""
    rng = np.random.default_rng(plan["seed"])
    labels = dict(plan["labels"])
    engine = VOICE_BY_ID[plan["voice"]].engine
    if labels["style"] == "CHAT" and engine != "espeak":
        if words is None:
            labels["style"] = "NEWS"  # no word boundaries to lengthen: counted in corpus.json
        else:
            speech, words = _lengthen_pauses(speech, words, rng)
    tempo, cents = fx.PROXY_SETS["relative"].time_effects(labels["age"], labels["emotion"])[0]
    if tempo != 1.0 or cents:
        speech = fx.sox(speech, (["pitch", str(cents)] if cents else []) + (["tempo", "-s", f"{tempo}"] if tempo != 1 else []))
        words = None if words is None else [(w, s / tempo, e / tempo) for w, s, e in words]
    if labels["age"] == "OLD":
        speech = fx.tremolo(fx.vibrato(speech, rng), rng)
    if labels["style"] == "WHISPER":
        speech = fx.whisper(speech, rng)
    speech = fx.emotion_filter(speech, labels["emotion"])
    speech = speech / max(float(np.abs(speech).max()), 1e-9)
    audio, shift, events = fx.add_event_and_level(speech, plan["event"], labels, rng)
    meta: dict[str, Any] = {"txt": plan["text"], "lang": "en", "speaker": plan["voice"], "domain": plan["domain"],
                            "labels": {**labels, "events": events}}
    if words is not None:
        meta["words"] = [[w, round(s + shift / SAMPLE_RATE, 3), round(e + shift / SAMPLE_RATE, 3)] for w, s, e in words]
    if plan["domain"] == "question":
        meta["question"], meta["answer"] = plan["text"], plan["answer"]
    return audio, meta


def _lengthen_pauses(speech: np.ndarray, words: list, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """Insert silence at every boundary between two words; word times move with it."""
    pieces, moved, added, cursor = [], [], 0.0, 0
    for k, (word, start, end) in enumerate(words):
        if k > 0:
            cut = int(start * SAMPLE_RATE)
            pieces.append(speech[cursor:cut])
            gap = float(rng.uniform(*CHAT_GAP_S))
            pieces.append(np.zeros(int(gap * SAMPLE_RATE), np.float32))
            added += int(gap * SAMPLE_RATE) / SAMPLE_RATE
            cursor = cut
        moved.append((word, start + added, end + added))
    pieces.append(speech[cursor:])
    return np.concatenate(pieces), moved


def write_real(out_dir: Path, audio_format: str = "flac") -> dict[str, Any]:
    """The 10 real recordings of pocketsphinx-testdata with their transcripts (the LibriVox reader is female)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("shard-*.tar"):
        stale.unlink()
    with ShardWriter(out_dir, max_samples=SHARD_SIZE, audio_format=audio_format) as writer:
        for name, transcript_file in (("librivox", "transcription"), ("cards", "cards.transcription")):
            for line in (REAL_DIR / name / transcript_file).read_text().splitlines():
                text, _, utt = line.replace("<s>", "").replace("</s>", "").rpartition("(")
                utt = utt.strip(") ")
                audio, sr = sf.read(REAL_DIR / name / f"{utt}.wav", dtype="float32")
                meta = {"txt": " ".join(text.split()), "lang": "en", "domain": name, "speaker": name,
                        "labels": {"gender": "FEMALE"} if name == "librivox" else {}}
                writer.write(f"real_{name}_{utt}", audio, sr, meta)
    index = build_index(writer.stats)
    write_index(out_dir, index)
    return {"samples": index["total"]["samples"], "hours": index["total"]["hours"]}


def build(out: str | os.PathLike, text_dir: str | os.PathLike, seed: int = 0, num_train: int = 6000,
          num_valid: int = 200, num_test: int = 400, workers: int = 2, force: bool = False, audio_format: str = "flac") -> dict[str, Any]:
    """Build the corpus into ``out`` (skipped when ``out/corpus.json`` has the same arguments)."""
    out = Path(out)
    args = {"seed": seed, "num_train": num_train, "num_valid": num_valid, "num_test": num_test,
            "audio_format": audio_format}
    previous = previous_build(out, args, force)
    if previous is not None:
        return previous
    pools = text_pools(text_dir, seed)
    plans = {split: plan_split(split, count, seed, pools[split],
                               list(HELDOUT_VOICES) if split == "test" else TRAIN_VOICES)
             for split, count in zip(SPLITS, (num_train, num_valid, num_test))}
    flite_words = sorted({w for split_plans in plans.values() for p in split_plans
                          if VOICE_BY_ID[p["voice"]].engine == "flite" for w in p["text"].split()})
    _PHONE_COUNTS.clear()
    _PHONE_COUNTS.update(flite_phone_counts(flite_words))
    for name in ("bell.oga", "alarm-clock-elapsed.oga"):
        fx._freedesktop_sound(name)  # load in this process, so that forked workers need no resampling
    counts = {split: _split_counts(out / split, split_plans, workers, audio_format) for split, split_plans in plans.items()}
    counts["real"] = write_real(out / "real", audio_format)
    corpus = {"args": args, "text": {"source": "r-cran-janeaustenr without sensesensibility",
                                     "pool_sizes": {s: {d: len(v) for d, v in p.items()} for s, p in pools.items()}},
              "label_sets": MINI_LABEL_SETS, "proxies": fx.PROXIES, "counts": counts,
              "voices": [{"id": v.id, "engine": v.engine, "name": v.name, "gender": v.gender,
                          "split": "heldout" if v.id in HELDOUT_VOICES else "train"} for v in VOICES]}
    write_corpus_json(out, corpus)
    return corpus


def _split_counts(split_dir: Path, plans: list[dict[str, Any]], workers: int, audio_format: str) -> dict[str, Any]:
    index, metas = write_split(split_dir, plans, render_chunk, workers, audio_format, chunk_size=32)
    with_words = Counter((VOICE_BY_ID[p["voice"]].engine, "words" in m) for p, m in zip(plans, metas))
    return {"samples": index["total"]["samples"], "hours": index["total"]["hours"],
            "with_word_times": {f"{e} {'yes' if ok else 'no'}": n for (e, ok), n in sorted(with_words.items())},
            "chat_fell_back_to_news": sum(p["labels"]["style"] == "CHAT" and m["labels"]["style"] == "NEWS"
                                          for p, m in zip(plans, metas)),
            "speakers": dict(sorted(Counter(p["voice"] for p in plans).items()))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_prep.smol_corpus", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output directory (e.g. data/smol)")
    parser.add_argument("--text", default="assets/janeaustenr", help="unpacked r-cran-janeaustenr (make smol-assets)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=6000)
    parser.add_argument("--num-valid", type=int, default=200)
    parser.add_argument("--num-test", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2, help="synthesis processes (results do not depend on it)")
    parser.add_argument("--audio-format", choices=["flac", "wav"], default="flac",
                        help="shard audio: flac (half the size) or 16-bit PCM wav (decodes about 5x faster)")
    parser.add_argument("--force", action="store_true", help="rebuild even if OUT/corpus.json matches")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    corpus = build(args.out, args.text, args.seed, args.num_train, args.num_valid, args.num_test, args.workers,
                   args.force, args.audio_format)
    for split, counts in corpus["counts"].items():
        print(f"{split:5s} {counts['samples']:6d} samples {counts['hours']:.3f} h  "
              f"{counts.get('with_word_times', '')}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
