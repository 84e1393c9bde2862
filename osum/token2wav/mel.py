"""The token2wav log-mel: the flow model's target and the vocoder's input, and how its length follows the codes.

Speech codes come at 25 Hz; this mel has hop 160 at 16 kHz (100 Hz), so **4 mel frames per code**. The
frame rule, used everywhere in ``osum.token2wav``:

* a waveform of ``n`` samples has ``n // hop`` mel frames (centred STFT with reflect padding, the last,
  partial frame dropped), and a vocoder turns ``F`` frames back into exactly ``F * hop`` samples;
* the speech tokenizer gives ``codes_for_samples(n) = ceil(ceil(T / 2) / 2)`` codes for ``T = n // 160``
  Whisper frames (two stride-2 stages);
* for ``N`` codes the mel has exactly ``4 N`` frames: the waveform is zero-padded or cut to
  ``4 N * hop`` samples *before* the mel is taken (``fit_to_codes``), so at most 3 frames (30 ms) of
  trailing silence are added or, for a sample whose code count is one off, a code's worth of audio cut.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np
import torch

CODE_RATE = 25  # speech codes per second (the speech tokenizer's rate)
WHISPER_HOP = 160  # the tokenizer's input frames: Whisper log-mel at 100 Hz


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 16000
    n_fft: int = 640
    win_length: int = 640
    hop_length: int = 160
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    clamp: float = 1e-5  # log(max(magnitude mel, clamp))

    def __post_init__(self) -> None:
        if self.sample_rate % (self.hop_length * CODE_RATE):
            raise ValueError(f"mel: hop_length {self.hop_length} does not give a whole number of frames per "
                             f"{CODE_RATE} Hz code at {self.sample_rate} Hz")
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"mel: win_length must be in (0, n_fft={self.n_fft}], got {self.win_length}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"mel: need 0 <= fmin < fmax <= sample_rate / 2, got {self.fmin}, {self.fmax}")
        if self.n_mels < 1 or self.clamp <= 0:
            raise ValueError("mel: n_mels must be >= 1 and clamp > 0")

    @property
    def frames_per_code(self) -> int:
        return self.sample_rate // (self.hop_length * CODE_RATE)

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    def mel_spectrogram(self, wav: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``mel_spectrogram(wav, self)``: the method a synthesizer's mel config has, whichever model's it is
        (``osum.token2wav.cosyvoice.mel.CosyVoiceMel`` has its own)."""
        return mel_spectrogram(wav, self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> MelConfig:
        d = dict(d or {})
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"mel: unknown key(s) {unknown}; known: {[f.name for f in fields(cls)]}")
        return cls(**d)


@lru_cache(maxsize=8)
def mel_basis(cfg: MelConfig) -> torch.Tensor:
    """Slaney-normalised mel filterbank on the slaney scale (librosa's default): (n_mels, n_freqs)."""
    import torchaudio.functional as AF

    return AF.melscale_fbanks(cfg.n_freqs, cfg.fmin, cfg.fmax, cfg.n_mels, cfg.sample_rate,
                              norm="slaney", mel_scale="slaney").T.contiguous()


@lru_cache(maxsize=8)
def _window(win_length: int) -> torch.Tensor:
    return torch.hann_window(win_length)


def stft(wav: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Complex STFT (..., n_freqs, n // hop + 1) of (..., n) audio, centred with reflect padding."""
    if wav.shape[-1] <= cfg.n_fft // 2:
        raise ValueError(f"mel: audio needs more than {cfg.n_fft // 2} samples, got {wav.shape[-1]}")
    lead = wav.shape[:-1]
    spec = torch.stft(wav.reshape(-1, wav.shape[-1]).float(), cfg.n_fft, cfg.hop_length, cfg.win_length,
                      _window(cfg.win_length).to(wav.device), center=True, pad_mode="reflect", return_complex=True)
    return spec.reshape(*lead, *spec.shape[-2:])


def istft(spec: torch.Tensor, cfg: MelConfig, length: int) -> torch.Tensor:
    """Inverse of ``stft``: (..., n_freqs, frames) complex -> (..., length) audio."""
    lead = spec.shape[:-2]
    wav = torch.istft(spec.reshape(-1, *spec.shape[-2:]), cfg.n_fft, cfg.hop_length, cfg.win_length,
                      _window(cfg.win_length).to(spec.device), center=True, length=length)
    return wav.reshape(*lead, length)


def log_mel_from_magnitude(magnitude: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """(..., n_freqs, frames) linear magnitude -> (..., n_mels, frames) log mel."""
    basis = mel_basis(cfg).to(magnitude.device, magnitude.dtype)
    return torch.log(torch.clamp(basis @ magnitude, min=cfg.clamp))


def mel_spectrogram(wav: np.ndarray | torch.Tensor, cfg: MelConfig | None = None) -> torch.Tensor:
    """Log magnitude mel of (n,) or (B, n) audio: (n_mels, n // hop) or (B, n_mels, n // hop)."""
    cfg = cfg or MelConfig()
    x = torch.as_tensor(wav, dtype=torch.float32)
    if x.ndim not in (1, 2):
        raise ValueError(f"mel_spectrogram takes (samples,) or (batch, samples) audio, got shape {tuple(x.shape)}")
    frames = x.shape[-1] // cfg.hop_length
    if frames < 1:
        raise ValueError(f"mel: audio of {x.shape[-1]} samples is shorter than one hop ({cfg.hop_length})")
    with torch.autocast(device_type=x.device.type, enabled=False):  # float32 even inside a bf16 step
        magnitude = stft(x, cfg).abs()[..., :frames]
        return log_mel_from_magnitude(magnitude, cfg)


def frames_for_codes(n_codes: int, cfg: MelConfig | None = None) -> int:
    """Mel frames of a sequence of ``n_codes`` codes: 4 per code at the default config."""
    return n_codes * (cfg or MelConfig()).frames_per_code


def samples_for_codes(n_codes: int, cfg: MelConfig | None = None) -> int:
    cfg = cfg or MelConfig()
    return frames_for_codes(n_codes, cfg) * cfg.hop_length


def codes_for_samples(n_samples: int, sample_rate: int = 16000) -> int:
    """How many codes the speech tokenizer gives for ``n_samples`` of audio: ceil(ceil(T/2)/2), T Whisper frames."""
    whisper_frames = n_samples * 16000 // sample_rate // WHISPER_HOP
    return math.ceil(math.ceil(whisper_frames / 2) / 2)


def fit_to_codes(wav: np.ndarray, n_codes: int, cfg: MelConfig | None = None) -> np.ndarray:
    """``wav`` zero-padded or cut to the ``4 * n_codes * hop`` samples whose mel has exactly ``4 * n_codes`` frames."""
    if n_codes < 1:
        raise ValueError(f"fit_to_codes needs at least one code, got {n_codes}")
    n = samples_for_codes(n_codes, cfg)
    wav = np.asarray(wav, dtype=np.float32)
    if len(wav) >= n:
        return wav[:n]
    return np.pad(wav, (0, n - len(wav)))
