"""Whole-sentence speech from the Debian TTS engines, with word times where the engine gives them.

Unlike :mod:`data_prep.voices` (each word alone, for exact boundaries on a closed vocabulary), a
sentence is synthesized in one go, so it has the engine's own prosody and coarticulation:

- festival: word start/end from the utterance's Word relation (exact, the synthesizer's own);
- flite: segment end times (``-psdur``) grouped into words by each word's phone count, which comes
  from the same lexicon (:func:`flite_phone_counts`); a sentence whose phones do not add up gets no
  word times;
- espeak-ng: no word times (its command line does not report them).

Audio comes back at 16 kHz, float32, leading/trailing silence kept as the engine made it.
"""

from __future__ import annotations

import io
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from data_prep.voices import Voice
from osum.data.shards import resample_to_16k

WordTimes = list[tuple[str, float, float]]


def flite_phone_counts(words: list[str], voice: str = "kal16", chunk: int = 400) -> dict[str, int]:
    """Phones per word in flite's lexicon: words said as one comma-separated list, split at the pauses."""
    counts: dict[str, int] = {}
    for i in range(0, len(words), chunk):
        part = words[i : i + chunk]
        out = subprocess.run(["flite", "-voice", voice, "-t", ", ".join(part), "-ps", "-o", "none"],
                             capture_output=True, text=True, check=True).stdout
        groups = [g.split() for g in out.split("pau")]
        groups = [g for g in groups if g]
        if len(groups) == len(part):
            counts.update({word: len(g) for word, g in zip(part, groups)})
    return counts


def synthesize_sentences(voice: Voice, texts: list[str], options: list[tuple[str, ...]] | None = None,
                         phone_counts: dict[str, int] | None = None) -> list[tuple[np.ndarray, WordTimes | None]]:
    """Each text spoken by ``voice`` (with per-text extra command-line options, espeak/flite only)."""
    options = options or [()] * len(texts)
    with tempfile.TemporaryDirectory(prefix="osum-tts-") as tmp:
        if voice.engine == "festival":
            return _festival(voice, texts, Path(tmp))
        return [_one(voice, text, opts, Path(tmp), phone_counts or {}) for text, opts in zip(texts, options)]


def _one(voice: Voice, text: str, options: tuple[str, ...], tmp: Path,
         phone_counts: dict[str, int]) -> tuple[np.ndarray, WordTimes | None]:
    if voice.engine == "espeak":
        cmd = ["espeak-ng", "-v", voice.name, *voice.options, *options, "--stdout", text]
        audio, sr = _read(subprocess.run(cmd, capture_output=True, check=True).stdout)
        return resample_to_16k(audio, sr), None
    if voice.engine == "flite":
        path = tmp / "sentence.wav"
        out = subprocess.run(["flite", "-voice", voice.name, *voice.options, *options, "-psdur", "-t", text,
                              "-o", str(path)], capture_output=True, text=True, check=True).stdout
        audio, sr = _read(path.read_bytes())
        return resample_to_16k(audio, sr), _flite_words(text.split(), out, phone_counts)
    raise ValueError(f"unknown TTS engine {voice.engine!r}")


def _flite_words(words: list[str], psdur: str, phone_counts: dict[str, int]) -> WordTimes | None:
    """Group ``name:end`` segments into words by phone count; None when they do not add up."""
    phones = [(name, float(end)) for name, _, end in (s.rpartition(":") for s in psdur.split()) if name]
    if not all(w in phone_counts for w in words):
        return None
    result, start, position = [], 0.0, 0
    for word in words:
        while position < len(phones) and phones[position][0] == "pau":
            start = phones[position][1]
            position += 1
        n = phone_counts[word]
        if position + n > len(phones) or any(p[0] == "pau" for p in phones[position : position + n]):
            return None
        end = phones[position + n - 1][1]
        result.append((word, start, end))
        start, position = end, position + n
    if any(name != "pau" for name, _ in phones[position:]):
        return None
    return result


def _festival(voice: Voice, texts: list[str], tmp: Path) -> list[tuple[np.ndarray, WordTimes | None]]:
    """All texts in one festival process; word times from the Word relation."""
    lines = [f"(voice_{voice.name})"]
    for i, text in enumerate(texts):
        lines += [f'(set! utt (utt.synth (Utterance Text "{text}")))',
                  f'(utt.save.wave utt "{tmp}/{i}.wav" \'riff)',
                  f'(format t "U {i}\\n")',
                  '(mapcar (lambda (w) (format t "W %s %f %f\\n" (item.name w) '
                  '(item.feat w "R:SylStructure.daughter1.daughter1.segment_start") (item.feat w "word_end"))) '
                  "(utt.relation.items utt 'Word))"]
    script = tmp / "sentences.scm"
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(["festival", "--batch", str(script)], capture_output=True, text=True, check=True).stdout
    times: dict[int, WordTimes] = {}
    current = -1
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["U"]:
            current = int(parts[1])
            times[current] = []
        elif parts[:1] == ["W"] and len(parts) == 4:
            times[current].append((parts[1], float(parts[2]), float(parts[3])))
    result = []
    for i, text in enumerate(texts):
        audio, sr = sf.read(tmp / f"{i}.wav", dtype="float32")
        audio = audio if audio.ndim == 1 else audio.mean(axis=1)
        words = times.get(i)
        ok = words is not None and [w for w, _, _ in words] == text.split()
        result.append((resample_to_16k(audio, sr), words if ok else None))
    return result


def _read(wav: bytes) -> tuple[np.ndarray, int]:
    audio, sr = sf.read(io.BytesIO(wav), dtype="float32")
    return (audio if audio.ndim == 1 else audio.mean(axis=1)), sr
