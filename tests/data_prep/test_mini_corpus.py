"""The synthetic mini corpus: splits, held-out voices, exact word timestamps, labels, domains."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from shard_samples import read_samples

from data_prep import mini_corpus, mini_effects
from data_prep.voices import apply_fades
from osum.data.index import read_index
from osum.tasks.labels import MINI_LABEL_SETS

SIZES = {"train": 12, "valid": 4, "test": 4, "test_novel": 4}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mini")
    mini_corpus.build(out, seed=0, num_train=SIZES["train"], num_valid=SIZES["valid"], num_test=SIZES["test"],
                      num_test_novel=SIZES["test_novel"], workers=1)
    return out


def test_splits_have_shards_and_index(corpus_dir: Path) -> None:
    for split, count in SIZES.items():
        index = read_index(corpus_dir / split)
        assert index["total"]["samples"] == count == len(read_samples(corpus_dir / split))
        assert all((corpus_dir / split / shard["path"]).exists() for shard in index["shards"])
    corpus = json.loads((corpus_dir / "corpus.json").read_text())
    assert corpus["args"]["num_train"] == SIZES["train"] and set(corpus["proxies"]) >= {"age", "emotion", "style"}
    assert (corpus_dir / "tokenizer" / "tokenizer.json").exists()


def test_voices_and_sentences_disjoint(corpus_dir: Path) -> None:
    by_split = {split: [meta for _, meta in read_samples(corpus_dir / split)] for split in SIZES}
    speakers = {split: {meta["speaker"] for meta in metas} for split, metas in by_split.items()}
    assert speakers["test"] <= set(mini_corpus.HELDOUT_VOICES)
    assert not speakers["test"] & (speakers["train"] | speakers["valid"])
    assert speakers["test_novel"] <= set(mini_corpus.NOVEL_VOICES)  # variants no other split's voice uses
    variant = {v.id: v.name.split("+")[-1] for v in mini_corpus.VOICES}
    others = {variant[s] for split in ("train", "valid", "test") for s in speakers[split]}
    assert not {variant[s] for s in speakers["test_novel"]} & others
    texts = {split: {meta["txt"] for meta in metas} for split, metas in by_split.items()}
    assert not texts["train"] & texts["valid"] and not texts["train"] & texts["test"] and not texts["valid"] & texts["test"]
    corpus = json.loads((corpus_dir / "corpus.json").read_text())
    train_voices = [v for v in corpus["voices"] if v["split"] == "train"]
    assert len(train_voices) >= 12 and sum(v["engine"] == "espeak" for v in train_voices) <= len(train_voices) // 2
    assert all(check["ok"] for check in corpus["f0_check"].values())  # held-out F0 inside training range


def test_meta_fields_labels_and_timestamps(corpus_dir: Path) -> None:
    for split in SIZES:
        for audio, meta in read_samples(corpus_dir / split):
            assert meta["lang"] == "en" and "task" not in meta
            assert meta["duration"] == pytest.approx(len(audio) / 16000)
            assert 0.8 < np.abs(audio).max() < 0.95 or meta["labels"]["emotion"] == "SAD"
            labels = meta["labels"]
            for kind in ("gender", "age", "emotion", "style"):
                assert labels[kind] in MINI_LABEL_SETS[kind]
            assert all(event in MINI_LABEL_SETS["events"] for event in labels["events"]) and len(labels["events"]) <= 1
            assert [w for w, _, _ in meta["words"]] == meta["txt"].split()
            times = [t for _, start, end in meta["words"] for t in (start, end)]
            assert times == sorted(times) and times[0] > 0 and times[-1] < meta["duration"]
            assert all(end > start for _, start, end in meta["words"])
            if meta["domain"] == "question":
                assert meta["question"] == meta["txt"] and meta["answer"]


def test_domains_present_in_train(corpus_dir: Path) -> None:
    domains = read_index(corpus_dir / "train")["total"]["domains"]
    assert set(domains) == {"digits", "command", "question"}
    assert all(n >= 0.15 * SIZES["train"] for n in domains.values())


def test_timestamps_exact_by_energy(corpus_dir: Path) -> None:
    """Pauses between words are near silent and every word span is loud, also after a prepended event."""
    samples = read_samples(corpus_dir / "train")
    audio, meta = next(((a, m) for a, m in samples if m["labels"]["events"] and m["words"][0][1] > 0.5), samples[0])

    def level_db(start_s: float, end_s: float) -> float:
        piece = audio[int(start_s * 16000) : int(end_s * 16000)]
        return 10 * np.log10(np.mean(piece.astype(np.float64) ** 2) + 1e-12)

    peak_db = 20 * np.log10(np.abs(audio).max())
    words = meta["words"]
    for _, start, end in words:
        assert level_db(start, end) > peak_db - 40
    for (_, _, end), (_, start, _) in zip(words, words[1:]):
        assert level_db(end + 0.012, start - 0.012) < peak_db - 50  # only the -60 dB noise floor


def test_rebuild_is_skipped(corpus_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shard = next((corpus_dir / "train").glob("shard-*.tar"))
    before = shard.stat().st_mtime_ns
    mini_corpus.build(corpus_dir, seed=0, num_train=SIZES["train"], num_valid=SIZES["valid"],
                      num_test=SIZES["test"], num_test_novel=SIZES["test_novel"], workers=1)
    assert "skipping" in capsys.readouterr().out and shard.stat().st_mtime_ns == before


def test_stretch_keeps_words_and_scales_time() -> None:
    rng = np.random.default_rng(0)
    words = {f"w{i}": apply_fades((0.3 * np.sin(np.arange(6400) * 0.1 * (i + 1))).astype(np.float32), 48)
             for i in range(3)}
    stretched = mini_effects.stretch_words(words, 1.2, 120)
    assert list(stretched) == list(words)
    for name, audio in stretched.items():
        assert abs(len(audio) - len(words[name]) / 1.2) < 0.02 * 16000
    for name in MINI_LABEL_SETS["events"]:
        sound = mini_effects.event_sound(name, "FEMALE", rng)
        assert 0.1 * 16000 < len(sound) < 1.5 * 16000 and np.abs(sound).max() == pytest.approx(1.0)


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        mini_corpus.main(["--help"])
    assert stop.value.code == 0 and "--num-train" in capsys.readouterr().out
