"""Whisper log-mel features at the real audio length, and SpecAugment."""

from __future__ import annotations

import random
from functools import lru_cache

import numpy as np
import torch

N_FFT, HOP = 400, 160
FRAMES_PER_SECOND = 16000 // HOP  # mel frames per second of 16 kHz audio


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = 80, sr: int = 16000) -> torch.Tensor:
    """Slaney-style mel filterbank (librosa's default, as Whisper uses): (n_fft/2+1, n_mels)."""
    import torchaudio.functional as AF

    return AF.melscale_fbanks(N_FFT // 2 + 1, 0.0, sr / 2, n_mels, sr, norm="slaney", mel_scale="slaney")


_WINDOW = torch.hann_window(N_FFT)


def log_mel(audio: np.ndarray | torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """Whisper's log-mel of 16 kHz audio without padding to 30 s: (frames, n_mels), frames = len // 160.

    The same numbers as ``torch.stft`` (centred, reflect padding, last frame dropped) followed by
    Whisper's filterbank and clamping, computed frame-major: one real FFT over the framed signal and
    the filterbank applied on the right, so that no transposes or complex reductions are needed.
    """
    x = torch.as_tensor(audio, dtype=torch.float32)
    half = N_FFT // 2
    if x.numel() <= half:
        raise ValueError(f"log_mel needs more than {half} samples, got {x.numel()}")
    padded = torch.cat([x[1 : half + 1].flip(0), x, x[-half - 1 : -1].flip(0)])  # reflect padding
    frames = padded.unfold(0, N_FFT, HOP)[:-1] * _WINDOW
    spec = torch.fft.rfft(frames)
    power = (spec * spec.conj()).real  # |X|^2 without strided real/imag views
    logm = (power @ mel_filters(n_mels)).clamp_(min=1e-10).log10_()
    logm.clamp_(min=float(logm.max()) - 8.0)  # in place: every temporary here is a frames x bins copy
    return logm.add_(4.0).div_(4.0)


def spec_augment(feats: torch.Tensor, rng: random.Random, num_time_masks: int = 2, max_time: int = 50,
                 num_freq_masks: int = 2, max_freq: int = 10) -> torch.Tensor:
    """Zero ``num_time_masks`` time spans (<= max_time frames) and ``num_freq_masks`` bands (<= max_freq bins)."""
    y = feats.clone()
    t, f = y.shape
    for _ in range(num_time_masks):
        w = rng.randint(0, min(max_time, max(t // 5, 1)))
        s = rng.randint(0, max(t - w, 0))
        y[s : s + w, :] = 0
    for _ in range(num_freq_masks):
        w = rng.randint(0, max_freq)
        s = rng.randint(0, max(f - w, 0))
        y[:, s : s + w] = 0
    return y
