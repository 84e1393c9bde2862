"""A Vocos-style neural vocoder: log mel -> ConvNeXt blocks -> iSTFT head, and its reconstruction losses.

After Vocos (Siuzdenko 2023) without the GAN: the network stays at the mel frame rate and predicts the
STFT itself (log magnitude and phase per bin, n_fft 640, hop 160), which an inverse STFT turns into audio,
so there is no upsampling stack. ``F`` mel frames give exactly ``F * hop`` samples (the frame rule of
``osum.token2wav.mel``). Trained with a multi-resolution STFT loss (spectral convergence + log magnitude L1)
and an L1 on the log mel of the output (``VocoderLoss``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from osum.token2wav.layers import ConvNeXtBlock
from osum.token2wav.mel import MelConfig, istft, mel_spectrogram

DEFAULT_RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (256, 64, 256))  # (n_fft, hop, win)


@dataclass
class VocoderConfig:
    n_mels: int = 80
    dim: int = 128
    intermediate: int = 384
    layers: int = 4
    kernel_size: int = 7
    max_log_magnitude: float = 4.6  # exp(4.6) ~ 100: the magnitude is clamped there (Vocos' clip)
    mel_mean: float = -5.5          # input normalisation
    mel_std: float = 2.3
    stft_weight: float = 1.0
    mel_weight: float = 1.0
    resolutions: tuple[tuple[int, int, int], ...] = DEFAULT_RESOLUTIONS

    def __post_init__(self) -> None:
        self.resolutions = tuple(tuple(int(v) for v in r) for r in self.resolutions)
        if any(len(r) != 3 or not 0 < r[2] <= r[0] or r[1] < 1 for r in self.resolutions):
            raise ValueError(f"vocoder: resolutions must be (n_fft, hop, win) with 0 < win <= n_fft, got "
                             f"{self.resolutions}")
        if min(self.n_mels, self.dim, self.intermediate, self.layers) < 1 or self.mel_std <= 0:
            raise ValueError("vocoder: n_mels, dim, intermediate and layers must be >= 1 and mel_std > 0")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["resolutions"] = [list(r) for r in self.resolutions]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VocoderConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"vocoder model config: unknown key(s) {unknown}; known: {[f.name for f in fields(cls)]}")
        return cls(**d)


class Vocoder(nn.Module):
    """(B, n_mels, F) log mel -> (B, F * hop) audio."""

    def __init__(self, cfg: VocoderConfig, mel: MelConfig | None = None):
        super().__init__()
        self.cfg, self.mel = cfg, mel or MelConfig()
        if cfg.n_mels != self.mel.n_mels:
            raise ValueError(f"vocoder: n_mels {cfg.n_mels} differs from the mel config's {self.mel.n_mels}")
        self.embed = nn.Conv1d(cfg.n_mels, cfg.dim, cfg.kernel_size, padding=cfg.kernel_size // 2)
        self.norm = nn.LayerNorm(cfg.dim)
        self.blocks = nn.ModuleList(ConvNeXtBlock(cfg.dim, cfg.intermediate, cfg.kernel_size, layer_scale=1 / cfg.layers)
                                    for _ in range(cfg.layers))
        self.final_norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, 2 * self.mel.n_freqs)  # log magnitude and phase per bin

    def spectrum(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Complex STFT (B, n_freqs, F + 1): a centred STFT of F * hop samples has one frame more than the mel."""
        if log_mel.ndim != 3 or log_mel.shape[1] != self.cfg.n_mels:
            raise ValueError(f"vocoder: expected (batch, {self.cfg.n_mels}, frames) log mel, got {tuple(log_mel.shape)}")
        x = (log_mel - self.cfg.mel_mean) / self.cfg.mel_std
        x = torch.cat([x, x[..., -1:]], dim=-1)
        h = self.norm(self.embed(x).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            h = block(h)
        log_mag, phase = self.head(self.final_norm(h.transpose(1, 2))).transpose(1, 2).float().chunk(2, dim=1)
        magnitude = torch.exp(log_mag.clamp(max=self.cfg.max_log_magnitude))
        return torch.polar(magnitude, phase)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        spec = self.spectrum(log_mel)
        with torch.autocast(device_type=spec.device.type, enabled=False):
            return istft(spec, self.mel, log_mel.shape[-1] * self.mel.hop_length)


def _magnitude(wav: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    window = torch.hann_window(win, device=wav.device)
    spec = torch.stft(wav, n_fft, hop, win, window, center=True, return_complex=True)
    return spec.abs().clamp(min=1e-7)


class VocoderLoss(nn.Module):
    """Multi-resolution STFT loss (spectral convergence + log magnitude L1, averaged over resolutions) plus
    the L1 between the log mel of the output and of the target, on equal-length rows (the data module pads
    short clips with silence, itself a valid target)."""

    def __init__(self, cfg: VocoderConfig, mel: MelConfig | None = None):
        super().__init__()
        self.cfg, self.mel = cfg, mel or MelConfig()

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss", "sc", "log_mag", "mel"}`` for (B, n) generated and target audio."""
        if fake.shape != real.shape or fake.ndim != 2:
            raise ValueError(f"vocoder loss: fake and real must both be (batch, samples), got "
                             f"{tuple(fake.shape)} and {tuple(real.shape)}")
        if fake.shape[1] <= max(r[0] for r in self.cfg.resolutions) // 2:
            raise ValueError(f"vocoder loss: {fake.shape[1]} samples is too short for the STFT resolutions "
                             f"{self.cfg.resolutions}")
        fake, real = fake.float(), real.float()
        sc = fake.new_zeros(())
        log_mag = fake.new_zeros(())
        for n_fft, hop, win in self.cfg.resolutions:
            f, r = _magnitude(fake, n_fft, hop, win), _magnitude(real, n_fft, hop, win)
            sc = sc + (torch.linalg.norm(r - f, dim=(1, 2)) / torch.linalg.norm(r, dim=(1, 2)).clamp(min=1e-7)).mean()
            log_mag = log_mag + (torch.log(r) - torch.log(f)).abs().mean()
        k = len(self.cfg.resolutions)
        mel_l1 = (mel_spectrogram(fake, self.mel) - mel_spectrogram(real, self.mel)).abs().mean()
        parts = {"sc": sc / k, "log_mag": log_mag / k, "mel": mel_l1}
        parts["loss"] = self.cfg.stft_weight * (parts["sc"] + parts["log_mag"]) + self.cfg.mel_weight * parts["mel"]
        return parts
