"""The no-training vocoder: log mel -> linear magnitude (mel basis pseudo-inverse or NNLS) -> fast Griffin-Lim.

Quality is far below the neural vocoder (``osum.token2wav.vocoder``: phasey, metallic), but it needs no
checkpoint, so a flow model can be listened to before any vocoder is trained. Follows the frame rule of
``osum.token2wav.mel``: ``F`` mel frames give ``F * hop`` samples.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from osum.token2wav.mel import MelConfig, istft, mel_basis, stft

METHODS = ("pinv", "nnls")


@lru_cache(maxsize=8)
def _pinv_basis(cfg: MelConfig) -> torch.Tensor:
    return torch.linalg.pinv(mel_basis(cfg).double()).float()  # (n_freqs, n_mels)


def mel_to_magnitude(log_mel: torch.Tensor, cfg: MelConfig | None = None, method: str = "pinv",
                     nnls_iters: int = 100) -> torch.Tensor:
    """(..., n_mels, F) log mel -> (..., n_freqs, F) non-negative linear magnitude.

    ``pinv``: the pseudo-inverse of the mel basis, clamped at 0. ``nnls``: that, refined by projected
    gradient steps on ``||basis @ X - mel||^2`` subject to ``X >= 0`` (closer, slower).
    """
    cfg = cfg or MelConfig()
    if method not in METHODS:
        raise ValueError(f"griffin_lim: method must be one of {METHODS}, got {method!r}")
    if log_mel.shape[-2] != cfg.n_mels:
        raise ValueError(f"griffin_lim: expected (..., {cfg.n_mels}, frames) log mel, got {tuple(log_mel.shape)}")
    target = torch.exp(log_mel.float())
    x = (_pinv_basis(cfg).to(target.device) @ target).clamp_(min=0.0)
    if method == "nnls":
        basis = mel_basis(cfg).to(target.device)
        step = 1.0 / float(torch.linalg.matrix_norm(basis, ord=2) ** 2)  # 1 / Lipschitz constant
        gram, rhs = basis.T @ basis, basis.T @ target
        for _ in range(nnls_iters):
            x = (x - step * (gram @ x - rhs)).clamp_(min=0.0)
    return x


def griffin_lim_magnitude(magnitude: torch.Tensor, cfg: MelConfig | None = None, n_iter: int = 60,
                          momentum: float = 0.99, seed: int = 0) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013) of (..., n_freqs, F) magnitude: (..., F * hop) audio. ``cfg``:
    any mel config with ``n_fft``, ``hop_length`` and ``win_length`` (CosyVoice's too)."""
    cfg = cfg or MelConfig()
    if n_iter < 1:
        raise ValueError(f"griffin_lim: n_iter must be >= 1, got {n_iter}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"griffin_lim: momentum must be in [0, 1), got {momentum}")
    frames = magnitude.shape[-1]
    length = frames * cfg.hop_length
    # a centred STFT of F * hop samples has F + 1 frames: the last magnitude frame is repeated
    mag = torch.cat([magnitude, magnitude[..., -1:]], dim=-1).float()
    generator = torch.Generator().manual_seed(seed)
    phase = torch.rand(mag.shape, generator=generator).to(mag.device) * (2 * torch.pi)
    angles = torch.polar(torch.ones_like(mag), phase)
    previous = torch.zeros_like(angles)
    for _ in range(n_iter):
        rebuilt = stft(istft(mag * angles, cfg, length), cfg)
        angles = rebuilt - previous * (momentum / (1 + momentum))
        angles = angles / (angles.abs() + 1e-16)
        previous = rebuilt
    return istft(mag * angles, cfg, length)


def griffin_lim(log_mel: torch.Tensor | np.ndarray, cfg: MelConfig | None = None, n_iter: int = 60,
                momentum: float = 0.99, method: str = "pinv", seed: int = 0) -> np.ndarray:
    """(n_mels, F) or (B, n_mels, F) log mel -> (F * hop,) or (B, F * hop) float32 audio."""
    cfg = cfg or MelConfig()
    mel = torch.as_tensor(log_mel, dtype=torch.float32)
    if mel.ndim not in (2, 3) or mel.shape[-1] < 1:
        raise ValueError(f"griffin_lim takes (n_mels, frames) or (batch, n_mels, frames), got {tuple(mel.shape)}")
    with torch.no_grad():
        wav = griffin_lim_magnitude(mel_to_magnitude(mel, cfg, method), cfg, n_iter, momentum, seed)
    return wav.clamp(-1.0, 1.0).cpu().numpy().astype(np.float32)
