"""Mini empathetic dialogue corpus: spoken user turns whose cues the reply must depend on, replies by rule,
both think forms, multi-turn chains with memory.

    python -m data_prep.dialogue_corpus --out data/mini_dialogue [--seed 0] [--num-train 1600 --num-train-multi 800]
        [--workers 2] [--force] [--more-voices] [--proxies relative|salient|marked]

Writes ``OUT/{train,valid,test}/shard-*.tar`` + ``index.json`` and ``OUT/corpus.json``. Then
``python -m osum.speech_tokens extract --member reply_flac`` adds the reply's speech codes for S2S.

- **User turns** are rendered like the mini corpus (``data_prep.mini_corpus.render_sample``: words spoken one
  by one by a voice, the age and emotion proxies of ``data_prep.mini_effects``, ``--proxies`` picks the proxy
  set; an event on half of the turns); gender comes from the voice. Training voices for train and valid
  (``--more-voices``: 12 espeak-ng voices more, ``mini_corpus.EXTRA_VOICES``), the two held-out voices for test.
  Words: the mini corpus's commands and questions (its disjoint per-split pools), and the memory sentences of
  ``data_prep.dialogue_rules``.
- **Replies** follow ``data_prep.dialogue_rules``: address from age and gender, a phrase from the emotion, a
  phrase from the event, then the content (a command confirmed, a question answered, a memory recalled).
  Spoken whole by flite slt (the TTS corpus's voice, so the TTS stage and token2wav know it): member
  ``KEY.reply_flac`` (``reply_flac_i`` for history turn i).
- **Think**: ``think`` holds the natural-language form, ``reply_emotion`` the predicted reply emotion; the tag
  form is rendered by the task registry from ``txt``, ``labels`` and ``reply_emotion`` (``rendering.think``).
- **Multi-turn** (``--num-<split>-multi`` dialogues of 2-5 turns, same speaker): turn 1 says a name, a timer or a
  complaint, middle turns are ordinary commands and questions, the last asks for what turn 1 said. Stored
  as the original's members (``KEY.flac_i`` user audio of turn i) and ``history`` ``[{audio, text,
  user_text, reply_audio}]``; train and valid keep every prefix of a dialogue (one sample per turn), test
  only the final turn. The first multi-turn test dialogues are also files for a command-line session
  (``OUT/sessions/<id>/turn_<i>.flac`` and ``session.json``).
- **Expectations** for scoring (``expect``): the reply's parts (address, emotion, event, content), the
  language think's cue phrases (person, mood, event) and, on a memory query, the remembered value as the
  reply says it (``memory``; ``memory_said``: as turn 1 said it), so ``osum.evaluate echat`` scores from the data, without these rules.

Everything random derives from ``--seed``; the shards do not depend on the number of workers.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from data_prep import dialogue_rules as rules
from data_prep import mini_corpus as mc
from data_prep import mini_effects as fx
from data_prep.corpus_files import CORPUS_FILE, SHARD_SIZE, WorkerPool, previous_build, write_corpus_json
from data_prep.sentence_tts import synthesize_sentences
from data_prep.tts_corpus import PEAK, clip_silence
from osum.data.index import build_index, write_index
from osum.data.shards import SAMPLE_RATE, ShardWriter
from osum.tasks.labels import MINI_LABEL_SETS

SPLITS = ("train", "valid", "test")
ASSISTANT_VOICE = "flite-slt"
REPLY_MEMBER = "reply_flac"
# (single-turn, multi-turn). Train has 800 multi-turn dialogues: with 320 (one memory query each) the mini model
# answered the kind of query but guessed the value (memory 32.5% at 800 steps; recipes/mini/README.md, "Dialogue")
DEFAULT_COUNTS = {"train": (1600, 800), "valid": (60, 16), "test": (240, 80)}
TURNS = (2, 5)
SESSIONS = 3  # multi-turn test dialogues also written as files for `osum.infer --mode s2t|s2s` (OUT/sessions)


def plan_dialogues(split: str, n_single: int, n_multi: int, seed: int,
                   pools: dict[str, list[tuple[str, str | None]]], voice_ids: list[str]) -> list[dict[str, Any]]:
    """Every dialogue of a split: its speaker, age, and turns (words, content, cues, memory)."""
    rng = np.random.default_rng([seed, 7, SPLITS.index(split)])
    n = n_single + n_multi
    voices = [v for _ in range(-(-n // len(voice_ids))) for v in rng.permutation(voice_ids)]
    kinds = list(rules.MEMORY_KINDS)
    dialogues = []
    for d in range(n):
        voice = str(voices[d])
        age = str(rng.choice(MINI_LABEL_SETS["age"]))
        if d < n_single:
            turns = [_ordinary_turn(rng, pools)]
        else:
            kind = rules.MEMORY_KINDS[kinds[int(rng.integers(len(kinds)))]]
            value = kind.values[int(rng.integers(len(kind.values)))]
            n_turns = int(rng.integers(TURNS[0], TURNS[1] + 1))
            turns = [{"words": rules.fill(kind.say, value), "domain": "memory_set",
                      "content": rules.fill(kind.acknowledge, value)}]
            turns += [_ordinary_turn(rng, pools) for _ in range(n_turns - 2)]
            turns.append({"words": kind.ask, "domain": "memory_query", "content": rules.fill(kind.answer, value),
                          "memory": rules.fill("{r}", value), "memory_said": value, "memory_kind": kind.name})
        for t, turn in enumerate(turns):
            turn["emotion"] = str(rng.choice(MINI_LABEL_SETS["emotion"]))
            turn["plan"] = _turn_plan(f"dlg_{split}_{d:05d}_{t}", voice, age, turn, rng)
        dialogues.append({"id": f"dlg_{split}_{d:05d}", "voice": voice, "age": age, "turns": turns,
                          "multi": d >= n_single})
    return dialogues


def _ordinary_turn(rng: np.random.Generator, pools: dict[str, list[tuple[str, str | None]]]) -> dict[str, Any]:
    domain = "command" if rng.random() < 0.5 else "question"
    text, answer = pools[domain][int(rng.integers(len(pools[domain])))]
    content = rules.command_content(text) if domain == "command" else rules.question_content(str(answer))
    return {"words": text, "domain": domain, "content": content}


def _turn_plan(key: str, voice: str, age: str, turn: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """A ``mini_corpus.render_sample`` plan for the user's audio of one turn."""
    words = turn["words"].split()
    return {"key": key, "voice": voice, "domain": turn["domain"], "words": words, "answer": None,
            "labels": {"gender": mc.VOICE_BY_ID[voice].gender, "age": age, "emotion": turn["emotion"],
                       "style": "NEWS"},
            "gaps": rng.uniform(0.06, 0.25, len(words) - 1).tolist(), "lead": float(rng.uniform(0.1, 0.3)),
            "trail": float(rng.uniform(0.1, 0.3)), "seed": int(rng.integers(2**63)), "event": fx.draw_event(rng)}


def render_dialogue(dialogue: dict[str, Any]) -> list[dict[str, Any]]:
    """Each turn's user audio and meta, reply text and parts (the reply audio is rendered by voice later)."""
    out = []
    for turn in dialogue["turns"]:
        audio, meta = mc.render_sample(turn["plan"])
        events = meta["labels"]["events"]
        cues = rules.Cues(age=dialogue["age"], gender=meta["labels"]["gender"], emotion=turn["emotion"],
                          event=events[0] if events else None)
        parts = rules.reply_parts(cues, turn["content"])
        out.append({"audio": audio, "meta": meta, "cues": cues, "parts": parts, "reply": rules.reply_text(parts)})
    return out


def _render_chunk(dialogues: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    rendered = [render_dialogue(d) for d in dialogues]
    replies = [t["reply"] for turns in rendered for t in turns]
    spoken = iter(synthesize_sentences(mc.VOICE_BY_ID[ASSISTANT_VOICE], replies))
    for turns in rendered:
        for t in turns:
            audio = clip_silence(next(spoken)[0], t["reply"])
            t["reply_audio"] = audio * (PEAK / float(np.abs(audio).max()))
    return rendered


def sample_meta(dialogue: dict[str, Any], rendered: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """The JSON of the sample whose current turn is turn ``k`` (earlier turns are its history)."""
    turn, plan_turn = rendered[k], dialogue["turns"][k]
    meta = dict(turn["meta"])
    meta.pop("words", None)
    meta.pop("question", None)  # the user's words are ``txt``; a reply is not a short answer to score exactly
    cues = turn["cues"]
    meta.update(answer=turn["reply"], reply_emotion=cues.reply_emotion,
                think=rules.language_think(cues, plan_turn["words"]),
                dialogue={"id": dialogue["id"], "turn": k + 1, "turns": len(rendered)},
                expect={"parts": turn["parts"], "think": rules.think_parts(cues)})
    if plan_turn.get("memory"):
        meta["expect"].update(memory=plan_turn["memory"], memory_said=plan_turn["memory_said"],
                              memory_kind=plan_turn["memory_kind"])
    if k:
        meta["history"] = [{"text": rendered[j]["reply"], "user_text": dialogue["turns"][j]["words"],
                            "reply_audio": f"{REPLY_MEMBER}_{j + 1}"} for j in range(k)]
    return meta


def write_session(out: Path, dialogue: dict[str, Any], rendered: list[dict[str, Any]]) -> None:
    """A multi-turn test dialogue as files for a session from the command line: ``turn_<i>.flac`` (the user's
    audio of turn i) and ``session.json`` (what each turn says and the reply it expects)."""
    out.mkdir(parents=True, exist_ok=True)
    turns = []
    for i, (turn, rendered_turn) in enumerate(zip(dialogue["turns"], rendered), 1):
        sf.write(out / f"turn_{i}.flac", rendered_turn["audio"], SAMPLE_RATE)
        turns.append({"audio": f"turn_{i}.flac", "words": turn["words"], "cues": vars(rendered_turn["cues"]),
                      "expected_reply": rendered_turn["reply"]})
    (out / "session.json").write_text(json.dumps({"id": dialogue["id"], "turns": turns}, indent=1) + "\n")


def write_dialogue_split(split_dir: Path, dialogues: list[dict[str, Any]], workers: int, all_prefixes: bool,
                         chunk_size: int = 8, sessions: int = 0) -> dict[str, Any]:
    """Render ``dialogues`` into fresh shards of ``split_dir``; returns the split's index. The first ``sessions``
    multi-turn dialogues are also written as session files (``write_session``) under ``split_dir/../sessions``."""
    split_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*split_dir.glob("shard-*.tar"), *split_dir.glob("shard-*.tar.tmp")]:
        stale.unlink()
    chunks = [dialogues[i : i + chunk_size] for i in range(0, len(dialogues), chunk_size)]
    writer = ShardWriter(split_dir, max_samples=SHARD_SIZE, audio_format="flac")
    with WorkerPool(workers) as pool, writer:
        results = pool.imap(_render_chunk, chunks) if pool else map(_render_chunk, chunks)
        with tqdm(total=len(dialogues), desc=split_dir.name, unit="dialogue") as progress:
            for chunk, rendered_chunk in zip(chunks, results):
                for dialogue, rendered in zip(chunk, rendered_chunk):
                    if dialogue["multi"] and sessions > 0:
                        write_session(split_dir.parent / "sessions" / dialogue["id"], dialogue, rendered)
                        sessions -= 1
                    for k in range(len(rendered)) if all_prefixes else [len(rendered) - 1]:
                        extra = {REPLY_MEMBER: rendered[k]["reply_audio"]}
                        extra.update({f"{REPLY_MEMBER}_{j + 1}": rendered[j]["reply_audio"] for j in range(k)})
                        writer.write(f"{dialogue['id']}_{k}", rendered[k]["audio"], SAMPLE_RATE,
                                     sample_meta(dialogue, rendered, k),
                                     history_audio=[rendered[j]["audio"] for j in range(k)] or None,
                                     extra_audio=extra)
                progress.update(len(chunk))
    index = build_index(writer.stats)
    write_index(split_dir, index)
    return index


def voices_of_splits(more_voices: bool = False) -> dict[str, list[str]]:
    """User voices per split: the mini corpus's training voices (``more_voices``: and its ``EXTRA_VOICES``) for
    train and valid, its two held-out voices for test."""
    train = [v.id for v in mc.VOICES if mc.split_of_voice(v.id) == "train"]
    train += [v.id for v in mc.EXTRA_VOICES] if more_voices else []
    return {"train": train, "valid": train, "test": list(mc.HELDOUT_VOICES)}


def build(out: str | os.PathLike, seed: int = 0, counts: dict[str, tuple[int, int]] | None = None,
          workers: int = 2, force: bool = False, more_voices: bool = False, proxies: str = "relative") -> dict[str, Any]:
    """Build the corpus into ``out`` (skipped when ``out/corpus.json`` has the same arguments)."""
    out = Path(out)
    counts = {**DEFAULT_COUNTS, **(counts or {})}
    args = {"seed": seed, "counts": {s: list(c) for s, c in counts.items()}}
    if more_voices:  # only when set: corpora built before the option keep their arguments (no rebuild)
        args["more_voices"] = True
    if proxies != "relative":
        args["proxies"] = proxies
    previous = previous_build(out, args, force)
    if previous is not None:
        return previous
    (out / CORPUS_FILE).unlink(missing_ok=True)
    pools = mc.sentence_pools(seed)
    voices_of = voices_of_splits(more_voices)
    plans = {split: plan_dialogues(split, *counts[split], seed, pools[split], voices_of[split]) for split in SPLITS}
    turn_plans = [t["plan"] for ds in plans.values() for d in ds for t in d["turns"]]
    for plan in turn_plans:
        plan["proxies"] = proxies
    mc._fill_word_bank(turn_plans, workers)
    for name in ("bell.oga", "alarm-clock-elapsed.oga"):
        fx._freedesktop_sound(name)  # loaded here, so forked workers need no resampling
    summary = {}
    for split in SPLITS:
        # written in a seeded random order: every shard mixes single- and multi-turn dialogues (written in plan
        # order, the multi-turn ones filled the last shards and a reader's first batches were all history turns)
        order = np.random.default_rng([seed, 11, SPLITS.index(split)]).permutation(len(plans[split]))
        index = write_dialogue_split(out / split, [plans[split][i] for i in order], workers, all_prefixes=split != "test",
                                     sessions=SESSIONS if split == "test" else 0)
        turns = [t for d in plans[split] for t in d["turns"]]
        summary[split] = {"samples": index["total"]["samples"], "hours": index["total"]["hours"],
                          "dialogues": len(plans[split]), "multi_turn": sum(d["multi"] for d in plans[split]),
                          "turns": len(turns), "domains": dict(Counter(t["domain"] for t in turns)),
                          "speakers": dict(sorted(Counter(d["voice"] for d in plans[split]).items()))}
    corpus = {"args": args, "assistant_voice": ASSISTANT_VOICE, "reply_member": REPLY_MEMBER,
              "rules": {"address": {f"{a}/{g}": v for (a, g), v in rules.ADDRESS.items()},
                        "emotion": rules.EMOTION_REPLY, "event": {str(k): v for k, v in rules.EVENT_PHRASE.items()},
                        "memory": [k.name for k in rules.MEMORY_KINDS.values()]},
              "proxies": fx.proxies_doc(proxies), "counts": summary}
    write_corpus_json(out, corpus)
    return corpus


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_prep.dialogue_corpus", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output directory (e.g. data/mini_dialogue)")
    parser.add_argument("--seed", type=int, default=0, help="the mini corpus seed (same sentence pools)")
    for split in SPLITS:
        single, multi = DEFAULT_COUNTS[split]
        parser.add_argument(f"--num-{split}", type=int, default=single, help=f"single-turn dialogues of {split}")
        parser.add_argument(f"--num-{split}-multi", type=int, default=multi, help=f"multi-turn dialogues of {split}")
    parser.add_argument("--workers", type=int, default=2, help="synthesis processes (results do not depend on it)")
    parser.add_argument("--force", action="store_true", help="rebuild even if OUT/corpus.json matches")
    parser.add_argument("--more-voices", action="store_true",
                        help="train and valid also spoken by data_prep.mini_corpus.EXTRA_VOICES (12 espeak-ng voices)")
    parser.add_argument("--proxies", choices=list(fx.PROXY_SETS), default="relative",
                        help="age and emotion proxy numbers of the user turns (data_prep.mini_effects.PROXY_SETS)")
    args = parser.parse_args(argv)
    counts = {s: (getattr(args, f"num_{s}"), getattr(args, f"num_{s}_multi")) for s in SPLITS}
    start = time.perf_counter()
    corpus = build(args.out, args.seed, counts, args.workers, args.force, args.more_voices, args.proxies)
    for split, c in corpus["counts"].items():
        print(f"{split:5s} {c['samples']:5d} samples {c['hours']:.3f} h  {c['dialogues']} dialogues "
              f"({c['multi_turn']} multi-turn, {c['turns']} turns)  {c['domains']}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
