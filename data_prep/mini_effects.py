"""Acoustic proxies for the mini corpus labels (age, emotion, style) and the vocal/non-vocal events.

Every label of the synthetic corpus is a documented, consistent signal change (:data:`PROXIES`).
Effects that change time (tempo, pitch) run on single words before a sentence is assembled, so
word timestamps stay exact; everything else is time-invariant filtering or amplitude shaping on
the assembled sentence, followed by a gate that keeps the pauses between words silent.
All randomness comes from a ``numpy.random.Generator`` passed in (deterministic per sample).
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from data_prep.voices import apply_fades, trim_silence
from osum.data.shards import SAMPLE_RATE, resample_to_16k
from osum.tasks.labels import MINI_LABEL_SETS

SOUNDS_DIR = Path("/usr/share/sounds/freedesktop/stereo")

CHAT_PAUSE_FACTOR = 2.0
SAD_PEAK_FACTOR = 0.5  # -6 dB: SAD samples peak at 0.45 where all others peak at 0.9

PROXIES: dict[str, dict[str, str]] = {
    "gender": {
        "MALE": "the voice's gender (espeak-ng m-variants, flite kal16/awb/rms, festival kal/ked)",
        "FEMALE": "the voice's gender (espeak-ng f-variants, flite slt, festival slt HTS)",
    },
    "age": {
        "CHILD": "tempo x1.2 and pitch +120 cents (sox tempo -s / pitch on each word; formants rise too)",
        "ADULT": "unchanged",
        "OLD": "tempo x0.85 (sox, per word), vibrato 5.5 Hz +/-60 cents (per word), "
        "tremolo 5.5 Hz with 40% amplitude depth",
    },
    "emotion": {
        "NEUTRAL": "unchanged",
        "HAPPY": "treble shelf +9 dB above ~2 kHz and tempo x1.1",
        "SAD": "4th-order low-pass at 1.5 kHz, tempo x0.9, level -6 dB (peak 0.45 instead of 0.9)",
        "ANGER": "overdrive (tanh, +12 dB drive, loud and compressed) and +6 dB presence peak at 2 kHz",
    },
    "style": {
        "NEWS": "unchanged: pauses between words 60-250 ms",
        "CHAT": "pauses between words doubled (120-500 ms)",
        "WHISPER": "voicing replaced by noise: the cepstrally smoothed spectral envelope (harmonics "
        "removed) re-excited with random-phase noise, high-passed at 400 Hz, plus the voiced signal "
        "at -20 dB (so the speaker's pitch stays faintly audible)",
    },
    "events": {
        "BELL": "freedesktop bell.oga, 1-2 rings 250 ms apart",
        "ALARM": "freedesktop alarm-clock-elapsed.oga, its first double beep (~0.7 s)",
        "COUGH": "1-2 noise bursts (5 ms attack, ~60 ms decay) shaped by a 300-3500 Hz band with a "
        "resonance near 700 Hz",
        "LAUGH": "4-6 'ha' pulses at ~5 Hz: 25 ms breath noise then a sawtooth at the speaker's "
        "gender range (130-160 / 210-260 Hz), falling, through /a/ formants (800, 1250, 2600 Hz)",
    },
}
EVENT_PLACEMENT = ("events mix before or after the speech (never over words), with a 150-400 ms gap, "
                   "at 0.5-0.9 of the speech peak; half of the samples carry one event")


@dataclass(frozen=True)
class ProxySet:
    """The numbers of the age and emotion proxies that differ between :data:`PROXY_SETS`."""

    age_time: dict[str, tuple[float, int]]  # (tempo factor, pitch shift in cents) per age
    emotion_tempo: dict[str, float]  # multiplies the age's tempo
    happy_bounce_cents: int  # every second word of a HAPPY sample raised this much more (0: none)
    vibrato_cents: float  # OLD: vibrato depth (5.5 Hz)
    tremolo_depth: float  # OLD: tremolo depth (5.5 Hz)
    happy_treble_db: float = 9.0  # HAPPY: treble shelf gain (0: none)
    child_flutter: tuple[float, float] | None = None  # CHILD: (rate Hz, depth) of an amplitude flutter

    def time_effects(self, age: str, emotion: str) -> list[tuple[float, int]]:
        """(tempo, cents) of each word in turn (the list repeats): one entry, or two for a HAPPY bounce."""
        tempo, cents = self.age_time[age]
        tempo = round(tempo * self.emotion_tempo[emotion], 4)
        if emotion == "HAPPY" and self.happy_bounce_cents:
            return [(tempo, cents), (tempo, cents + self.happy_bounce_cents)]
        return [(tempo, cents)]


# "relative": the mini corpus as built since issue 11. Tempo and treble are heard only against the voice's own
# rate and brightness, which a held-out voice does not give (recipes/mini/README.md, "Dialogue").
# "salient": no tempo cues, the rest wider (CHILD +300 cents: male voices stay under 167 Hz; deeper vibrato and
# tremolo) and a pitch interval between neighbouring words for HAPPY.
# "marked": as "salient", but HAPPY is the interval alone (400 cents, no treble) and CHILD also flutters (11 Hz
# amplitude): each age and emotion has a mark heard without knowing the voice (recipes/mini/README.md, "Dialogue").
PROXY_SETS = {
    "relative": ProxySet(age_time={"CHILD": (1.2, 120), "ADULT": (1.0, 0), "OLD": (0.85, 0)},
                         emotion_tempo={"NEUTRAL": 1.0, "HAPPY": 1.1, "SAD": 0.9, "ANGER": 1.0},
                         happy_bounce_cents=0, vibrato_cents=60.0, tremolo_depth=0.4),
    "salient": ProxySet(age_time={"CHILD": (1.0, 300), "ADULT": (1.0, 0), "OLD": (1.0, 0)},
                        emotion_tempo={"NEUTRAL": 1.0, "HAPPY": 1.0, "SAD": 1.0, "ANGER": 1.0},
                        happy_bounce_cents=250, vibrato_cents=120.0, tremolo_depth=0.6),
    "marked": ProxySet(age_time={"CHILD": (1.0, 300), "ADULT": (1.0, 0), "OLD": (1.0, 0)},
                       emotion_tempo={"NEUTRAL": 1.0, "HAPPY": 1.0, "SAD": 1.0, "ANGER": 1.0},
                       happy_bounce_cents=400, vibrato_cents=120.0, tremolo_depth=0.6,
                       happy_treble_db=0.0, child_flutter=(11.0, 0.35)),
}
_NO_TEMPO = {"OLD": "vibrato 5.5 Hz +/-120 cents (per word), tremolo 5.5 Hz with 60% amplitude depth, no tempo change",
             "SAD": "4th-order low-pass at 1.5 kHz, level -6 dB (peak 0.45 instead of 0.9), no tempo change"}
PROXY_CHANGES: dict[str, dict[str, dict[str, str]]] = {
    "relative": {},
    "salient": {
        "age": {"CHILD": "pitch +300 cents (sox pitch on each word; formants rise too), no tempo change",
                "OLD": _NO_TEMPO["OLD"]},
        "emotion": {"HAPPY": "treble shelf +9 dB above ~2 kHz; every second word 250 cents higher than the others",
                    "SAD": _NO_TEMPO["SAD"]},
    },
    "marked": {
        "age": {"CHILD": "pitch +300 cents (sox pitch on each word; formants rise too) and an 11 Hz amplitude "
                         "flutter of 35% depth, no tempo change",
                "OLD": _NO_TEMPO["OLD"]},
        "emotion": {"HAPPY": "every second word 400 cents higher than the others (no treble, no tempo change)",
                    "SAD": _NO_TEMPO["SAD"]},
    },
}


def proxies_doc(name: str) -> dict[str, dict[str, str]]:
    """The documented proxies of one proxy set (what a corpus.json records)."""
    changes = PROXY_CHANGES[name]
    return {kind: {**labels, **changes.get(kind, {})} for kind, labels in PROXIES.items()}


def stretch_words(words: dict[str, np.ndarray], tempo: float, cents: int) -> dict[str, np.ndarray]:
    """Apply sox ``pitch``/``tempo -s`` to every word in one sox run, then cut and re-trim the words.

    The words are laid out with 300 ms of silence between them; the output is cut at the scaled
    midpoints of those silences (WSOLA drifts by a few ms only) and each piece re-trimmed.
    """
    if tempo == 1.0 and cents == 0:
        return words
    gap = int(0.3 * SAMPLE_RATE)
    names = list(words)
    parts: list[np.ndarray] = [np.zeros(gap, np.float32)]
    bounds = []
    position = gap
    for name in names:
        parts += [words[name], np.zeros(gap, np.float32)]
        bounds.append((position, position + len(words[name])))
        position += len(words[name]) + gap
    effects = (["pitch", str(cents)] if cents else []) + (["tempo", "-s", f"{tempo}"] if tempo != 1 else [])
    stretched = sox(np.concatenate(parts), effects)
    cuts = [0] + [int((bounds[i][1] + bounds[i + 1][0]) / 2 / tempo) for i in range(len(names) - 1)]
    cuts.append(len(stretched))
    return {name: trim_silence(stretched[cuts[i] : cuts[i + 1]]) for i, name in enumerate(names)}


def emotion_filter(speech: np.ndarray, emotion: str, happy_treble_db: float = 9.0) -> np.ndarray:
    """The time-invariant part of the emotion proxy: HAPPY treble boost, SAD low-pass, ANGER overdrive."""
    if emotion == "HAPPY":
        return treble_boost(speech, happy_treble_db) if happy_treble_db else speech
    if emotion == "SAD":
        return lowpass(speech)
    if emotion == "ANGER":
        return overdrive(speech)
    return speech


def draw_event(rng: np.random.Generator) -> dict | None:
    """On half of the samples, one event and how it is placed (before or after, gap, level, edge silence)."""
    if rng.random() >= 0.5:
        return None
    return {"name": str(rng.choice(MINI_LABEL_SETS["events"])), "before": bool(rng.random() < 0.5),
            "gap": float(rng.uniform(0.15, 0.4)), "level": float(rng.uniform(0.5, 0.9)),
            "edge": float(rng.uniform(0.1, 0.2))}


def add_event_and_level(speech: np.ndarray, event: dict | None, labels: dict[str, str],
                        rng: np.random.Generator) -> tuple[np.ndarray, int, list[str]]:
    """Mix the planned event before or after the (peak-normalized) speech, add the noise floor 60 dB down
    and scale to the label's peak. Returns the audio, how many samples the speech moved, the events."""
    shift, events = 0, []
    if event is not None:
        sound = event_sound(event["name"], labels["gender"], rng) * event["level"]
        edge = np.zeros(int(event["edge"] * SAMPLE_RATE), np.float32)
        gap = np.zeros(int(event["gap"] * SAMPLE_RATE), np.float32)
        if event["before"]:
            prefix = np.concatenate([edge, sound, gap])
            shift = len(prefix)
            speech = np.concatenate([prefix, speech])
        else:
            speech = np.concatenate([speech, gap, sound, edge])
        events.append(event["name"])
    speech = speech + 1e-3 * rng.standard_normal(len(speech))
    peak = 0.9 * (SAD_PEAK_FACTOR if labels["emotion"] == "SAD" else 1.0)
    return (speech * (peak / np.abs(speech).max())).astype(np.float32), shift, events


def sox(audio: np.ndarray, effects: list[str]) -> np.ndarray:
    """Run ``sox`` effects on 16 kHz float32 mono audio (raw float through pipes)."""
    raw = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-r", str(SAMPLE_RATE)]
    result = subprocess.run(["sox", "-V1", *raw, "-", *raw, "-", *effects],
                            input=audio.astype(np.float32).tobytes(), capture_output=True, check=True)
    return np.frombuffer(result.stdout, dtype=np.float32).copy()


def vibrato(audio: np.ndarray, rng: np.random.Generator, rate_hz: float = 5.5, cents: float = 60.0) -> np.ndarray:
    """Pitch vibrato by a sinusoidally modulated read position; length and edges are kept."""
    depth = (2 ** (cents / 1200) - 1) * SAMPLE_RATE / (2 * np.pi * rate_hz)  # samples of delay
    n = np.arange(len(audio))
    phase = rng.uniform(0, 2 * np.pi)
    read_at = np.clip(n + depth * np.sin(2 * np.pi * rate_hz * n / SAMPLE_RATE + phase), 0, len(audio) - 1)
    return np.interp(read_at, n, audio).astype(np.float32)


def tremolo(audio: np.ndarray, rng: np.random.Generator, rate_hz: float = 5.5, depth: float = 0.4) -> np.ndarray:
    """Amplitude modulation between ``1 - depth`` and 1."""
    t = np.arange(len(audio)) / SAMPLE_RATE
    gain = 1 - depth * (0.5 - 0.5 * np.cos(2 * np.pi * rate_hz * t + rng.uniform(0, 2 * np.pi)))
    return (audio * gain).astype(np.float32)


def spectral_gain(audio: np.ndarray, gain_of_hz: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Zero-phase filtering: multiply the spectrum by ``gain_of_hz(freqs)`` (padded against wrap)."""
    n_fft = 1 << int(np.ceil(np.log2(len(audio) + 4096)))
    spectrum = np.fft.rfft(audio, n_fft)
    freqs = np.fft.rfftfreq(n_fft, 1 / SAMPLE_RATE)
    return np.fft.irfft(spectrum * gain_of_hz(freqs), n_fft)[: len(audio)].astype(np.float32)


def treble_boost(audio: np.ndarray, gain_db: float = 9.0, corner_hz: float = 2000.0) -> np.ndarray:
    """First-order-like high shelf: +``gain_db`` well above ``corner_hz``."""
    extra = 10 ** (gain_db / 20) - 1
    return spectral_gain(audio, lambda f: 1 + extra * f**2 / (f**2 + corner_hz**2))


def lowpass(audio: np.ndarray, corner_hz: float = 1500.0, order: int = 4) -> np.ndarray:
    """Butterworth-magnitude low-pass."""
    return spectral_gain(audio, lambda f: 1 / np.sqrt(1 + (f / corner_hz) ** (2 * order)))


def highpass_gain(freqs: np.ndarray, corner_hz: float, order: int = 4) -> np.ndarray:
    """Butterworth-magnitude high-pass gain curve."""
    return 1 / np.sqrt(1 + (corner_hz / np.maximum(freqs, 1e-3)) ** (2 * order))


def overdrive(audio: np.ndarray, drive_db: float = 12.0) -> np.ndarray:
    """tanh saturation of the peak-normalized signal plus a +6 dB presence peak at 2 kHz."""
    drive = 10 ** (drive_db / 20)
    driven = np.tanh(drive * audio / max(np.abs(audio).max(), 1e-9)) / np.tanh(drive)
    return spectral_gain(driven, lambda f: 1 + 1.0 / (1 + ((f - 2000.0) / 700.0) ** 2))


def whisper(audio: np.ndarray, rng: np.random.Generator, voiced_db: float = -20.0) -> np.ndarray:
    """Noise-excited spectral envelope (see PROXIES['style']['WHISPER']), RMS-matched to ``audio``."""
    n_fft, hop = 512, 128
    frames, n_padded = _frames(audio, n_fft, hop)
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    log_mag = np.log(np.abs(np.fft.rfft(frames * window, axis=1)) + 1e-5)
    cepstrum = np.fft.irfft(log_mag, n_fft, axis=1)
    cepstrum[:, 30 : n_fft - 29] = 0.0  # keep quefrencies < 1.9 ms: the envelope, not the harmonics
    envelope = np.exp(np.fft.rfft(cepstrum, axis=1).real)
    noise_phase = np.exp(2j * np.pi * rng.random(envelope.shape))
    freqs = np.fft.rfftfreq(n_fft, 1 / SAMPLE_RATE)
    frames_out = np.fft.irfft(envelope * noise_phase * highpass_gain(freqs, 400.0), n_fft, axis=1) * window
    noisy = _overlap_add(frames_out, hop, n_padded, window)[n_fft // 2 : n_fft // 2 + len(audio)]
    noisy *= _rms(audio) / max(_rms(noisy), 1e-9)
    return (noisy + 10 ** (voiced_db / 20) * audio).astype(np.float32)


def gate(audio: np.ndarray, spans: list[tuple[int, int]], margin_s: float = 0.01) -> np.ndarray:
    """Zero everything farther than ``margin_s`` from a word span (5 ms ramps)."""
    mask = np.zeros(len(audio), np.float32)
    margin, ramp = int(margin_s * SAMPLE_RATE), int(0.005 * SAMPLE_RATE)
    for start, end in spans:
        lo, hi = max(start - margin, 0), min(end + margin, len(audio))
        mask[lo:hi] = np.maximum(mask[lo:hi], apply_fades(np.ones(hi - lo, np.float32), ramp))
    return audio * mask


def event_sound(name: str, gender: str, rng: np.random.Generator) -> np.ndarray:
    """One event (BELL, ALARM, COUGH, LAUGH) as 16 kHz float32 with peak 1."""
    if name == "BELL":
        ring = _freedesktop_sound("bell.oga")
        n_rings = int(rng.integers(1, 3))
        sound = np.zeros(int(0.25 * SAMPLE_RATE) * (n_rings - 1) + len(ring), np.float32)
        for i in range(n_rings):
            start = i * int(0.25 * SAMPLE_RATE)
            sound[start : start + len(ring)] += ring
    elif name == "ALARM":
        sound = apply_fades(_freedesktop_sound("alarm-clock-elapsed.oga")[: int(0.7 * SAMPLE_RATE)], 80)
    elif name == "COUGH":
        sound = _cough(rng)
    elif name == "LAUGH":
        sound = _laugh(gender, rng)
    else:
        raise ValueError(f"unknown event {name!r}")
    return (sound / max(np.abs(sound).max(), 1e-9)).astype(np.float32)


@functools.cache
def _freedesktop_sound(file_name: str) -> np.ndarray:
    audio, sr = sf.read(SOUNDS_DIR / file_name, dtype="float32")
    return trim_silence(resample_to_16k(audio.mean(axis=1) if audio.ndim == 2 else audio, sr))


def _cough(rng: np.random.Generator) -> np.ndarray:
    bursts = []
    for _ in range(int(rng.integers(1, 3))):
        n = int(rng.uniform(0.18, 0.28) * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        envelope = np.minimum(t / 0.005, 1.0) * np.exp(-t / rng.uniform(0.045, 0.075))
        bursts += [rng.standard_normal(n) * envelope, np.zeros(int(rng.uniform(0.12, 0.25) * SAMPLE_RATE))]
    noise = np.concatenate(bursts[:-1]).astype(np.float32)
    resonance = rng.uniform(600.0, 800.0)

    def cough_band(f: np.ndarray) -> np.ndarray:
        band = highpass_gain(f, 300.0, 2) / np.sqrt(1 + (f / 3500.0) ** 4)
        return band * (0.4 + 1.0 / (1 + ((f - resonance) / 250.0) ** 2))

    return spectral_gain(noise, cough_band)


def _laugh(gender: str, rng: np.random.Generator) -> np.ndarray:
    f0_low, f0_high = (130.0, 160.0) if gender == "MALE" else (210.0, 260.0)
    f0 = rng.uniform(f0_low, f0_high)
    pulses = []
    for i in range(int(rng.integers(4, 7))):
        breath = rng.standard_normal(int(0.025 * SAMPLE_RATE)) * 0.3
        n_voiced = int(rng.uniform(0.08, 0.11) * SAMPLE_RATE)
        pitch = f0 * (1 - 0.03 * i)
        saw = 2 * ((np.arange(n_voiced) * pitch / SAMPLE_RATE) % 1.0) - 1
        voiced = saw * np.hanning(n_voiced) + 0.05 * rng.standard_normal(n_voiced)
        period = int(rng.uniform(0.18, 0.22) * SAMPLE_RATE)
        pulse = np.concatenate([breath * np.hanning(len(breath)), voiced])
        pulses.append(np.pad(pulse, (0, max(period - len(pulse), 0))) * (1 - 0.1 * i))
    train = np.concatenate(pulses).astype(np.float32)

    def vowel_a(f: np.ndarray) -> np.ndarray:
        peaks = [(800.0, 110.0, 1.0), (1250.0, 130.0, 0.6), (2600.0, 180.0, 0.25)]
        return 0.02 + sum(g / (1 + ((f - fc) / bw) ** 2) for fc, bw, g in peaks)

    return spectral_gain(train, vowel_a)


def _frames(audio: np.ndarray, n_fft: int, hop: int) -> tuple[np.ndarray, int]:
    padded = np.pad(audio, (n_fft // 2, n_fft // 2 + hop))
    n_frames = 1 + (len(padded) - n_fft) // hop
    index = np.arange(n_frames)[:, None] * hop + np.arange(n_fft)
    return padded[index], len(padded)


def _overlap_add(frames: np.ndarray, hop: int, length: int, window: np.ndarray) -> np.ndarray:
    out = np.zeros(length)
    norm = np.zeros(length)
    for i, frame in enumerate(frames):
        out[i * hop : i * hop + len(frame)] += frame
        norm[i * hop : i * hop + len(frame)] += window**2
    return out / np.maximum(norm, 1e-3)


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
