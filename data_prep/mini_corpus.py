"""Synthetic multi-task English corpus for the mini recipe, from the Debian TTS engines.

    python -m data_prep.mini_corpus --out data/mini [--seed 0] [--num-train 4000 --num-valid 200
        --num-test 400] [--workers 2] [--force] [--proxies relative|salient|marked]

Writes ``OUT/{train,valid,test,test_novel}/shard-*.tar`` + ``index.json``, ``OUT/tokenizer/`` and
``OUT/corpus.json`` (arguments, voices with gender, split and median F0, counts, proxies).

What a sample is:
- **Speech**: the words of one sentence, each synthesized alone by one voice (cached per voice and
  word), trimmed of silence, joined with 60-250 ms pauses and 100-300 ms of leading/trailing
  silence. ``words`` = ``[[word, start_s, end_s], ...]`` is exact in the final 16 kHz audio: time
  changes (tempo, pitch) are applied to single words before assembly, later effects are
  time-invariant, and a prepended event shifts the times by its exact length.
- **Domains**: ``digits`` (3-8 digits read as words, 50%), ``command`` (smart-home phrases, 30%),
  ``question`` (STTC: a question with a short exact answer; ``question`` and ``answer`` fields, 20%).
- **Voices**: 12 training voices (6 male, 6 female; espeak-ng at most half) and 2 held-out voices
  (festival ked, espeak-ng en-us+f2) used only by the test split; the ``test_novel`` split (200) has
  4 voices of variants no other voice uses, at other speeds (espeak-ng en-gb+m2 and en+belinda at 185
  words/min, en-us+Annie at 145, en-us+m7 at 150): how far the model carries to new voices. Train, valid and
  test sentences are disjoint (test_novel reads test sentences); valid uses the training voices.
- **Labels**: gender from the voice; age, emotion and style drawn uniformly and independently per
  sample and rendered as acoustic proxies (``data_prep.mini_effects.PROXIES``); about half of
  the samples carry one event (BELL, ALARM, COUGH, LAUGH) before or after the speech.
  CHILD: tempo x1.2 + pitch +120 cents. ADULT: none. OLD: tempo x0.85 + vibrato + tremolo.
  NEUTRAL: none. HAPPY: treble +9 dB + tempo x1.1. SAD: low-pass 1.5 kHz + tempo x0.9 + -6 dB.
  ANGER: overdrive + presence boost. NEWS: none. CHAT: pauses doubled. WHISPER: noise-excited
  spectral envelope + voicing at -20 dB. Pitch shifts stay within +120 cents, so a male voice
  stays in the male F0 range. ``--proxies salient`` (``mini_effects.PROXY_SETS``) drops every tempo
  change and widens what is left so a held-out voice is heard without knowing its own rate and
  brightness: CHILD +300 cents (male voices stay under 167 Hz), OLD vibrato +/-120 cents and tremolo
  60%, HAPPY every second word +250 cents (and the treble); SAD and ANGER otherwise unchanged.
  ``--proxies marked`` (the dialogue chain's, ``make demo-chat``): as salient, but HAPPY's bounce +400 cents
  without the treble and CHILD with an 11 Hz amplitude flutter of depth 0.35.
- Audio peaks at 0.9 (SAD: 0.45), with a noise floor 60 dB below the peak.

Everything random derives from ``--seed``; every sample has its own generator, so the shards are
byte-identical for any number of workers.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from data_prep import dialogue_rules
from data_prep import mini_effects as fx
from data_prep.corpus_files import WorkerPool, previous_build, write_corpus_json, write_split
from data_prep.tokenizer import build_tokenizer
from data_prep.voices import Voice, median_f0, synthesize_words
from osum.data.shards import SAMPLE_RATE
from osum.tasks.labels import MINI_LABEL_SETS, all_tags

SPLITS = ("train", "valid", "test", "test_novel")
DOMAIN_FRACTIONS = {"digits": 0.5, "command": 0.3, "question": 0.2}
POOL_FRACTIONS = {"test": 0.15, "valid": 0.10}  # of the command and question sentences; rest train
PROMPTS_FILE = Path(__file__).resolve().parent.parent / "osum" / "tasks" / "prompts" / "en.yaml"
EXTRA_TOKENS = ["<开始回答>", "<ANSWER>", "<think>", "<think end>", *dialogue_rules.reply_tags()]
TOKENIZER_VOCAB = 1000

VOICES: list[Voice] = [
    Voice("flite-kal16", "flite", "kal16", "MALE"),
    Voice("flite-awb", "flite", "awb", "MALE"),
    Voice("flite-rms", "flite", "rms", "MALE"),
    Voice("festival-kal", "festival", "kal_diphone", "MALE"),
    Voice("espeak-en-us-m3", "espeak", "en-us+m3", "MALE", ("-s", "165")),
    Voice("espeak-en-029-m1", "espeak", "en-029+m1", "MALE", ("-s", "160")),
    Voice("flite-slt", "flite", "slt", "FEMALE"),
    Voice("festival-slt", "festival", "cmu_us_slt_arctic_hts", "FEMALE"),
    Voice("espeak-en-gb-scotland-f1", "espeak", "en-gb-scotland+f1", "FEMALE", ("-s", "160")),
    Voice("espeak-en-029-f3", "espeak", "en-029+f3", "FEMALE", ("-s", "170")),
    Voice("espeak-en-us-f5", "espeak", "en-us+f5", "FEMALE", ("-s", "170")),
    Voice("espeak-en-gb-x-rp-f4", "espeak", "en-gb-x-rp+f4", "FEMALE", ("-s", "175")),
    # Held out (test split only): typical of their gender, default pitch and speed.
    Voice("festival-ked", "festival", "ked_diphone", "MALE"),
    Voice("espeak-en-us-f2", "espeak", "en-us+f2", "FEMALE"),
    # Novel (test_novel split only): variants that no training or held-out voice uses, at other speeds.
    Voice("espeak-en-gb-m2", "espeak", "en-gb+m2", "MALE", ("-s", "185")),
    Voice("espeak-en-us-m7", "espeak", "en-us+m7", "MALE", ("-s", "150")),
    Voice("espeak-en-us-annie", "espeak", "en-us+Annie", "FEMALE", ("-s", "145")),
    Voice("espeak-en-belinda", "espeak", "en+belinda", "FEMALE", ("-s", "185")),
]
HELDOUT_VOICES = ("festival-ked", "espeak-en-us-f2")
NOVEL_VOICES = ("espeak-en-gb-m2", "espeak-en-us-m7", "espeak-en-us-annie", "espeak-en-belinda")
# More training voices for the dialogue corpus only (`data_prep.dialogue_corpus --more-voices`; the mini corpus never
# uses them): espeak-ng accents and variants that no voice above uses (no f2 variant: the held-out en-us+f2's).
EXTRA_VOICES: list[Voice] = [
    Voice(f"espeak-{name.replace('+', '-')}", "espeak", name, gender, ("-s", speed))
    for name, gender, speed in [
        ("en-us+m1", "MALE", "160"), ("en+m4", "MALE", "170"), ("en-gb-x-rp+m5", "MALE", "155"),
        ("en-gb-scotland+m6", "MALE", "165"), ("en-us-nyc+m2", "MALE", "175"), ("en-gb-x-gbclan+m3", "MALE", "150"),
        ("en-us+f1", "FEMALE", "165"), ("en+f3", "FEMALE", "155"), ("en-gb-x-rp+f1", "FEMALE", "175"),
        ("en-us-nyc+f4", "FEMALE", "160"), ("en-gb-x-gbcwmd+f5", "FEMALE", "170"), ("en-gb-scotland+f3", "FEMALE", "150"),
    ]
]
VOICE_BY_ID = {voice.id: voice for voice in [*VOICES, *EXTRA_VOICES]}

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
ROOMS = ["kitchen", "bedroom", "bathroom", "garage", "office", "hallway", "living room"]

# Word caches: (voice id, tempo, cents) -> word -> int16 audio. Filled before rendering; worker
# processes inherit it through fork.
_WORD_BANK: dict[tuple[str, float, int], dict[str, np.ndarray]] = {}


def number_words(n: int) -> str:
    """0..99 as words: 7 -> "seven", 42 -> "forty two"."""
    tens = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
    if n < 10:
        return DIGITS[n]
    if n < 20:
        return TEENS[n - 10]
    return tens[n // 10] + ("" if n % 10 == 0 else " " + DIGITS[n % 10])


def command_sentences() -> list[str]:
    """Every smart-home command of the corpus (about 150)."""
    sentences = [f"turn {state} the {room} light" for state in ("on", "off") for room in ROOMS]
    sentences += [f"dim the {room} light" for room in ROOMS]
    for verb in ("open", "close"):
        for thing in ("door", "window", "curtains"):
            sentences += [f"{verb} the {thing}"] + [f"{verb} the {room} {thing}" for room in ROOMS]
    sentences += [f"play some {genre} music" for genre in ("jazz", "rock", "classical", "pop")]
    sentences += ["stop the music", "pause the music", "play the next song", "play the last song",
                  "turn the volume up", "turn the volume down", "mute the speaker"]
    sentences += [f"set a timer for {number_words(n)} minutes" for n in (2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20, 30)]
    sentences += [f"set the heat to {number_words(n)} degrees" for n in range(60, 80)]
    sentences += [f"call {name}" for name in ("mom", "dad", "alice", "peter", "the office")]
    sentences += [f"{verb} the {side} door" for verb in ("lock", "unlock") for side in ("front", "back")]
    sentences += [f"{verb} the {device}" for verb in ("start", "stop")
                  for device in ("washing machine", "dishwasher", "vacuum", "fan")]
    return sentences


def question_pairs() -> list[tuple[str, str]]:
    """Every (question, answer) of the STTC domain: arithmetic and short facts (about 210)."""
    pairs = [(f"what is {DIGITS[a]} plus {DIGITS[b]}", number_words(a + b)) for a in range(10) for b in range(10)]
    pairs += [(f"what is {DIGITS[a]} minus {DIGITS[b]}", number_words(a - b))
              for a in range(10) for b in range(a + 1)]
    pairs += [(f"what number comes after {DIGITS[n]}", number_words(n + 1)) for n in range(9)]
    pairs += [(f"what number comes before {DIGITS[n]}", number_words(n - 1)) for n in range(1, 10)]
    colors = {"the sky": "blue", "grass": "green", "snow": "white", "coal": "black", "a banana": "yellow",
              "a tomato": "red", "an orange": "orange", "milk": "white", "a lemon": "yellow", "blood": "red"}
    pairs += [(f"what color is {thing}", color) for thing, color in colors.items()]
    legs = {"dog": "four", "cat": "four", "bird": "two", "spider": "eight", "ant": "six", "horse": "four",
            "duck": "two", "snake": "zero"}
    pairs += [(f"how many legs does a {animal} have", n) for animal, n in legs.items()]
    opposites = {"hot": "cold", "up": "down", "big": "small", "day": "night", "yes": "no", "left": "right",
                 "fast": "slow", "happy": "sad", "wet": "dry", "light": "dark"}
    pairs += [(f"what is the opposite of {word}", answer) for word, answer in opposites.items()]
    sounds = {"moo": "cow", "woof": "dog", "meow": "cat", "quack": "duck", "oink": "pig", "neigh": "horse"}
    pairs += [(f"which animal says {sound}", animal) for sound, animal in sounds.items()]
    pairs += [("how many days are in a week", "seven"), ("how many months are in a year", "twelve"),
              ("how many hours are in a day", "twenty four"), ("how many minutes are in an hour", "sixty")]
    return pairs


def sentence_pools(seed: int) -> dict[str, dict[str, list[tuple[str, str | None]]]]:
    """Disjoint command and question pools per split: split -> domain -> [(text, answer)]."""
    rng = np.random.default_rng([seed, 1])
    by_domain = {"command": [(text, None) for text in command_sentences()], "question": question_pairs()}
    pools: dict[str, dict[str, list[tuple[str, str | None]]]] = {split: {} for split in SPLITS}
    for domain, items in by_domain.items():
        order = [items[i] for i in rng.permutation(len(items))]
        n_test = max(1, round(POOL_FRACTIONS["test"] * len(order)))
        n_valid = max(1, round(POOL_FRACTIONS["valid"] * len(order)))
        pools["test"][domain] = pools["test_novel"][domain] = order[:n_test]
        pools["valid"][domain] = order[n_test : n_test + n_valid]
        pools["train"][domain] = order[n_test + n_valid :]
    return pools


def plan_split(split: str, count: int, seed: int, pools: dict[str, list[tuple[str, str | None]]],
               voice_ids: list[str], used_digits: set[str]) -> list[dict[str, Any]]:
    """Everything random about each sample of a split (text, voice, labels, pauses, event, seed)."""
    rng = np.random.default_rng([seed, 2, SPLITS.index(split)])
    n_digits = round(DOMAIN_FRACTIONS["digits"] * count)
    n_command = round(DOMAIN_FRACTIONS["command"] * count)
    domains = ["digits"] * n_digits + ["command"] * n_command + ["question"] * (count - n_digits - n_command)
    domains = [domains[i] for i in rng.permutation(count)]
    voices = [v for _ in range(-(-count // len(voice_ids))) for v in rng.permutation(voice_ids)]
    plans = []
    for i, domain in enumerate(domains):
        answer = None
        if domain == "digits":
            text = _new_digit_string(rng, used_digits)
        else:
            text, answer = pools[domain][int(rng.integers(len(pools[domain])))]
        words = text.split()
        plan: dict[str, Any] = {
            "key": f"mini_{split}_{i:06d}",
            "voice": str(voices[i]),
            "domain": domain,
            "words": words,
            "answer": answer,
            "labels": {
                "gender": VOICE_BY_ID[str(voices[i])].gender,
                **{kind: str(rng.choice(MINI_LABEL_SETS[kind])) for kind in ("age", "emotion", "style")},
            },
            "gaps": rng.uniform(0.06, 0.25, len(words) - 1).tolist(),
            "lead": float(rng.uniform(0.1, 0.3)),
            "trail": float(rng.uniform(0.1, 0.3)),
            "seed": int(rng.integers(2**63)),
        }
        plan["event"] = fx.draw_event(rng)
        plans.append(plan)
    return plans


def _proxy_set(plan: dict[str, Any]) -> fx.ProxySet:
    """The proxy set a planned sample is rendered with (plans made before ``--proxies``: relative)."""
    return fx.PROXY_SETS[plan.get("proxies", "relative")]


def render_sample(plan: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Audio (16 kHz float32) and JSON meta of one planned sample; needs the word bank filled."""
    rng = np.random.default_rng(plan["seed"])
    labels = plan["labels"]
    proxies = _proxy_set(plan)
    effects = proxies.time_effects(labels["age"], labels["emotion"])
    word_audio = [_WORD_BANK[(plan["voice"], *effects[i % len(effects)])][word].astype(np.float32) / 32767
                  for i, word in enumerate(plan["words"])]
    if labels["age"] == "OLD":
        word_audio = [fx.vibrato(audio, rng, cents=proxies.vibrato_cents) for audio in word_audio]
    pause_factor = fx.CHAT_PAUSE_FACTOR if labels["style"] == "CHAT" else 1.0
    pauses = [int(gap * pause_factor * SAMPLE_RATE) for gap in plan["gaps"]] + [int(plan["trail"] * SAMPLE_RATE)]
    pieces = [np.zeros(int(plan["lead"] * SAMPLE_RATE), np.float32)]
    spans = []
    position = len(pieces[0])
    for audio, pause in zip(word_audio, pauses):
        spans.append((position, position + len(audio)))
        pieces += [audio, np.zeros(pause, np.float32)]
        position += len(audio) + pause
    speech = np.concatenate(pieces)

    if labels["style"] == "WHISPER":
        speech = fx.whisper(speech, rng)
    speech = fx.emotion_filter(speech, labels["emotion"], proxies.happy_treble_db)
    if labels["age"] == "OLD":
        speech = fx.tremolo(speech, rng, depth=proxies.tremolo_depth)
    if labels["age"] == "CHILD" and proxies.child_flutter:
        rate_hz, depth = proxies.child_flutter
        speech = fx.tremolo(speech, rng, rate_hz=rate_hz, depth=depth)
    speech = fx.gate(speech, spans)
    speech /= max(np.abs(speech).max(), 1e-9)

    audio, shift, events = fx.add_event_and_level(speech, plan["event"], labels, rng)

    meta: dict[str, Any] = {
        "txt": " ".join(plan["words"]),
        "lang": "en",
        "speaker": plan["voice"],
        "domain": plan["domain"],
        "labels": {**labels, "events": events},
        "words": [[word, (start + shift) / SAMPLE_RATE, (end + shift) / SAMPLE_RATE]
                  for word, (start, end) in zip(plan["words"], spans)],
    }
    if plan["domain"] == "question":
        meta["question"] = meta["txt"]
        meta["answer"] = plan["answer"]
    return audio, meta


def build(out: str | os.PathLike, seed: int = 0, num_train: int = 4000, num_valid: int = 200,
          num_test: int = 400, workers: int = 2, force: bool = False, audio_format: str = "flac",
          num_test_novel: int = 200, proxies: str = "relative") -> dict[str, Any]:
    """Build the corpus into ``out`` (skipped when ``out/corpus.json`` has the same arguments)."""
    out = Path(out)
    args = {"seed": seed, "num_train": num_train, "num_valid": num_valid, "num_test": num_test,
            "num_test_novel": num_test_novel, "audio_format": audio_format}
    if proxies != "relative":  # only when set: corpora built before the option keep their arguments (no rebuild)
        args["proxies"] = proxies
    previous = previous_build(out, args, force)
    if previous is not None:
        return previous

    pools = sentence_pools(seed)
    train_ids = [v.id for v in VOICES if split_of_voice(v.id) == "train"]
    voices_of = {"train": train_ids, "valid": train_ids, "test": list(HELDOUT_VOICES), "test_novel": list(NOVEL_VOICES)}
    used_digits: set[str] = set()
    plans = {split: plan_split(split, count, seed, pools[split], voices_of[split], used_digits)
             for split, count in zip(SPLITS, (num_train, num_valid, num_test, num_test_novel)) if count}
    for plan in (plan for split_plans in plans.values() for plan in split_plans):
        plan["proxies"] = proxies
    f0_by_voice = _fill_word_bank([plan for split_plans in plans.values() for plan in split_plans], workers)
    for name in ("bell.oga", "alarm-clock-elapsed.oga"):
        fx._freedesktop_sound(name)  # load in this process, so that forked workers need no resampling

    counts = {split: _split_counts(out / split, split_plans, workers, audio_format) for split, split_plans in plans.items()}

    texts = [text for split_plans in plans.values() for plan in split_plans
             for text in (" ".join(plan["words"]), plan["answer"]) if text]
    # one tokenizer for the three mini stages: the dialogue corpus's fixed phrases too (data_prep.dialogue_rules)
    build_tokenizer(list(dict.fromkeys(texts + _prompt_texts() + dialogue_rules.tokenizer_texts())),
                    all_tags(MINI_LABEL_SETS) + EXTRA_TOKENS, out / "tokenizer", TOKENIZER_VOCAB)

    corpus = {
        "args": args,
        "label_sets": MINI_LABEL_SETS,
        "voices": [{"id": v.id, "engine": v.engine, "name": v.name, "options": list(v.options),
                    "gender": v.gender, "split": split_of_voice(v.id),
                    "median_f0": round(f0_by_voice[v.id], 1)} for v in VOICES],
        "f0_check": f0_check(f0_by_voice),
        "domain_fractions": DOMAIN_FRACTIONS,
        "counts": counts,
        "proxies": fx.proxies_doc(proxies),
        "event_placement": fx.EVENT_PLACEMENT,
    }
    write_corpus_json(out, corpus)
    return corpus


def split_of_voice(voice_id: str) -> str:
    return "heldout" if voice_id in HELDOUT_VOICES else "novel" if voice_id in NOVEL_VOICES else "train"


def f0_check(f0_by_voice: dict[str, float]) -> dict[str, Any]:
    """Per gender: training voices' median-F0 range and whether each held-out voice falls in it; the novel
    voices' F0 beside it (they may leave the range: that is part of what the test_novel split measures)."""
    result = {}
    for gender in MINI_LABEL_SETS["gender"]:
        f0 = {split: {v.id: round(f0_by_voice[v.id], 1) for v in VOICES
                      if v.gender == gender and split_of_voice(v.id) == split} for split in ("train", "heldout", "novel")}
        low, high = min(f0["train"].values()), max(f0["train"].values())
        result[gender] = {"train_range": [low, high], "heldout": f0["heldout"], "novel": f0["novel"],
                          "ok": all(low <= x <= high for x in f0["heldout"].values())}
    return result


def _new_digit_string(rng: np.random.Generator, used: set[str]) -> str:
    while True:
        text = " ".join(DIGITS[d] for d in rng.integers(0, 10, int(rng.integers(3, 9))))
        if text not in used:
            used.add(text)
            return text


def _prepare_voice(
    job: tuple[str, list[str], list[tuple[float, int]]],
) -> tuple[str, dict[tuple[str, float, int], dict[str, np.ndarray]], float]:
    """Synthesize a voice's words, make every needed (tempo, cents) version, measure median F0."""
    voice_id, words, effects = job
    base = synthesize_words(VOICE_BY_ID[voice_id], words)
    f0 = median_f0(np.concatenate([base[word] for word in DIGITS]))
    versions = {}
    for tempo, cents in effects:
        stretched = fx.stretch_words(base, tempo, cents)
        versions[(voice_id, tempo, cents)] = {
            word: np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16) for word, audio in stretched.items()
        }
    return voice_id, versions, f0


def _fill_word_bank(plans: list[dict[str, Any]], workers: int) -> dict[str, float]:
    """Fill ``_WORD_BANK`` for every (voice, time effect) the plans use; returns median F0 per voice."""
    used = {plan["voice"] for plan in plans}
    voices = [*VOICES, *(v for v in EXTRA_VOICES if v.id in used)]
    words: dict[str, set[str]] = {v.id: set(DIGITS) for v in voices}  # digits: every voice's F0 probe
    effects: dict[str, set[tuple[float, int]]] = {v.id: set() for v in voices}
    for plan in plans:
        words[plan["voice"]].update(plan["words"])
        effects[plan["voice"]].update(_proxy_set(plan).time_effects(plan["labels"]["age"], plan["labels"]["emotion"]))
    jobs = [(v.id, sorted(words[v.id]), sorted(effects[v.id])) for v in voices]
    f0_by_voice = {}
    _WORD_BANK.clear()
    with WorkerPool(workers) as pool:
        results = pool.imap_unordered(_prepare_voice, jobs) if pool else map(_prepare_voice, jobs)
        for voice_id, versions, f0 in tqdm(results, total=len(jobs), desc="voices", unit="voice"):
            _WORD_BANK.update(versions)
            f0_by_voice[voice_id] = f0
    return f0_by_voice


def _render_chunk(chunk: list[dict[str, Any]]) -> list[tuple[np.ndarray, dict[str, Any]]]:
    return [render_sample(plan) for plan in chunk]


def _split_counts(split_dir: Path, plans: list[dict[str, Any]], workers: int, audio_format: str) -> dict[str, Any]:
    total = write_split(split_dir, plans, _render_chunk, workers, audio_format)[0]["total"]
    return {"samples": total["samples"], "hours": total["hours"], "domains": total["domains"],
            "speakers": dict(sorted(Counter(plan["voice"] for plan in plans).items()))}


def _prompt_texts() -> list[str]:
    """Prompt strings of ``osum/tasks/prompts/en.yaml`` (tag string -> list of prompts), if present."""
    if not PROMPTS_FILE.exists():
        return []
    prompts = yaml.safe_load(PROMPTS_FILE.read_text(encoding="utf-8")) or {}
    return [str(text) for texts in prompts.values() for text in (texts or [])]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_prep.mini_corpus", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output directory (e.g. data/mini)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=4000)
    parser.add_argument("--num-valid", type=int, default=200)
    parser.add_argument("--num-test", type=int, default=400)
    parser.add_argument("--num-test-novel", type=int, default=200,
                        help="test_novel split: voices of variants no training or held-out voice uses")
    parser.add_argument("--workers", type=int, default=2, help="synthesis processes (results do not depend on it)")
    parser.add_argument("--audio-format", choices=["flac", "wav"], default="flac",
                        help="shard audio: flac (half the size) or 16-bit PCM wav (decodes about 5x faster)")
    parser.add_argument("--force", action="store_true", help="rebuild even if OUT/corpus.json matches")
    parser.add_argument("--proxies", choices=list(fx.PROXY_SETS), default="relative",
                        help="age and emotion proxy numbers (data_prep.mini_effects.PROXY_SETS)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    corpus = build(args.out, args.seed, args.num_train, args.num_valid, args.num_test, args.workers, args.force,
                   args.audio_format, args.num_test_novel, args.proxies)
    for split, counts in corpus["counts"].items():
        print(f"{split:10s} {counts['samples']:6d} samples {counts['hours']:.3f} h  {counts['domains']}")
    for gender, check in corpus["f0_check"].items():
        print(f"F0 {gender}: training range {check['train_range']} Hz, held out {check['heldout']}, ok={check['ok']}; "
              f"novel {check['novel']}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
