"""The TTS result table: per system (row), the WER of an ASR judge, mean duration, speaker similarity.

    rows = {"ground truth": [(key, ref_text, wav_16k), ...], "tts stage": [...]}
    result = tts_table(rows, AsrJudge("assets/whisper-base"), out_dir, references={key: wav_16k})

Each clip is transcribed by the judge; reference and transcript go through
:func:`osum.evaluate.normalize.normalize_for_wer` and are scored by :class:`osum.metrics.wer.ErrorRate`
(as OSUM-EChat's Table 5 scores TTS by the WER of an independent ASR). Speaker similarity is the cosine
of resemblyzer speaker embeddings of a clip and its reference recording (``references[key]``), when
``resemblyzer`` is importable; otherwise the column reads "n/a". Written to ``out_dir``:
``tts_table.json``, ``tts_table.md`` (the table, then the 5 worst utterances of each row) and
``tts_utterances.tsv`` (one line per utterance: row, key, errors, duration, similarity, ref, hyp and
their normalized forms).
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from osum.evaluate.normalize import normalize_for_wer
from osum.metrics.wer import ErrorRate

SAMPLE_RATE = 16000
Utterance = tuple[str, str, np.ndarray]  # key, reference text, 16 kHz mono audio
Embedder = Callable[[np.ndarray], np.ndarray]


class Transcriber(Protocol):
    def transcribe(self, wavs: list[np.ndarray]) -> list[str]: ...


def speaker_embedder() -> Embedder | None:
    """A resemblyzer speaker-embedding function of 16 kHz audio (unit vectors), or None when not installed."""
    try:
        with warnings.catch_warnings():  # its webrtcvad warns that pkg_resources is deprecated
            warnings.simplefilter("ignore", UserWarning)
            from resemblyzer import VoiceEncoder, preprocess_wav
    except ImportError:
        return None
    encoder = VoiceEncoder("cpu", verbose=False)
    return lambda wav: np.asarray(encoder.embed_utterance(preprocess_wav(wav, source_sr=SAMPLE_RATE)))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def tts_table(rows: dict[str, list[Utterance]], judge: Transcriber, out_dir: str | Path | None = None,
              references: dict[str, np.ndarray] | None = None, worst: int = 5,
              embedder: Embedder | None | bool = True, show: bool = True) -> dict[str, Any]:
    """Score every row (see the module docstring); ``embedder``: True finds resemblyzer, False or None
    turns speaker similarity off, a function is used as is. Returns the JSON-ready result."""
    _check_rows(rows)
    embed = speaker_embedder() if embedder is True else (embedder or None)
    clips = [np.asarray(wav, np.float32) for utts in rows.values() for _, _, wav in utts]
    hyps = judge.transcribe(clips)
    if len(hyps) != len(clips):
        raise RuntimeError(f"the judge returned {len(hyps)} transcripts for {len(clips)} clips")
    ref_embeddings: dict[str, np.ndarray] = {}

    result_rows: dict[str, dict[str, Any]] = {}
    utterances: list[dict[str, Any]] = []
    position = 0
    for name, utts in rows.items():
        metric = ErrorRate("word")
        durations, sims = [], []
        for (key, ref, _), wav, hyp in zip(utts, clips[position:], hyps[position:]):
            ref_norm, hyp_norm = normalize_for_wer(ref), normalize_for_wer(hyp)
            errors = metric.add(ref_norm, hyp_norm, key)
            sim = None
            if embed is not None and references is not None and key in references:
                if key not in ref_embeddings:
                    ref_embeddings[key] = embed(np.asarray(references[key], np.float32))
                sim = cosine(embed(wav), ref_embeddings[key])
                sims.append(sim)
            durations.append(len(wav) / SAMPLE_RATE)
            utterances.append({"row": name, "key": key, "errors": errors, "ref_words": len(ref_norm.split()),
                               "duration_s": round(len(wav) / SAMPLE_RATE, 3), "spk_sim": sim, "ref": ref,
                               "hyp": hyp, "ref_norm": ref_norm, "hyp_norm": hyp_norm})
        position += len(utts)
        result_rows[name] = {
            "wer": metric.rate, **{k: v for k, v in metric.as_dict().items() if k != "rate"},
            "mean_s": float(np.mean(durations)),
            "spk_sim": float(np.mean(sims)) if sims else None,
            "worst": [u._asdict() for u in metric.worst(worst)],
        }
    result = {"speaker_similarity": "resemblyzer cosine to the reference recording" if embed is not None
              else "n/a (resemblyzer not installed or turned off)", "rows": result_rows}
    markdown = format_markdown(result)
    if show:
        print(markdown.split("\n\n")[0])
    if out_dir is not None:
        write_files(Path(out_dir), result, markdown, utterances)
    return result


def format_markdown(result: dict[str, Any]) -> str:
    """``| row | WER | utts | mean s | spk sim |`` table, then each row's worst utterances."""
    lines = ["| row | WER | utts | mean s | spk sim |", "|---|---:|---:|---:|---:|"]
    for name, row in result["rows"].items():
        sim = "n/a" if row["spk_sim"] is None else f"{row['spk_sim']:.3f}"
        lines.append(f"| {name} | {100 * row['wer']:.2f}% | {row['n_utts']} | {row['mean_s']:.2f} | {sim} |")
    sections = ["\n".join(lines)]
    for name, row in result["rows"].items():
        worst = [f"- `{u['key']}` ({u['errors']} errors): normalized ref \"{u['ref']}\" / hyp \"{u['hyp']}\""
                 for u in row["worst"]]
        body = "\n".join(worst) if worst else "- none: no errors"
        sections.append(f"Worst utterances of {name}:\n{body}")
    return "\n\n".join(sections) + "\n"


def write_files(out_dir: Path, result: dict[str, Any], markdown: str,
                utterances: list[dict[str, Any]]) -> None:
    """``tts_table.json``, ``tts_table.md`` and ``tts_utterances.tsv`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tts_table.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n",
                                            encoding="utf-8")
    (out_dir / "tts_table.md").write_text(markdown, encoding="utf-8")
    columns = ["row", "key", "errors", "ref_words", "duration_s", "spk_sim", "ref", "hyp", "ref_norm",
               "hyp_norm"]
    with open(out_dir / "tts_utterances.tsv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, columns, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for u in utterances:
            writer.writerow({**u, "spk_sim": "" if u["spk_sim"] is None else f"{u['spk_sim']:.4f}"})


def _check_rows(rows: dict[str, list[Utterance]]) -> None:
    """A ValueError naming the row and sample of the first bad input."""
    if not rows:
        raise ValueError("tts_table: no rows")
    for name, utts in rows.items():
        if not utts:
            raise ValueError(f"row {name!r}: no utterances")
        seen: set[str] = set()
        for i, utt in enumerate(utts):
            if len(utt) != 3:
                raise ValueError(f"row {name!r}, item {i}: expected (key, ref_text, wav), "
                                 f"got {len(utt)} values")
            key, ref, wav = utt
            if key in seen:
                raise ValueError(f"row {name!r}: key {key!r} appears twice")
            seen.add(key)
            if not str(ref).split():
                raise ValueError(f"row {name!r}, {key}: empty reference text")
            audio = np.asarray(wav)
            if audio.ndim != 1 or audio.size == 0:
                raise ValueError(f"row {name!r}, {key}: expected non-empty 1-D 16 kHz audio, "
                                 f"got shape {audio.shape}")
