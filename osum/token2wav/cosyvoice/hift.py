"""CosyVoice v1's vocoder (``HiFTGenerator``, HiFT-Net: a neural source filter + iSTFTNet): 22050 Hz mel -> audio.

An F0 predictor (``f0_predictor``: five weight-normed convs with ELU, a linear layer, |.|) gives the pitch
per mel frame; it is held over the 256 samples of each frame and turned into a harmonic source
(``m_source``: a fundamental and 8 overtones with random start phases, noise where unvoiced (F0 <= 10 Hz),
merged by a linear layer and tanh). The mel goes through ``conv_pre`` and two transposed-conv upsamplings
(x8, x8) with Snake-activated multi-kernel residual blocks; after each, the source's STFT (n_fft 16, hop 4),
downsampled to that rate (``source_downs``, ``source_resblocks``), is added. ``conv_post`` gives the log
magnitude and phase of an STFT that ``torch.istft`` (n_fft 16, hop 4) turns into 256 samples per frame,
clipped to +-0.99. Convolutions are weight-normed (``torch.nn.utils.parametrizations.weight_norm``); the
``weight_g`` / ``weight_v`` spelling of older files is mapped by ``osum.token2wav.cosyvoice.folder``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from osum.token2wav.cosyvoice.config import HiFTConfig


class Snake(nn.Module):
    """x + sin^2(alpha x) / alpha, one alpha per channel (linear scale)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.unsqueeze(0).unsqueeze(-1)
        return x + (1.0 / (alpha + 1e-9)) * torch.sin(x * alpha).pow(2)


class ResBlock(nn.Module):
    """Per dilation: Snake -> dilated conv -> Snake -> conv, added to the input."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(weight_norm(nn.Conv1d(channels, channels, kernel_size, dilation=d,
                                                          padding=(kernel_size * d - d) // 2)) for d in dilations)
        self.convs2 = nn.ModuleList(weight_norm(nn.Conv1d(channels, channels, kernel_size,
                                                          padding=(kernel_size - 1) // 2)) for _ in dilations)
        self.activations1 = nn.ModuleList(Snake(channels) for _ in dilations)
        self.activations2 = nn.ModuleList(Snake(channels) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2, act1, act2 in zip(self.convs1, self.convs2, self.activations1, self.activations2):
            x = x + conv2(act2(conv1(act1(x))))
        return x


class ConvRNNF0Predictor(nn.Module):
    """(B, 80, T) mel -> (B, T) non-negative F0 in Hz."""

    def __init__(self, in_channels: int = 80, cond_channels: int = 512, num_class: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(5):
            layers += [weight_norm(nn.Conv1d(in_channels if i == 0 else cond_channels, cond_channels, 3, padding=1)),
                       nn.ELU()]
        self.condnet = nn.Sequential(*layers)
        self.classifier = nn.Linear(cond_channels, num_class)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.abs(self.classifier(self.condnet(mel).transpose(1, 2)).squeeze(-1))


class SourceModuleHnNSF(nn.Module):
    """Sample-rate F0 (B, L, 1) -> the merged harmonic excitation (B, L, 1) (CosyVoice's ``SineGen`` inside)."""

    def __init__(self, sampling_rate: int, harmonics: int, sine_amp: float, noise_std: float,
                 voiced_threshold: float):
        super().__init__()
        self.sampling_rate, self.harmonics = sampling_rate, harmonics
        self.sine_amp, self.noise_std, self.voiced_threshold = sine_amp, noise_std, voiced_threshold
        self.l_linear = nn.Linear(harmonics + 1, 1)

    def sines(self, f0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, L, 1) F0 -> (B, L, harmonics + 1): voiced sines at random start phases (none for the fundamental),
        plus noise (std ``noise_std`` voiced, ``sine_amp / 3`` unvoiced)."""
        f0 = f0.transpose(1, 2)                                                    # (B, 1, L)
        ratios = torch.zeros(f0.shape[0], self.harmonics + 1, f0.shape[-1], device=f0.device)
        for i in range(self.harmonics + 1):
            ratios[:, i : i + 1, :] = f0 * (i + 1) / self.sampling_rate
        theta = 2 * math.pi * (torch.cumsum(ratios, dim=-1) % 1)
        low, high = torch.tensor(-math.pi), torch.tensor(math.pi)
        phase = low + torch.rand((f0.shape[0], self.harmonics + 1, 1), generator=generator) * (high - low)
        phase[:, 0, :] = 0
        sines = self.sine_amp * torch.sin(theta + phase.to(f0.device))
        uv = (f0 > self.voiced_threshold).float()
        noise_amp = uv * self.noise_std + (1 - uv) * self.sine_amp / 3
        noise = noise_amp * torch.randn(sines.shape, generator=generator).to(sines.device)
        return (sines * uv + noise).transpose(1, 2)

    def forward(self, f0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.tanh(self.l_linear(self.sines(f0, generator)))


class HiFTGenerator(nn.Module):
    """(B, 80, T) mel -> (B, 256 T) audio at 22050 Hz; ``cfg`` is what ``load_state_dict`` of ``hift.pt`` needs."""

    def __init__(self, cfg: HiFTConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or HiFTConfig()
        self.m_source = SourceModuleHnNSF(cfg.sampling_rate, cfg.nb_harmonics, cfg.nsf_alpha, cfg.nsf_sigma,
                                          cfg.nsf_voiced_threshold)
        self.conv_pre = weight_norm(nn.Conv1d(cfg.in_channels, cfg.base_channels, 7, 1, padding=3))
        self.ups = nn.ModuleList(
            weight_norm(nn.ConvTranspose1d(cfg.base_channels // 2**i, cfg.base_channels // 2 ** (i + 1), k, u,
                                           padding=(k - u) // 2))
            for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes)))
        bins = cfg.n_fft + 2
        # the source's STFT frames, downsampled to each stage's rate: x (product of the later stages' rates)
        rates = list(cfg.upsample_rates)
        self.source_downs, self.source_resblocks = nn.ModuleList(), nn.ModuleList()
        for i, (k, d) in enumerate(zip(cfg.source_resblock_kernel_sizes, cfg.source_resblock_dilation_sizes)):
            width = cfg.base_channels // 2 ** (i + 1)
            u = math.prod(rates[i + 1 :])
            self.source_downs.append(nn.Conv1d(bins, width, 1, 1) if u == 1 else
                                     nn.Conv1d(bins, width, u * 2, u, padding=u // 2))
            self.source_resblocks.append(ResBlock(width, k, d))
        self.resblocks = nn.ModuleList(
            ResBlock(cfg.base_channels // 2 ** (i + 1), k, d)
            for i in range(len(self.ups))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes))
        self.conv_post = weight_norm(nn.Conv1d(cfg.base_channels // 2 ** len(self.ups), bins, 7, 1, padding=3))
        self.f0_predictor = ConvRNNF0Predictor(cfg.in_channels, cfg.f0_cond_channels, cfg.f0_num_class)

    def _window(self, device: torch.device) -> torch.Tensor:
        return torch.hann_window(self.cfg.n_fft, periodic=True, dtype=torch.float64).float().to(device)

    def source(self, mel: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The excitation (B, 1, 256 T) from the predicted F0, held over each frame's samples."""
        f0 = self.f0_predictor(mel)
        f0 = f0[:, None].repeat_interleave(self.cfg.upsample_scale, dim=-1).transpose(1, 2)  # (B, L, 1)
        return self.m_source(f0, generator).transpose(1, 2)

    def decode(self, mel: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """Mel (B, 80, T) + excitation (B, 1, 256 T) -> audio (B, 256 T)."""
        cfg, window = self.cfg, self._window(mel.device)
        spec = torch.stft(source.squeeze(1), cfg.n_fft, cfg.hop_len, cfg.n_fft, window=window, return_complex=True)
        spec = torch.view_as_real(spec)
        s = torch.cat([spec[..., 0], spec[..., 1]], dim=1)
        x = self.conv_pre(mel)
        kernels = len(cfg.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, cfg.lrelu_slope))
            if i == len(self.ups) - 1:
                x = F.pad(x, (1, 0), mode="reflect")
            x = x + self.source_resblocks[i](self.source_downs[i](s))
            x = sum(self.resblocks[i * kernels + j](x) for j in range(kernels)) / kernels
        x = self.conv_post(F.leaky_relu(x))
        half = cfg.n_fft // 2 + 1
        magnitude = torch.clip(torch.exp(x[:, :half]), max=1e2)
        phase = torch.sin(x[:, half:])
        spec = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        wav = torch.istft(spec, cfg.n_fft, cfg.hop_len, cfg.n_fft, window=window)
        return torch.clamp(wav, -cfg.audio_limit, cfg.audio_limit)

    @torch.no_grad()
    def inference(self, mel: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, 80, T) mel -> (B, 256 T) float audio at 22050 Hz (source noise from ``generator``)."""
        if mel.ndim != 3 or mel.shape[1] != self.cfg.in_channels:
            raise ValueError(f"cosyvoice hift: mel must be (B, {self.cfg.in_channels}, T), got {tuple(mel.shape)}")
        return self.decode(mel, self.source(mel, generator))
