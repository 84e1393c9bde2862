"""The mini TTS corpus: disjoint splits, neutral clean speech with clipped edge silence, text-only chat."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep import tts_corpus
from data_prep.mini_corpus import VOICE_BY_ID, command_sentences, question_pairs
from data_prep.voices import median_f0
from osum.data.index import read_index
from osum.data.reader import read_shard
from osum.data.skips import SkipCounter

N_SENTENCES = 3  # per domain and split
VOICE = "flite-slt"


def read_split(split_dir: Path) -> list[tuple[np.ndarray | None, dict]]:
    """Every sample through the project's shard reader: (16 kHz audio or None, meta)."""
    samples = []
    for shard in sorted(split_dir.glob("*.tar")):
        skips = SkipCounter()
        for raw in read_shard(str(shard), skips):
            audio = None
            if raw.audio is not None:
                audio, sr = sf.read(io.BytesIO(raw.audio), dtype="float32")
                assert sr == 16000
            samples.append((audio, raw.meta))
        assert skips.total == 0
    return samples


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: str) -> Path:
    out = tmp_path_factory.mktemp("mini_tts")
    tts_corpus.build(out, seed=0, voices=[VOICE], workers=1, max_sentences=N_SENTENCES,
                     tokenizer_dir=tokenizer_dir)
    return out


@pytest.fixture(scope="module")
def splits(corpus_dir: Path) -> dict[str, list[tuple[np.ndarray | None, dict]]]:
    return {split: read_split(corpus_dir / split) for split in tts_corpus.SPLITS}


def test_counts_index_and_corpus_json(corpus_dir: Path, splits: dict) -> None:
    corpus = json.loads((corpus_dir / "corpus.json").read_text())
    assert corpus["args"]["voices"] == [VOICE] and corpus["voices"][0]["gender"] == "FEMALE"
    for split, samples in splits.items():
        n_text = N_SENTENCES if split == "train" else 0  # every training question once as text
        assert len(samples) == 2 * N_SENTENCES + n_text == read_index(corpus_dir / split)["total"]["samples"]
        counts = corpus["counts"][split]
        assert counts["audio_samples"] == 2 * N_SENTENCES and counts["text_only"] == n_text
        assert counts["sentences"] == {"command": N_SENTENCES, "question": N_SENTENCES}
        assert 0 < counts["hours"] < 0.01
    assert corpus["tokenizer"]["checked"] and corpus["tokenizer"]["ok"] and corpus["tokenizer"]["words"] > 10
    test_texts = {meta["txt"] for _, meta in splits["test"]}
    assert set(corpus["references"]) == {VOICE} and corpus["references"][VOICE] in test_texts  # a held-out clip
    reference, sr = sf.read(corpus_dir / "references" / f"{VOICE}.wav", dtype="float32")
    assert sr == 16000 and 0.5 < len(reference) / sr < 10 and np.abs(reference).max() > 0.1


def test_splits_disjoint_in_text(splits: dict) -> None:
    texts = {split: {meta["txt"] for _, meta in samples} for split, samples in splits.items()}
    assert not texts["train"] & texts["valid"] and not texts["train"] & texts["test"]
    assert not texts["valid"] & texts["test"]


def test_sample_fields(splits: dict) -> None:
    known = set(command_sentences()) | {q for q, _ in question_pairs()}
    answers = dict(question_pairs())
    for samples in splits.values():
        for audio, meta in samples:
            if audio is None:
                continue
            assert re.fullmatch(r"[a-z]+( [a-z]+)*", meta["txt"]) and meta["txt"] in known
            assert meta["speaker"] == VOICE and meta["lang"] == "en"
            assert meta["domain"] in ("command", "question")
            assert meta["labels"] == {"gender": "FEMALE", "age": "ADULT", "emotion": "NEUTRAL",
                                      "style": "NEWS", "events": []}
            if meta["domain"] == "question":
                assert meta["question"] == meta["txt"] and meta["answer"] == answers[meta["txt"]]
            else:
                assert "question" not in meta and "answer" not in meta


def test_audio_is_clipped_speech(splits: dict) -> None:
    for samples in splits.values():
        for audio, meta in samples:
            if audio is None:
                continue
            n_words = len(meta["txt"].split())
            seconds = len(audio) / 16000
            assert meta["duration"] == pytest.approx(seconds)
            assert 0.2 + 0.15 * n_words < seconds < 0.2 + 0.8 * n_words, meta["txt"]
            assert np.abs(audio).max() == pytest.approx(0.9, abs=0.01)
            # 0.1 s of edge silence: the first 90 ms and last 90 ms are quiet, the speech starts right after.
            assert np.abs(audio[:1440]).max() < 0.05 and np.abs(audio[-1440:]).max() < 0.05
            assert np.abs(audio[1600:2400]).max() > 0.01
            assert 130 < median_f0(audio) < 300  # a female voice


def test_text_only_samples_in_train(splits: dict) -> None:
    text_only = [meta for audio, meta in splits["train"] if audio is None]
    train_questions = {meta["txt"] for audio, meta in splits["train"]
                       if audio is not None and meta["domain"] == "question"}
    assert {meta["question"] for meta in text_only} == train_questions
    assert len(text_only) == len(train_questions)
    for meta in text_only:
        assert meta["txt"] == meta["question"] and meta["answer"] and meta["domain"] == "text_chat"
        assert "duration" not in meta
    assert all(audio is not None for split in ("valid", "test") for audio, _ in splits[split])


def test_rebuild_skipped_with_same_args(corpus_dir: Path, tokenizer_dir: str,
                                        capsys: pytest.CaptureFixture) -> None:
    shard = next((corpus_dir / "train").glob("*.tar"))
    mtime = shard.stat().st_mtime_ns
    corpus = tts_corpus.build(corpus_dir, seed=0, voices=[VOICE], workers=1, max_sentences=N_SENTENCES,
                              tokenizer_dir=tokenizer_dir)
    assert "skipping" in capsys.readouterr().out and shard.stat().st_mtime_ns == mtime
    assert corpus["counts"]["train"]["audio_samples"] == 2 * N_SENTENCES


def test_unknown_voice_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ValueError, match=r"unknown voice\(s\) flite-nobody; known voices: .*flite-slt"):
        tts_corpus.build(tmp_path, voices="flite-slt,flite-nobody")
    with pytest.raises(SystemExit):
        tts_corpus.main(["--out", str(tmp_path), "--voices", "espeak-xx"])
    assert "unknown voice(s) espeak-xx" in capsys.readouterr().err
    assert not (tmp_path / "corpus.json").exists()


def test_num_train_subsets_or_repeats_with_speed_changes() -> None:
    sentences = tts_corpus.split_sentences(0, 2)["train"]
    voices = ["flite-slt", "festival-kal"]
    subset = tts_corpus.plan_split("train", sentences, voices, seed=0, count=5)
    assert len(subset) == 5 and all(p["stretch"] == 1.0 for p in subset)
    repeated = tts_corpus.plan_split("train", sentences, voices, seed=0, count=3 * len(sentences) * 2)
    copies = [p for p in repeated if p["copy"] > 0]
    assert copies and all(p["voice"] == "flite-slt" for p in copies)  # festival has no cheap speed option
    assert all(0.85 <= p["stretch"] <= 1.15 and p["stretch"] != 1.0 for p in copies)
    assert len(repeated) == len(sentences) * 2 + len(copies)
    assert len({p["key"] for p in repeated}) == len(repeated)
    espeak = VOICE_BY_ID["espeak-en-us-m3"]  # -s 165 of its own: a later -s overrides it
    assert tts_corpus.speed_options(espeak, 1.1) == ("-s", "150")


def test_speed_copy_is_longer() -> None:
    plans = [{"key": f"k{i}", "voice": VOICE, "domain": "command", "text": "open the kitchen window",
              "answer": None, "copy": i, "stretch": stretch} for i, stretch in enumerate((1.0, 1.15))]
    (normal, meta), (slow, slow_meta) = tts_corpus.render_chunk(plans)
    assert len(slow) > 1.08 * len(normal)
    assert slow_meta["speed_stretch"] == 1.15 and "speed_stretch" not in meta


def test_clip_silence() -> None:
    tone = 0.5 * np.sin(np.arange(8000) * 0.1).astype(np.float32)
    audio = np.concatenate([np.zeros(8000, np.float32), tone, np.zeros(320, np.float32)])
    clipped = tts_corpus.clip_silence(audio, "k")
    assert len(clipped) == 1600 + 8000 + 1600
    assert np.array_equal(clipped[1600:9600], tone) and not clipped[:1600].any() and not clipped[9600:].any()
    with pytest.raises(ValueError, match="tts_x: the synthesized audio is silent"):
        tts_corpus.clip_silence(np.zeros(16000, np.float32), "tts_x")


def test_extra_split_is_open_vocabulary_without_held_out_words(tmp_path: Path) -> None:
    from rlazyload import write_lazyload

    banned = tts_corpus.held_out_words(tts_corpus.split_sentences(0, N_SENTENCES))
    assert {"speaker", "snow"} <= banned and "the" not in banned  # "the" is in training sentences too
    novel = ["She walked along the river with her sister.", "", "The carriage was late that evening.", "",
             "He heard the speaker in the hall.", "", "Their letters came every week from town.", "",
             "Too short.", ""]
    write_lazyload(tmp_path / "austen" / "data" / "Rdata", {"emma": novel})
    out = tmp_path / "corpus"
    corpus = tts_corpus.build(out, seed=0, voices=[VOICE, "flite-kal16"], workers=1, max_sentences=N_SENTENCES,
                              tokenizer_dir=None, extra=3, text_dir=tmp_path / "austen")
    extra = read_split(out / tts_corpus.EXTRA_SPLIT)
    texts = sorted(meta["txt"] for _, meta in extra)
    assert texts == ["she walked along the river with her sister", "the carriage was late that evening",
                     "their letters came every week from town"]  # the sentence with "speaker" is left out
    assert sorted(meta["speaker"] for _, meta in extra) == sorted([VOICE, VOICE, "flite-kal16"])
    assert all(audio is not None and len(audio) > 8000 for audio, _ in extra)
    assert corpus["counts"]["extra"]["audio_samples"] == 3 and corpus["args"]["extra"] == 3
    assert not any(meta["txt"] in texts for split in tts_corpus.SPLITS for _, meta in read_split(out / split))
    with pytest.raises(ValueError, match="only 3 usable sentences"):
        tts_corpus.build(tmp_path / "again", seed=0, voices=[VOICE], workers=1, max_sentences=N_SENTENCES,
                         tokenizer_dir=None, extra=4, text_dir=tmp_path / "austen")
