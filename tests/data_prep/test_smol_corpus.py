"""The smol corpus: whole-sentence TTS with word times, held-out voices, disjoint text pools, real clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rlazyload import write_lazyload
from shard_samples import read_samples

from data_prep import smol_corpus
from data_prep.sentence_tts import flite_phone_counts, synthesize_sentences
from data_prep.voices import Voice
from osum.tasks.labels import MINI_LABEL_SETS

SIZES = {"train": 10, "valid": 2, "test": 4}
WORDS = ("the gentleman was exceedingly pleased with her sister's answer and walked home before dinner "
         "while the carriage waited near the old house by the river").split()


def _novel(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, int(rng.integers(5, 10)))).capitalize() + "." for _ in range(n)] + [""]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = tmp_path_factory.mktemp("janeaustenr")
    write_lazyload(text / "data" / "Rdata", {"emma": _novel(30, 0), "persuasion": _novel(30, 1),
                                             "sensesensibility": ["He was not an ill disposed young man.", ""]})
    out = tmp_path_factory.mktemp("smol")
    smol_corpus.build(out, text, seed=0, num_train=SIZES["train"], num_valid=SIZES["valid"],
                      num_test=SIZES["test"], workers=1)
    return out


def test_splits_voices_and_disjoint_text(corpus_dir: Path) -> None:
    by_split = {split: read_samples(corpus_dir / split) for split in SIZES}
    assert {split: len(s) for split, s in by_split.items()} == SIZES
    assert {m["speaker"] for _, m in by_split["test"]} <= set(smol_corpus.HELDOUT_VOICES)
    assert {m["speaker"] for s in ("train", "valid") for _, m in by_split[s]} <= set(smol_corpus.TRAIN_VOICES)
    train_texts = {m["txt"] for _, m in by_split["train"] if m["domain"] == "austen"}
    for split in ("valid", "test"):
        assert not train_texts & {m["txt"] for _, m in by_split[split] if m["domain"] == "austen"}
    for audio, meta in (x for s in by_split.values() for x in s):
        assert 0.0 < np.abs(audio).max() <= 0.91 and audio.dtype == np.float32
        for kind in ("gender", "age", "emotion", "style"):
            assert meta["labels"][kind] in MINI_LABEL_SETS[kind]
        if meta["domain"] == "question":
            assert meta["answer"] and meta["question"] == meta["txt"]


def test_word_times_follow_the_words_inside_the_audio(corpus_dir: Path) -> None:
    timed = [(a, m) for s in ("train", "valid", "test") for a, m in read_samples(corpus_dir / s) if "words" in m]
    assert timed, "flite and festival samples carry word times"
    for audio, meta in timed:
        assert [w for w, _, _ in meta["words"]] == meta["txt"].split()
        bounds = [t for _, start, end in meta["words"] for t in (start, end)]
        assert bounds == sorted(bounds) and bounds[-1] <= len(audio) / 16000 + 1e-3


def test_real_recordings_with_transcripts(corpus_dir: Path) -> None:
    real = {m["key"]: m for _, m in read_samples(corpus_dir / "real")}
    assert len(real) == 10
    assert real["real_librivox_sense_and_sensibility_01_austen_64kb-0880"]["txt"] == "he was not an ill disposed young man"
    assert real["real_cards_004"]["txt"] == "five five"


def test_corpus_json_counts_word_times_and_fallbacks(corpus_dir: Path) -> None:
    corpus = json.loads((corpus_dir / "corpus.json").read_text())
    assert corpus["counts"]["train"]["samples"] == SIZES["train"]
    assert "chat_fell_back_to_news" in corpus["counts"]["train"]
    assert sum(v["split"] == "heldout" for v in corpus["voices"]) == 4


def test_flite_and_festival_word_times_espeak_none() -> None:
    text = "the gentleman walked home before dinner"
    counts = flite_phone_counts(text.split())
    assert set(counts) == set(text.split()) and all(n > 0 for n in counts.values())
    for voice in (Voice("f", "flite", "slt", "FEMALE"), Voice("k", "festival", "kal_diphone", "MALE")):
        (audio, words), = synthesize_sentences(voice, [text], phone_counts=counts)
        assert [w for w, _, _ in words] == text.split()
        assert 0 < words[0][1] < words[-1][2] <= len(audio) / 16000
    (audio, words), = synthesize_sentences(Voice("e", "espeak", "en-us+m3", "MALE"), [text])
    assert words is None and len(audio) > 16000
