"""Word-level speech from the Debian TTS engines (espeak-ng, flite, festival) for synthetic corpora.

Each word is synthesized on its own, resampled to 16 kHz and trimmed of leading/trailing silence,
so that a sentence assembled from words has exact word boundaries. :func:`median_f0` measures a
voice's pitch (used to check that held-out voices are typical of their gender).
"""

from __future__ import annotations

import io
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from osum.data.shards import SAMPLE_RATE, resample_to_16k

TRIM_THRESHOLD_DB = -40.0  # relative to the word's loudest 5 ms block
FADE_S = 0.003


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an engine, the engine's voice name and options, a gender."""

    id: str
    engine: str  # "espeak", "flite" or "festival"
    name: str  # espeak "en-us+f2", flite "slt", festival "kal_diphone"
    gender: str  # "MALE" or "FEMALE"
    options: tuple[str, ...] = field(default=())  # extra command-line options (espeak speed, pitch)


def synthesize_words(voice: Voice, words: list[str]) -> dict[str, np.ndarray]:
    """Synthesize each word alone with ``voice``; 16 kHz float32, silence trimmed, 3 ms fades."""
    with tempfile.TemporaryDirectory(prefix="osum-tts-") as tmp:
        if voice.engine == "festival":
            raw = _festival_words(voice, words, Path(tmp))
        else:
            raw = {word: _synthesize_one(voice, word, Path(tmp)) for word in words}
    result = {}
    for word, (audio, sr) in raw.items():
        trimmed = trim_silence(resample_to_16k(audio, sr))
        if len(trimmed) == 0:
            raise RuntimeError(f"{voice.id}: synthesis of {word!r} is silent")
        result[word] = trimmed
    return result


def trim_silence(audio: np.ndarray, threshold_db: float = TRIM_THRESHOLD_DB) -> np.ndarray:
    """Cut leading/trailing 5 ms blocks quieter than ``threshold_db`` below the loudest; fade edges."""
    block = SAMPLE_RATE // 200
    n_blocks = len(audio) // block
    if n_blocks == 0:
        return np.zeros(0, np.float32)
    rms = np.sqrt((audio[: n_blocks * block].reshape(n_blocks, block) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20))
    if len(loud) == 0 or rms.max() == 0:
        return np.zeros(0, np.float32)
    trimmed = audio[loud[0] * block : (loud[-1] + 1) * block].astype(np.float32)
    return apply_fades(trimmed, int(FADE_S * SAMPLE_RATE))


def apply_fades(audio: np.ndarray, n_fade: int) -> np.ndarray:
    """Linear fade-in and fade-out of ``n_fade`` samples (copy)."""
    out = audio.copy()
    n_fade = min(n_fade, len(out) // 2)
    if n_fade > 0:
        ramp = np.linspace(0.0, 1.0, n_fade, endpoint=False, dtype=np.float32)
        out[:n_fade] *= ramp
        out[len(out) - n_fade :] *= ramp[::-1]
    return out


def median_f0(audio: np.ndarray, sr: int = SAMPLE_RATE, fmin: float = 60.0, fmax: float = 450.0) -> float:
    """Median F0 (Hz) over voiced 40 ms frames, by normalized autocorrelation; nan if unvoiced.

    A frame is voiced when its autocorrelation peak in [1/fmax, 1/fmin] exceeds 0.6 and its
    energy is above 5% of the loudest frame; the smallest lag within 90% of the peak is taken
    (guards against octave-down errors).
    """
    frame, hop = int(0.04 * sr), int(0.01 * sr)
    if len(audio) < frame:
        return float("nan")
    starts = np.arange(0, len(audio) - frame, hop)
    frames = audio[starts[:, None] + np.arange(frame)]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = (frames**2).mean(axis=1)
    autocorr = np.fft.irfft(np.abs(np.fft.rfft(frames, 2 * frame)) ** 2)[:, :frame]
    autocorr = autocorr / np.maximum(autocorr[:, :1], 1e-12)
    lo, hi = int(sr / fmax), int(sr / fmin)
    window = autocorr[:, lo:hi]
    peak = window.max(axis=1)
    lag = lo + (window >= 0.9 * peak[:, None]).argmax(axis=1)
    voiced = (peak > 0.6) & (energy > 0.05 * energy.max())
    return float(np.median(sr / lag[voiced])) if voiced.any() else float("nan")


def _synthesize_one(voice: Voice, word: str, tmp: Path) -> tuple[np.ndarray, int]:
    if voice.engine == "espeak":
        cmd = ["espeak-ng", "-v", voice.name, *voice.options, "--stdout", word]
        wav = subprocess.run(cmd, capture_output=True, check=True).stdout
    elif voice.engine == "flite":
        path = tmp / "word.wav"
        subprocess.run(["flite", "-voice", voice.name, *voice.options, "-t", word, "-o", str(path)],
                       capture_output=True, check=True)
        wav = path.read_bytes()
    else:
        raise ValueError(f"unknown TTS engine {voice.engine!r}")
    audio, sr = sf.read(io.BytesIO(wav), dtype="float32")
    return (audio if audio.ndim == 1 else audio.mean(axis=1)), sr


def _festival_words(voice: Voice, words: list[str], tmp: Path) -> dict[str, tuple[np.ndarray, int]]:
    """All words in one festival process (its start-up dominates a single word)."""
    lines = [f"(voice_{voice.name})"]
    for i, word in enumerate(words):
        lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{word}")) "{tmp}/{i}.wav" \'riff)')
    script = tmp / "words.scm"
    script.write_text("\n".join(lines) + "\n")
    subprocess.run(["festival", "--batch", str(script)], capture_output=True, check=True)
    result = {}
    for i, word in enumerate(words):
        audio, sr = sf.read(tmp / f"{i}.wav", dtype="float32")
        result[word] = ((audio if audio.ndim == 1 else audio.mean(axis=1)), sr)
    return result
