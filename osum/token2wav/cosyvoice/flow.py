"""CosyVoice v1's flow (``MaskedDiffWithXvec``): speech codes + a CAM++ x-vector [+ a prompt] -> 22050 Hz mel.

Codes are embedded (``input_embedding``), encoded by the Conformer (``encoder``), projected to 80 channels
(``encoder_proj``) and stretched by linear interpolation to ``int(N / rate * 22050 / 256)`` mel frames
(``length_regulator``: the prompt's codes to the prompt mel's length, the codes to theirs; past 40 codes, the
first and last 20 separately, as CosyVoice does), then refined by convolutions. The x-vector is L2-normalised
and projected to 80 (``spk_embed_affine_layer``). The mel comes from conditional flow matching
(``decoder``): noise x 1.0 (temperature), Euler steps on a cosine time grid, each step the estimator with
and without the conditions (mu, speaker, prompt), mixed ``(1 + w) v_cond - w v_uncond`` (w = 0.7). The
prompt mel fills the condition channels of its frames and is cut from the result. Without a prompt only
the x-vector gives the voice (zero-shot by x-vector).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from osum.token2wav.cosyvoice.config import CosyVoiceFlowConfig, mel_frames
from osum.token2wav.cosyvoice.encoder import ConformerEncoder
from osum.token2wav.cosyvoice.estimator import ConditionalDecoder

OVERLAP_CODES = 20  # CosyVoice's token_overlap_len: the head and tail stretched apart from the middle


class InterpolateRegulator(nn.Module):
    """(B, T_codes, C) -> (B, frames, C): linear interpolation, then [Conv1d(3), GroupNorm, Mish] x n + Conv1d(1)."""

    def __init__(self, channels: int, blocks: int, groups: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(blocks):
            layers += [nn.Conv1d(channels, channels, 3, 1, 1), nn.GroupNorm(groups, channels), nn.Mish()]
        layers.append(nn.Conv1d(channels, channels, 1, 1))
        self.model = nn.Sequential(*layers)

    @staticmethod
    def _stretch(x: torch.Tensor, frames: int) -> torch.Tensor:  # (B, T, C) -> (B, C, frames)
        return F.interpolate(x.transpose(1, 2).contiguous(), size=frames, mode="linear")

    def inference(self, prompt: torch.Tensor, codes: torch.Tensor, prompt_frames: int, frames: int,
                  code_rate: int) -> torch.Tensor:
        """Prompt codes to ``prompt_frames``, codes to ``frames`` (head / middle / tail past 40 codes): (B, F, C)."""
        if codes.shape[1] > 2 * OVERLAP_CODES:
            edge = mel_frames(OVERLAP_CODES, code_rate)
            parts = [self._stretch(codes[:, :OVERLAP_CODES], edge),
                     self._stretch(codes[:, OVERLAP_CODES:-OVERLAP_CODES], frames - 2 * edge),
                     self._stretch(codes[:, -OVERLAP_CODES:], edge)]
            x = torch.cat(parts, dim=2)
        else:
            x = self._stretch(codes, frames)
        if prompt.shape[1]:
            x = torch.cat([self._stretch(prompt, prompt_frames), x], dim=2)
        return self.model(x).transpose(1, 2).contiguous()


class ConditionalCFM(nn.Module):
    """The sampler around the estimator: Euler steps with classifier-free guidance."""

    def __init__(self, estimator: ConditionalDecoder, cfg_rate: float, t_scheduler: str):
        super().__init__()
        self.estimator = estimator
        self.cfg_rate, self.t_scheduler = cfg_rate, t_scheduler

    def time_grid(self, steps: int, device: torch.device | None = None) -> torch.Tensor:
        t = torch.linspace(0, 1, steps + 1, device=device)
        return 1 - torch.cos(t * 0.5 * torch.pi) if self.t_scheduler == "cosine" else t

    def sample(self, noise: torch.Tensor, mu: torch.Tensor, spks: torch.Tensor, cond: torch.Tensor, steps: int,
               cfg_rate: float | None = None) -> torch.Tensor:
        """Integrate from ``noise`` (B, 80, T) over the time grid; each step one estimator call on [cond; uncond]."""
        w = self.cfg_rate if cfg_rate is None else cfg_rate
        t_span = self.time_grid(steps, noise.device)
        batch = noise.shape[0]
        mask = torch.ones(2 * batch, 1, noise.shape[-1], device=noise.device, dtype=noise.dtype)
        mu_in, spks_in, cond_in = (torch.cat([c, torch.zeros_like(c)]) for c in (mu, spks, cond))
        x, t, dt = noise, t_span[0:1], t_span[1] - t_span[0]
        for step in range(1, len(t_span)):
            v = self.estimator(torch.cat([x, x]), mask, mu_in, t.expand(2 * batch), spks_in, cond_in)
            v_cond, v_uncond = v[:batch], v[batch:]
            x = x + dt * ((1.0 + w) * v_cond - w * v_uncond)
            t = t + dt
            if step < len(t_span) - 1:
                dt = t_span[step + 1] - t
        return x


class CosyVoiceFlow(nn.Module):
    """Codes (+ prompt) + x-vector -> mel; ``cfg`` is what ``load_state_dict`` of ``flow.pt`` needs."""

    def __init__(self, cfg: CosyVoiceFlowConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or CosyVoiceFlowConfig()
        self.input_embedding = nn.Embedding(cfg.vocab_size, cfg.input_size)
        self.spk_embed_affine_layer = nn.Linear(cfg.spk_embed_dim, cfg.output_size)
        self.encoder = ConformerEncoder(cfg.input_size, cfg.encoder_dim, cfg.encoder_heads, cfg.encoder_units,
                                        cfg.encoder_blocks, cfg.key_bias, cfg.macaron_style, cfg.use_cnn_module,
                                        cfg.cnn_module_kernel, cfg.cnn_module_norm)
        self.encoder_proj = nn.Linear(cfg.encoder_dim, cfg.output_size)
        self.length_regulator = InterpolateRegulator(cfg.output_size, cfg.regulator_blocks, cfg.regulator_groups)
        estimator = ConditionalDecoder(cfg.estimator_in_channels, cfg.output_size, cfg.channels, cfg.num_heads,
                                       cfg.attention_head_dim, cfg.n_blocks, cfg.num_mid_blocks, cfg.ff_inner)
        self.decoder = ConditionalCFM(estimator, cfg.inference_cfg_rate, cfg.t_scheduler)

    def frames(self, n_codes: int) -> int:
        return mel_frames(n_codes, self.cfg.input_frame_rate)

    def check_codes(self, codes: torch.Tensor, name: str = "codes") -> None:
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.cfg.vocab_size):
            raise ValueError(f"cosyvoice flow: {name} must be in 0..{self.cfg.vocab_size - 1}, got "
                             f"{int(codes.min())}..{int(codes.max())}")

    def conditions(self, codes: torch.Tensor, xvector: torch.Tensor, prompt_codes: torch.Tensor | None = None,
                   prompt_mel: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu (1, 80, P + F), speaker (1, 80), cond (1, 80, P + F)) for one sequence."""
        if codes.ndim != 2 or codes.shape[0] != 1 or codes.shape[1] < 1:
            raise ValueError(f"cosyvoice flow: codes must be (1, N) with N >= 1, got {tuple(codes.shape)}")
        device = self.input_embedding.weight.device
        prompt_codes = codes[:, :0] if prompt_codes is None else prompt_codes.to(codes)
        if prompt_mel is None:
            prompt_mel = torch.zeros(1, self.cfg.output_size, 0, device=device)
        if (prompt_codes.shape[1] == 0) != (prompt_mel.shape[-1] == 0):
            raise ValueError("cosyvoice flow: a prompt needs both its codes and its mel")
        self.check_codes(codes)
        self.check_codes(prompt_codes, "prompt codes")
        speaker = self.spk_embed_affine_layer(F.normalize(xvector.to(device), dim=1))
        tokens = torch.cat([prompt_codes, codes], dim=1).to(device)
        h = self.encoder(self.input_embedding(tokens), torch.tensor([tokens.shape[1]], device=device))
        h = self.encoder_proj(h)
        n_prompt, n_prompt_frames = prompt_codes.shape[1], prompt_mel.shape[-1]
        mu = self.length_regulator.inference(h[:, :n_prompt], h[:, n_prompt:], n_prompt_frames,
                                             self.frames(codes.shape[1]), self.cfg.input_frame_rate)
        mu = mu.transpose(1, 2).contiguous()
        cond = torch.zeros_like(mu)
        cond[:, :, :n_prompt_frames] = prompt_mel.to(device)
        return mu, speaker, cond

    @torch.no_grad()
    def inference(self, codes: torch.Tensor, xvector: torch.Tensor, prompt_codes: torch.Tensor | None = None,
                  prompt_mel: torch.Tensor | None = None, steps: int | None = None, cfg_rate: float | None = None,
                  temperature: float | None = None, noise: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """The mel (1, 80, F) of ``codes`` (1, N): F = int(N / rate * 22050 / 256), the prompt's frames cut off.

        ``xvector`` (1, 192) (zeros: no speaker); ``prompt_codes`` (1, P) with ``prompt_mel`` (1, 80, M);
        ``noise`` (1, 80, M + F) N(0, I), drawn from ``generator`` when not given.
        """
        steps = self.cfg.steps if steps is None else steps
        if steps < 1:
            raise ValueError(f"cosyvoice flow: steps must be >= 1, got {steps}")
        mu, speaker, cond = self.conditions(codes, xvector, prompt_codes, prompt_mel)
        if noise is None:
            noise = torch.randn(mu.shape, generator=generator).to(mu)
        elif noise.shape != mu.shape:
            raise ValueError(f"cosyvoice flow: noise must be {tuple(mu.shape)}, got {tuple(noise.shape)}")
        temperature = self.cfg.temperature if temperature is None else temperature
        mel = self.decoder.sample(noise.to(mu) * temperature, mu, speaker, cond, steps, cfg_rate)
        n_prompt_frames = 0 if prompt_mel is None else prompt_mel.shape[-1]
        return mel[:, :, n_prompt_frames:].float()

