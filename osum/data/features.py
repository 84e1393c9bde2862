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
    """Whisper's log-mel of 16 kHz audio without padding to 30 s: (frames, n_mels), frames = len // 160."""
    x = torch.as_tensor(audio, dtype=torch.float32)
    stft = torch.stft(x, N_FFT, HOP, window=_WINDOW, return_complex=True)[:, :-1]
    spec = torch.view_as_real(stft).pow(2).sum(-1)  # power without a square root
    mel = mel_filters(n_mels).T @ spec
    logm = torch.clamp(mel, min=1e-10).log10()
    logm = torch.maximum(logm, logm.max() - 8.0)
    return ((logm + 4.0) / 4.0).T.contiguous()


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
