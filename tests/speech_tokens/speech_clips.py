"""Synthetic 16 kHz test clips for the speech tokenizer tests: sine sweeps and noise bursts."""

from __future__ import annotations

import numpy as np

SR = 16000


def sweep(seconds: float, f0: float, f1: float, seed: int = 0) -> np.ndarray:
    """A linear sine sweep from f0 to f1 Hz with a little noise, 16 kHz float32."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.01
    return (0.5 * np.sin(phase) + noise).astype(np.float32)


def bursts(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise bursts of random lengths separated by near silence, 16 kHz float32."""
    rng = np.random.default_rng(seed)
    audio = rng.standard_normal(int(seconds * SR)).astype(np.float32) * 0.001
    pos = 0
    while pos < audio.size:
        n = int(rng.integers(800, 4000))
        audio[pos : pos + n] += rng.standard_normal(min(n, audio.size - pos)).astype(np.float32) * 0.3
        pos += n + int(rng.integers(800, 4000))
    return audio
