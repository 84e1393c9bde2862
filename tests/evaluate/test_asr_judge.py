"""The ASR judge (real Whisper tiny.en), WER normalization of Whisper's written forms, and the TTS table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_prep.mini_corpus import VOICE_BY_ID
from data_prep.sentence_tts import synthesize_sentences
from osum.evaluate.normalize import normalize_for_wer, number_to_words, ordinal_to_words
from osum.evaluate.tts_table import format_markdown, tts_table
from osum.metrics.wer import ErrorRate

WHISPER = Path(__file__).resolve().parents[2] / "assets" / "whisper-tiny.en"
SENTENCES = ["turn on the kitchen light", "set the heat to seventy two degrees", "what is seven plus eight"]


@pytest.fixture(scope="module")
def judge():
    if not (WHISPER / "config.json").is_file():
        pytest.skip(f"{WHISPER} is missing (make assets converts Whisper tiny.en into it)")
    from osum.evaluate.asr import AsrJudge

    return AsrJudge(WHISPER, batch_size=4)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    return [audio for audio, _ in synthesize_sentences(VOICE_BY_ID["flite-slt"], SENTENCES)]


@pytest.mark.parametrize(("written", "spoken"), [
    ("Set the heat to 72 degrees.", "set the heat to seventy two degrees"),
    ("What is 7 plus 8?", "what is seven plus eight"),
    ("What's 7+8?", "what is seven plus eight"),
    ("Set a timer for 15 minutes.", "set a timer for fifteen minutes"),
    ("How many hours are in a day? 24.", "how many hours are in a day twenty four"),
    ("Twenty-one", "twenty one"),
    ("It's 3:00, not 3:05 or 10:45.", "it is three o'clock not three oh five or ten forty five"),
    ("50% of 1,000 is 500", "fifty percent of one thousand is five hundred"),
    ("the 21st and 3rd, 2.5 $5 72°",
     "the twenty first and third two point five five dollars seventy two degrees"),
    ("Don't stop the music!", "do not stop the music"),
    ("<HAPPY> Call Mom.", "call mom"),
    ("the dog's bone", "the dog's bone"),
])
def test_normalize_for_wer(written: str, spoken: str) -> None:
    assert normalize_for_wer(written) == spoken
    assert normalize_for_wer(spoken) == spoken  # references in spoken form stay as they are


def test_number_words() -> None:
    assert [number_to_words(n) for n in (0, 13, 40, 99, 105, 1000, 21000, 1_000_001)] == [
        "zero", "thirteen", "forty", "ninety nine", "one hundred five", "one thousand", "twenty one thousand",
        "one million one"]
    assert [ordinal_to_words(n) for n in (1, 2, 12, 20, 23)] == ["first", "second", "twelfth", "twentieth",
                                                                  "twenty third"]
    with pytest.raises(ValueError, match="non-negative"):
        number_to_words(-1)


def test_judge_transcribes_a_real_clip(judge, clips: list[np.ndarray]) -> None:
    hyp = judge.transcribe(clips[:1])
    assert len(hyp) == 1
    wer = ErrorRate()
    wer.add(normalize_for_wer(SENTENCES[0]), normalize_for_wer(hyp[0]))
    assert wer.rate <= 0.2, hyp
    with pytest.raises(ValueError, match="clip 1: expected non-empty 1-D"):
        judge.transcribe([clips[0], np.zeros((2, 100), np.float32)])


def test_table_true_audio_vs_noise(judge, clips: list[np.ndarray], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    true_row = [(f"utt{i}", text, clip) for i, (text, clip) in enumerate(zip(SENTENCES, clips))]
    noise_row = [(key, text, 0.3 * rng.standard_normal(len(clip)).astype(np.float32))
                 for key, text, clip in true_row]
    result = tts_table({"true": true_row, "noise": noise_row}, judge, tmp_path, show=False)
    rows = result["rows"]
    assert rows["true"]["wer"] <= 0.25 and rows["noise"]["wer"] >= 0.8
    assert rows["true"]["n_utts"] == 3 and rows["true"]["mean_s"] == pytest.approx(
        np.mean([len(c) for c in clips]) / 16000)
    assert rows["true"]["spk_sim"] is None and len(rows["noise"]["worst"]) == 3  # resemblyzer: optional
    markdown = (tmp_path / "tts_table.md").read_text()
    assert markdown.startswith("| row | WER | utts | mean s | spk sim |") and "| noise |" in markdown
    assert "| n/a |" in markdown and markdown == format_markdown(result)
    assert json.loads((tmp_path / "tts_table.json").read_text())["rows"]["noise"]["n_utts"] == 3
    lines = (tmp_path / "tts_utterances.tsv").read_text().splitlines()
    assert len(lines) == 1 + 6 and lines[0].split("\t")[:3] == ["row", "key", "errors"]
    assert lines[1].split("\t")[:2] == ["true", "utt0"] and lines[1].split("\t")[6] == SENTENCES[0]


def test_table_speaker_similarity_and_bad_input(judge, clips: list[np.ndarray]) -> None:
    def spectrum(wav: np.ndarray) -> np.ndarray:  # a plain speaker embedding: long-term log spectrum
        frames = wav[: len(wav) // 512 * 512].reshape(-1, 512)
        return np.log(np.abs(np.fft.rfft(frames, axis=1)).mean(axis=0) + 1e-6)

    row = [("a", SENTENCES[0], clips[0])]
    result = tts_table({"self": row}, judge, references={"a": clips[0]}, embedder=spectrum, show=False)
    assert result["rows"]["self"]["spk_sim"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="row 'x', b: empty reference text"):
        tts_table({"x": [("b", " ", clips[0])]}, judge, show=False)
    with pytest.raises(ValueError, match="row 'x': key 'a' appears twice"):
        tts_table({"x": row + row}, judge, show=False)


def test_resemblyzer_similarity_tells_two_voices_apart(judge, clips: list[np.ndarray]) -> None:
    """The speaker column with the real resemblyzer encoder (osum[speaker]): a sentence of the same voice as the
    reference scores higher than the same sentences in another voice."""
    from osum.evaluate.tts_table import speaker_embedder

    embed = speaker_embedder()
    assert embed is not None, "resemblyzer is not installed: pip install -e '.[speaker]' (the Makefile does)"
    other = [audio for audio, _ in synthesize_sentences(VOICE_BY_ID["flite-kal16"], SENTENCES[1:])]
    refs = {"same": clips[0], "other": clips[0]}
    rows = {"slt": [("same", SENTENCES[1], clips[1])], "kal16": [("other", SENTENCES[1], other[0])]}
    result = tts_table(rows, judge, references=refs, embedder=True, show=False)
    same, cross = result["rows"]["slt"]["spk_sim"], result["rows"]["kal16"]["spk_sim"]
    assert result["speaker_similarity"].startswith("resemblyzer")
    assert same > 0.7 and same - cross > 0.2, (same, cross)  # measured 0.85 and 0.40
