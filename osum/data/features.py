"""Whisper log-mel features at the real audio length, and SpecAugment.

Per sample in the loader (``log_mel``, ``spec_augment``), or for a padded batch on the model's device
(``log_mel_batch``, ``apply_spec_masks``) when ``data.features: model`` leaves them to the accelerator:
the same numbers either way. SpecAugment masks are always drawn in the loader from the sample's own
RNG (``draw_spec_masks``), so a resumed stream masks every sample as before, wherever they are applied.
"""

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


def _log10_mel_power(frames: torch.Tensor, n_mels: int) -> torch.Tensor:
    """log10 of the mel-filtered power spectrum of (..., N_FFT) frames, floored at 1e-10, on their device."""
    spec = torch.fft.rfft(frames * _WINDOW.to(frames.device))
    power = (spec * spec.conj()).real  # |X|^2 without strided real/imag views
    return (power @ mel_filters(n_mels).to(frames.device)).clamp_(min=1e-10).log10_()


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
    logm = _log10_mel_power(padded.unfold(0, N_FFT, HOP)[:-1], n_mels)
    logm.clamp_(min=float(logm.max()) - 8.0)  # in place: every temporary here is a frames x bins copy
    return logm.add_(4.0).div_(4.0)


def log_mel_batch(audio: torch.Tensor, lengths: torch.Tensor, n_mels: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    """``log_mel`` of each row of a right-padded (B, N) batch, on its device: (B, N // 160, n_mels), each
    row zero after its own ``lengths[i] // 160`` frames, and those frame counts."""
    b, n = audio.shape
    half = N_FFT // 2
    if int(lengths.min()) <= half:
        raise ValueError(f"log_mel_batch needs more than {half} samples per row, got {int(lengths.min())}")
    lengths = lengths.to(audio.device)
    pos = torch.arange(-half, n + half, device=audio.device)[None, :].expand(b, -1)
    last = (lengths - 1)[:, None]
    source = torch.where(pos < 0, -pos, torch.where(pos > last, 2 * last - pos, pos))  # each row's own reflection
    padded = audio.float().gather(1, source.clamp(0, n - 1))
    logm = _log10_mel_power(padded.unfold(1, N_FFT, HOP)[:, :-1], n_mels)
    n_frames = lengths // HOP
    real = torch.arange(logm.shape[1], device=audio.device)[None, :] < n_frames[:, None]
    peak = logm.masked_fill(~real[..., None], float("-inf")).amax(dim=(1, 2), keepdim=True)
    logm = torch.maximum(logm, peak - 8.0).add_(4.0).div_(4.0)
    return logm.masked_fill_(~real[..., None], 0.0), n_frames


def draw_spec_masks(frames: int, n_mels: int, rng: random.Random, num_time_masks: int = 2, max_time: int = 50,
                    num_freq_masks: int = 2, max_freq: int = 10) -> list[tuple[int, int, int]]:
    """SpecAugment's masks for one sample: (axis 0 = time / 1 = mel bin, start, width), time spans of at
    most ``max_time`` frames (and a fifth of the sample), bands of at most ``max_freq`` bins."""
    masks = []
    for _ in range(num_time_masks):
        w = rng.randint(0, min(max_time, max(frames // 5, 1)))
        masks.append((0, rng.randint(0, max(frames - w, 0)), w))
    for _ in range(num_freq_masks):
        w = rng.randint(0, max_freq)
        masks.append((1, rng.randint(0, max(n_mels - w, 0)), w))
    return masks


def spec_augment(feats: torch.Tensor, rng: random.Random, **masks_cfg) -> torch.Tensor:
    """Zero time spans and mel bands of one sample's (frames, n_mels) features (see ``draw_spec_masks``)."""
    y = feats.clone()
    for axis, start, width in draw_spec_masks(y.shape[0], y.shape[1], rng, **masks_cfg):
        if axis == 0:
            y[start : start + width, :] = 0
        else:
            y[:, start : start + width] = 0
    return y


def apply_spec_masks(mel: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Zero a batch's masks, (B, K, 3) rows of (axis, start, width) as ``draw_spec_masks`` gives, in one op."""
    if masks.numel() == 0:
        return mel
    masks = masks.to(mel.device)
    axis, start, end = masks[..., 0:1], masks[..., 1:2], masks[..., 1:2] + masks[..., 2:3]  # (B, K, 1)
    t = torch.arange(mel.shape[1], device=mel.device)[None, None, :]
    f = torch.arange(mel.shape[2], device=mel.device)[None, None, :]
    in_time = ((axis == 0) & (t >= start) & (t < end)).any(1)  # (B, T)
    in_freq = ((axis == 1) & (f >= start) & (f < end)).any(1)  # (B, n_mels)
    return mel.masked_fill(in_time[:, :, None] | in_freq[:, None, :], 0.0)
