"""CosyVoice v1's mel (Matcha-TTS's ``mel_spectrogram`` at 22050 Hz) and a Griffin-Lim over it (the loop of
``osum.token2wav.griffin_lim``).

80 slaney mel bins from 0 to 8 kHz of an STFT with n_fft = win = 1024 and hop 256 (Hann), the audio
reflect-padded by 384 on each side and not centred, so ``n`` samples give ``n // 256`` frames; magnitude
``sqrt(re^2 + im^2 + 1e-9)``, natural log clamped at 1e-5. This is the flow's output, HiFT's input and the
prompt mel. ``CosyVoiceMel`` stands where ``osum.token2wav.mel.MelConfig`` stands for ``Token2Wav``: its
``sample_rate`` is the synthesizer's audio rate (16 kHz), resampled to 22050 Hz inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from osum.token2wav.cosyvoice.config import MEL_HOP, MEL_RATE
from osum.token2wav.griffin_lim import griffin_lim_magnitude


@dataclass(frozen=True)
class CosyVoiceMel:
    sample_rate: int = 16000   # the rate of the audio given and returned (resampled to mel_rate inside)
    mel_rate: int = MEL_RATE
    n_fft: int = 1024
    hop_length: int = MEL_HOP
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    clamp: float = 1e-5

    @property
    def win_length(self) -> int:  # what osum.token2wav.mel's stft / istft read
        return self.n_fft

    def mel_spectrogram(self, wav: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Log mel of (n,) or (B, n) audio at ``sample_rate``: (80, F) or (B, 80, F) at 22050 / 256 Hz."""
        return cosyvoice_mel(resample(torch.as_tensor(wav, dtype=torch.float32), self.sample_rate, self.mel_rate),
                             self)


def resample(wav: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """torchaudio's sinc resampling (as CosyVoice's ``load_wav``), identity when the rates agree."""
    if orig == new:
        return wav
    import torchaudio.functional as AF

    return AF.resample(wav, orig, new)


@lru_cache(maxsize=4)
def mel_basis(cfg: CosyVoiceMel) -> torch.Tensor:
    """(n_mels, n_fft / 2 + 1) slaney-normalised filterbank on the slaney scale (librosa's default)."""
    import torchaudio.functional as AF

    return AF.melscale_fbanks(cfg.n_fft // 2 + 1, cfg.fmin, cfg.fmax, cfg.n_mels, cfg.mel_rate,
                              norm="slaney", mel_scale="slaney").T.contiguous()


def cosyvoice_mel(wav: torch.Tensor, cfg: CosyVoiceMel | None = None) -> torch.Tensor:
    """(n,) or (B, n) audio at 22050 Hz -> (80, n // 256) or (B, 80, n // 256) log mel."""
    cfg = cfg or CosyVoiceMel()
    x = torch.as_tensor(wav, dtype=torch.float32)
    pad = (cfg.n_fft - cfg.hop_length) // 2
    if x.ndim not in (1, 2) or x.shape[-1] <= pad:
        raise ValueError(f"cosyvoice mel: needs (samples,) or (batch, samples) audio of more than {pad} samples "
                         f"at {cfg.mel_rate} Hz, got shape {tuple(x.shape)}")
    lead = x.shape[:-1]
    y = torch.nn.functional.pad(x.reshape(-1, 1, x.shape[-1]), (pad, pad), mode="reflect").squeeze(1)
    spec = torch.stft(y, cfg.n_fft, cfg.hop_length, cfg.n_fft, torch.hann_window(cfg.n_fft, device=x.device),
                      center=False, return_complex=True)
    magnitude = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-9)
    mel = torch.log(torch.clamp(mel_basis(cfg).to(x.device) @ magnitude, min=cfg.clamp))
    return mel.reshape(*lead, *mel.shape[-2:])


@lru_cache(maxsize=4)
def _pinv_basis(cfg: CosyVoiceMel) -> torch.Tensor:
    return torch.linalg.pinv(mel_basis(cfg).double()).float()


def griffin_lim(mel: torch.Tensor, cfg: CosyVoiceMel | None = None, n_iter: int = 60, momentum: float = 0.99,
                seed: int = 0) -> torch.Tensor:
    """(B, 80, F) log mel -> (B, 256 F) audio at 22050 Hz: mel-basis pseudo-inverse, then our fast Griffin-Lim."""
    cfg = cfg or CosyVoiceMel()
    magnitude = (_pinv_basis(cfg).to(mel.device) @ torch.exp(mel.float())).clamp_(min=0.0)
    return griffin_lim_magnitude(magnitude, cfg, n_iter, momentum, seed).clamp(-1.0, 1.0)
