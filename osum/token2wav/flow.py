"""Speech codes (+ a reference voice) -> log mel by conditional flow matching (optimal-transport CFM).

The model, after CosyVoice's flow (Du et al. 2024) at CPU size:

* **patches**: the estimator works on ``patch`` consecutive mel frames per position (stacked into
  ``patch * n_mels`` channels), ``frames_per_code / patch`` positions per code. ``patch = frames_per_code``
  (the default, 4) runs it at the 25 Hz code rate, 4x fewer positions than the 100 Hz mel rate of
  ``patch = 1`` (the original model, which old configs without ``patch`` still mean, see
  ``FlowConfig.from_dict``). Mel lengths are always ``frames_per_code`` x codes, so patching is exact;
  every interface (``conditions``, ``Estimator``, ``loss``, ``sample``) stays at the mel rate;
* **code encoder**: an embedding of the 25 Hz codes (plus absolute sinusoid positions, or none with
  ``positions: conv``), a conv block and a few transformer layers, repeated
  ``frames_per_code / patch`` times to the patch rate (not at all for the default), a conv block there,
  projected to ``patch * n_mels`` per position and unstacked to ``mu`` (n_mels per mel frame): a first
  guess of the mel, pulled towards the target by an L1 prior loss (``prior_weight``);
* **speaker encoder**: mean and std over time of a small conv net on a *reference* clip's mel, through an
  MLP: one vector per clip, so any voice can be given at inference. Training takes a random segment of the
  target utterance itself, or (``reference: other``) of another clip of the same speaker in the batch;
* **estimator**: ``[x_t, mu, speaker]`` (``x_t`` and ``mu`` stacked into patches) -> velocity, ConvNeXt
  blocks modulated by the flow time and transformer layers, unstacked back to mel frames; trained on ``x_t = (1 - (1 - sigma_min) t) x0 + t x1`` to predict
  ``x1 - (1 - sigma_min) x0`` (masked MSE), at ``t`` uniform or cosine-scheduled;
* **classifier-free guidance**: ``mu`` and the speaker vector are dropped together with probability
  ``cfg_dropout``, and the speaker vector alone with ``speaker_dropout`` (so that "no reference" is a
  condition the model has seen); sampling combines ``v = (1 + w) v_cond - w v_uncond``, Euler steps.

The mel is normalised inside the model (``mel_mean``, ``mel_std``); inputs and outputs are plain log mel
(``osum.token2wav.mel``), ``frames_per_code`` mel frames per code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from osum.token2wav.layers import ConvNeXtBlock, TimeEmbedding, TransformerBlock, length_mask, sinusoids

T_SCHEDULES = ("uniform", "cosine")
# ``patch`` of a config dict that has none: configs and checkpoints from before ``patch`` existed ran the
# estimator at the mel rate, so they load as what they were trained as (the dataclass default is for new ones).
LEGACY_PATCH = 1
LEGACY_START = "noise"  # configs written before ``start`` existed integrate from pure noise
STARTS = ("noise", "prior")
REFERENCES = ("self", "other")
POSITIONS = ("sinusoid", "conv")


@dataclass
class FlowConfig:
    vocab_size: int = 512          # the speech tokenizer's codebook size K (codes 0..K-1)
    n_mels: int = 80
    frames_per_code: int = 4       # mel frames per 25 Hz code (hop 160 at 16 kHz)
    patch: int = 4                 # mel frames per estimator position, a divisor of frames_per_code
    encoder_dim: int = 192
    encoder_layers: int = 3
    # the code encoder's sense of order: "sinusoid" (absolute positions added to the code embeddings) or "conv"
    # (none added: order only from its conv blocks, so attention sees neighbours, not a place in the sentence)
    positions: str = "sinusoid"
    estimator_dim: int = 192
    estimator_blocks: int = 3
    heads: int = 4
    ffn_mult: int = 2              # transformer and ConvNeXt hidden size = ffn_mult * dim
    kernel_size: int = 5
    speaker_dim: int = 128
    dropout: float = 0.1
    sigma_min: float = 1e-4
    t_schedule: str = "cosine"     # training times t: uniform | cosine (1 - cos(pi t / 2): more near t = 0)
    cfg_dropout: float = 0.2       # drop mu and the speaker vector together (classifier-free guidance)
    speaker_dropout: float = 0.1   # drop the speaker vector alone (synthesis without a reference)
    cfg_strength: float = 0.7      # w at inference
    steps: int = 10                # Euler steps at inference; 0: the encoder's mel (mu) itself, no ODE
    # Where the ODE starts: "noise" (x0 ~ N(0, I), as CosyVoice) or "prior" (x0 = mu + prior_noise * N(0, I),
    # as Grad-TTS: the flow refines the encoder's mel instead of drawing it from noise; on small data and CPU
    # budgets it is intelligible thousands of steps sooner, see recipes/mini/README.md, "TTS")
    start: str = "prior"
    prior_noise: float = 0.5       # std of the noise around mu at the start (normalised mel units)
    temperature: float = 1.0       # inference: scale of the start noise (mini: 0, the ODE from mu itself)
    prior_weight: float = 1.0      # L1 of mu vs the target mel
    reference_min_fraction: float = 0.5  # training reference: a random segment of at least this much of the clip
    # training reference taken from: "self" (the target clip itself) or "other" (another clip of the same speaker
    # in the batch, as at inference, so the speaker vector cannot carry the target's words; rows whose speaker
    # is unknown or alone in the batch fall back to themselves)
    reference: str = "self"
    mel_mean: float = -5.5         # normalisation of the log mel inside the model
    mel_std: float = 2.3

    def __post_init__(self) -> None:
        if self.vocab_size < 1 or self.n_mels < 1 or self.frames_per_code < 1:
            raise ValueError("flow: vocab_size, n_mels and frames_per_code must be >= 1")
        if self.patch < 1 or self.frames_per_code % self.patch:
            raise ValueError(f"flow: patch must be a divisor of frames_per_code {self.frames_per_code} (mel frames "
                             f"per estimator position), got {self.patch}")
        if self.t_schedule not in T_SCHEDULES:
            raise ValueError(f"flow: t_schedule must be one of {T_SCHEDULES}, got {self.t_schedule!r}")
        for name in ("cfg_dropout", "speaker_dropout", "dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"flow: {name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 < self.reference_min_fraction <= 1.0:
            raise ValueError(f"flow: reference_min_fraction must be in (0, 1], got {self.reference_min_fraction}")
        if self.steps < 0 or self.mel_std <= 0:
            raise ValueError("flow: steps must be >= 0 and mel_std > 0")
        if self.positions not in POSITIONS:
            raise ValueError(f"flow: positions must be one of {POSITIONS}, got {self.positions!r}")
        if self.reference not in REFERENCES:
            raise ValueError(f"flow: reference must be one of {REFERENCES}, got {self.reference!r}")
        if self.start not in STARTS or self.prior_noise < 0:
            raise ValueError(f"flow: start must be one of {STARTS} and prior_noise >= 0, got {self.start!r}, "
                             f"{self.prior_noise}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FlowConfig:
        """A config from a dict (a YAML ``model`` section or a checkpoint's record); a dict without ``patch``
        is an old one and means ``patch = 1`` (``LEGACY_PATCH``), not the dataclass default; likewise a dict
        without ``start`` starts from noise (``LEGACY_START``)."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"flow model config: unknown key(s) {unknown}; known: {[f.name for f in fields(cls)]}")
        return cls(**{"patch": LEGACY_PATCH, "start": LEGACY_START, **d})


def to_patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, T) -> (B, patch * C, T / patch): ``patch`` consecutive frames stacked per position, frame-major
    (channel ``j * C + c`` is frame ``j`` of the patch, channel ``c``)."""
    if patch == 1:
        return x
    b, c, t = x.shape
    if t % patch:
        raise ValueError(f"flow: {t} frames do not split into patches of {patch}")
    return x.reshape(b, c, t // patch, patch).permute(0, 3, 1, 2).reshape(b, patch * c, t // patch)


def from_patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    """The inverse of ``to_patches``: (B, patch * C, M) -> (B, C, M * patch)."""
    if patch == 1:
        return x
    b, pc, m = x.shape
    return x.reshape(b, patch, pc // patch, m).permute(0, 2, 3, 1).reshape(b, pc // patch, m * patch)


def patch_mask(mask: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, T) mel-frame mask -> (B, T / patch): a position is valid when its frames are (lengths are multiples
    of ``patch``, so they are all valid or all padding)."""
    if patch == 1:
        return mask
    b, t = mask.shape
    if t % patch:
        raise ValueError(f"flow: a mask of {t} frames does not split into patches of {patch}")
    return mask.reshape(b, t // patch, patch).all(-1)


class CodeEncoder(nn.Module):
    """(B, N) codes -> (B, n_mels, N * frames_per_code) ``mu``, computed at the patch rate
    (``frames_per_code / patch`` positions per code, ``patch * n_mels`` outputs per position)."""

    def __init__(self, cfg: FlowConfig):
        super().__init__()
        d, self.up, self.patch = cfg.encoder_dim, cfg.frames_per_code // cfg.patch, cfg.patch
        self.absolute_positions = cfg.positions == "sinusoid"
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.pre = ConvNeXtBlock(d, cfg.ffn_mult * d, cfg.kernel_size)
        self.layers = nn.ModuleList(TransformerBlock(d, cfg.heads, cfg.ffn_mult * d, cfg.dropout)
                                    for _ in range(cfg.encoder_layers))
        self.post = ConvNeXtBlock(d, cfg.ffn_mult * d, cfg.kernel_size)
        self.norm = nn.LayerNorm(d)
        self.proj = nn.Linear(d, cfg.patch * cfg.n_mels)

    def forward(self, codes: torch.Tensor, code_mask: torch.Tensor) -> torch.Tensor:
        h = self.embed(codes).transpose(1, 2)  # (B, d, N)
        if self.absolute_positions:
            h = h + sinusoids(torch.arange(h.shape[-1], device=h.device), h.shape[1]).T[None]
        h = self.pre(h, code_mask)
        for layer in self.layers:
            h = layer(h, code_mask)
        if self.up > 1:
            h = h.repeat_interleave(self.up, dim=-1)  # 25 Hz -> the patch rate
            code_mask = code_mask.repeat_interleave(self.up, dim=-1)
        h = self.post(h, code_mask)
        mu = self.proj(self.norm(h.transpose(1, 2))).transpose(1, 2) * code_mask[:, None, :]
        return from_patches(mu, self.patch)


class SpeakerEncoder(nn.Module):
    """(B, n_mels, T) reference mel -> (B, speaker_dim): masked mean and std over time of conv features, MLP."""

    def __init__(self, n_mels: int, dim: int, out_dim: int):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv1d(n_mels, dim, 3, padding=1), nn.GELU(),
                                   nn.Conv1d(dim, dim, 3, padding=1), nn.GELU())
        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, out_dim))

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = length_mask(lengths, mel.shape[-1])[:, None, :].float()
        h = self.convs(mel * mask) * mask
        n = mask.sum(-1).clamp(min=1.0)
        mean = h.sum(-1) / n
        std = ((((h - mean[..., None]) * mask) ** 2).sum(-1) / n).clamp(min=1e-6).sqrt()
        return self.mlp(torch.cat([mean, std], dim=-1))


class Estimator(nn.Module):
    """The velocity field: ``(x_t, mu, speaker, t)`` -> (B, n_mels, T), at ``T / patch`` positions inside;
    ``x_t``, ``mu`` (B, n_mels, T) and the mask (B, T) are at the mel rate, as is the output."""

    def __init__(self, cfg: FlowConfig):
        super().__init__()
        d, self.patch = cfg.estimator_dim, cfg.patch
        self.inp = nn.Conv1d(2 * cfg.patch * cfg.n_mels + cfg.speaker_dim, d, 1)
        self.time = TimeEmbedding(d)
        self.convs = nn.ModuleList(ConvNeXtBlock(d, cfg.ffn_mult * d, cfg.kernel_size, cond_dim=d)
                                   for _ in range(cfg.estimator_blocks))
        self.attns = nn.ModuleList(TransformerBlock(d, cfg.heads, cfg.ffn_mult * d, cfg.dropout)
                                   for _ in range(cfg.estimator_blocks))
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, cfg.patch * cfg.n_mels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, mu: torch.Tensor, speaker: torch.Tensor,
                t: torch.Tensor) -> torch.Tensor:
        p = self.patch
        pmask = patch_mask(mask, p)
        spk = speaker[:, :, None].expand(-1, -1, pmask.shape[-1])
        h = self.inp(torch.cat([to_patches(x, p), to_patches(mu, p), spk], dim=1))
        temb = self.time(t)
        for conv, attn in zip(self.convs, self.attns):
            h = attn(conv(h, pmask, temb), pmask)
        out = self.out(self.norm(h.transpose(1, 2))).transpose(1, 2) * pmask[:, None, :]
        return from_patches(out, p)


def _random(kind: str, shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """``torch.rand`` / ``torch.randn`` on ``device``; drawn on the CPU from ``generator`` when one is given."""
    draw = torch.rand if kind == "uniform" else torch.randn
    if generator is None:
        return draw(shape, device=device)
    return draw(shape, generator=generator).to(device)


def reference_rows(speakers: Sequence[str | None], generator: torch.Generator | None = None) -> list[int]:
    """For each row, another row of the same speaker, drawn at random; the row itself when its speaker is
    unknown (None) or has no other row."""
    rows = []
    for b, who in enumerate(speakers):
        others = [j for j, o in enumerate(speakers) if j != b and who is not None and o == who]
        rows.append(others[int(torch.randint(len(others), (1,), generator=generator))] if others else b)
    return rows


def reference_segments(mel: torch.Tensor, lengths: torch.Tensor, min_fraction: float,
                       generator: torch.Generator | None = None, rows: Sequence[int] | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """A random window (at least ``min_fraction`` of its length) of each row, or of row ``rows[b]`` for row
    ``b`` when ``rows`` is given, left-aligned: (ref, ref_lengths)."""
    out = torch.zeros_like(mel)
    ref_lengths = torch.empty_like(lengths)
    for b in range(mel.shape[0]):
        src = b if rows is None else rows[b]
        n = int(lengths[src])
        low = max(1, math.ceil(min_fraction * n))
        size = int(torch.randint(low, n + 1, (1,), generator=generator))
        start = int(torch.randint(0, n - size + 1, (1,), generator=generator))
        out[b, :, :size] = mel[src, :, start : start + size]
        ref_lengths[b] = size
    return out, ref_lengths


class FlowModel(nn.Module):
    """Codes -> mel. ``loss`` for training, ``sample`` for inference; see the module docstring."""

    def __init__(self, cfg: FlowConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = CodeEncoder(cfg)
        self.speaker = SpeakerEncoder(cfg.n_mels, cfg.speaker_dim, cfg.speaker_dim)
        self.estimator = Estimator(cfg)

    # ------------------------------------------------------------------ inputs
    def normalize(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.cfg.mel_mean) / self.cfg.mel_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.cfg.mel_std + self.cfg.mel_mean

    def _check_codes(self, codes: torch.Tensor, code_lengths: torch.Tensor) -> torch.Tensor:
        if codes.ndim != 2 or code_lengths.shape != codes.shape[:1]:
            raise ValueError(f"flow: codes must be (batch, N) with (batch,) lengths, got {tuple(codes.shape)} "
                             f"and {tuple(code_lengths.shape)}")
        if int(code_lengths.min()) < 1 or int(code_lengths.max()) > codes.shape[1]:
            raise ValueError(f"flow: code lengths must be in [1, {codes.shape[1]}], got {code_lengths.tolist()}")
        mask = length_mask(code_lengths, codes.shape[1])
        real = codes[mask]
        if int(real.min()) < 0 or int(real.max()) >= self.cfg.vocab_size:
            raise ValueError(f"flow: codes must be in [0, {self.cfg.vocab_size}) (model vocab_size), got "
                             f"min {int(real.min())}, max {int(real.max())}")
        return mask

    def conditions(self, codes: torch.Tensor, code_lengths: torch.Tensor, reference: torch.Tensor | None,
                   reference_lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mel mask (B, T), mu (B, n_mels, T) normalised, speaker (B, speaker_dim)); no reference (or a
        reference row of length 0): a zero speaker vector, the "no speaker" condition."""
        code_mask = self._check_codes(codes, code_lengths)
        mel_mask = code_mask.repeat_interleave(self.cfg.frames_per_code, dim=-1)
        mu = self.encoder(codes, code_mask)
        if reference is None:
            speaker = mu.new_zeros(codes.shape[0], self.cfg.speaker_dim)
        else:
            if reference.ndim != 3 or reference.shape[1] != self.cfg.n_mels or reference_lengths is None:
                raise ValueError(f"flow: reference must be (batch, {self.cfg.n_mels}, frames) log mel with lengths, "
                                 f"got {tuple(reference.shape)}")
            speaker = self.speaker(self.normalize(reference), reference_lengths)
            speaker = speaker * (reference_lengths > 0)[:, None]  # a row of length 0 has no reference
        return mel_mask, mu, speaker

    # ------------------------------------------------------------------ training
    def loss(self, codes: torch.Tensor, code_lengths: torch.Tensor, mel: torch.Tensor,
             reference: torch.Tensor | None = None, reference_lengths: torch.Tensor | None = None,
             generator: torch.Generator | None = None, speakers: Sequence[str | None] | None = None
             ) -> dict[str, torch.Tensor]:
        """Flow-matching and prior losses of a batch: ``{"loss", "flow", "prior"}``.

        ``mel`` (B, n_mels, frames_per_code * N) is the target log mel, each row valid for
        ``frames_per_code * code_lengths[b]`` frames. Without ``reference`` the speaker vector comes from a
        random segment of the target itself, or (``reference: other``) of another row whose entry in
        ``speakers`` is the same."""
        cfg = self.cfg
        if mel.ndim != 3 or mel.shape[1] != cfg.n_mels or mel.shape[2] != codes.shape[1] * cfg.frames_per_code:
            raise ValueError(f"flow: mel must be (batch, {cfg.n_mels}, {cfg.frames_per_code} x codes = "
                             f"{codes.shape[1] * cfg.frames_per_code}), got {tuple(mel.shape)}")
        if reference is None:
            rows = reference_rows(speakers, generator) if cfg.reference == "other" and speakers else None
            reference, reference_lengths = reference_segments(mel, code_lengths * cfg.frames_per_code,
                                                              cfg.reference_min_fraction, generator, rows)
        mask, mu, speaker = self.conditions(codes, code_lengths, reference, reference_lengths)
        b, device = mel.shape[0], mel.device
        x1 = self.normalize(mel) * mask[:, None, :]
        t = _random("uniform", (b,), device, generator)
        if cfg.t_schedule == "cosine":
            t = 1 - torch.cos(t * 0.5 * torch.pi)
        x0 = _random("normal", tuple(x1.shape), device, generator)
        condition = mu
        if cfg.start == "prior":  # the ODE starts around the encoder's mel; only the prior loss trains it and the
            condition = mu.detach()  # flow learns to refine it (trained through the flow too, mu drifted off the mel)
            x0 = (condition.float() + cfg.prior_noise * x0) * mask[:, None, :]
        tt = t[:, None, None]
        xt = (1 - (1 - cfg.sigma_min) * tt) * x0 + tt * x1
        target = x1 - (1 - cfg.sigma_min) * x0
        keep = (_random("uniform", (b,), device, generator) >= cfg.cfg_dropout).float()
        keep_spk = keep * (_random("uniform", (b,), device, generator) >= cfg.speaker_dropout).float()
        velocity = self.estimator(xt, mask, condition * keep[:, None, None], speaker * keep_spk[:, None], t).float()
        mu = mu.float()
        m = mask[:, None, :].float()
        denominator = m.sum() * cfg.n_mels
        flow = (((velocity - target) ** 2) * m).sum() / denominator
        prior = ((mu - x1).abs() * m).sum() / denominator
        return {"loss": flow + cfg.prior_weight * prior, "flow": flow, "prior": prior}

    # ------------------------------------------------------------------ inference
    def velocity(self, x: torch.Tensor, mask: torch.Tensor, mu: torch.Tensor, speaker: torch.Tensor,
                 t: torch.Tensor, cfg_strength: float) -> torch.Tensor:
        """Guided velocity ``(1 + w) v_cond - w v_uncond`` (conditional only at w = 0)."""
        if cfg_strength == 0:
            return self.estimator(x, mask, mu, speaker, t)
        both = self.estimator(torch.cat([x, x]), torch.cat([mask, mask]), torch.cat([mu, torch.zeros_like(mu)]),
                              torch.cat([speaker, torch.zeros_like(speaker)]), torch.cat([t, t]))
        cond, uncond = both.chunk(2)
        return (1 + cfg_strength) * cond - cfg_strength * uncond

    @torch.no_grad()
    def sample(self, codes: torch.Tensor, code_lengths: torch.Tensor, reference: torch.Tensor | None = None,
               reference_lengths: torch.Tensor | None = None, steps: int | None = None,
               cfg_strength: float | None = None, temperature: float | None = None,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Euler integration from the start (``start``: noise, or noise around mu): (log mel (B, n_mels,
        frames_per_code * N), mel lengths). ``steps`` 0 returns mu itself.

        The time grid follows ``t_schedule`` (cosine: smaller steps near the noise end). ``noise`` replaces
        the Gaussian draw (for tests and reproducibility)."""
        cfg = self.cfg
        steps = cfg.steps if steps is None else int(steps)
        w = cfg.cfg_strength if cfg_strength is None else float(cfg_strength)
        if steps < 0:
            raise ValueError(f"flow: steps must be >= 0, got {steps}")
        mask, mu, speaker = self.conditions(codes, code_lengths, reference, reference_lengths)
        if steps == 0:
            return self.denormalize(mu.float()) * mask[:, None, :], mask.sum(-1)
        if noise is None:
            noise = _random("normal", tuple(mu.shape), mu.device, generator)
            noise = noise * (cfg.temperature if temperature is None else float(temperature))
        elif noise.shape != mu.shape:
            raise ValueError(f"flow: noise must have shape {tuple(mu.shape)}, got {tuple(noise.shape)}")
        x = noise.to(device=mu.device, dtype=torch.float32)
        if cfg.start == "prior":
            x = mu.float() + cfg.prior_noise * x
        x = x * mask[:, None, :]
        grid = torch.linspace(0, 1, steps + 1, device=mu.device)
        if cfg.t_schedule == "cosine":
            grid = 1 - torch.cos(grid * 0.5 * torch.pi)
        for i in range(steps):
            t = grid[i].expand(x.shape[0])
            x = x + (grid[i + 1] - grid[i]) * self.velocity(x, mask, mu, speaker, t, w).float()
        mel = self.denormalize(x) * mask[:, None, :]
        return mel, mask.sum(-1)


def pad_codes(sequences: list[list[int]] | list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, N) long codes (pad 0) and their lengths; every sequence must hold at least one code."""
    if not sequences or any(len(s) == 0 for s in sequences):
        raise ValueError("pad_codes: every code sequence needs at least one code")
    rows = [torch.as_tensor(s, dtype=torch.long) for s in sequences]
    lengths = torch.tensor([len(r) for r in rows])
    return nn.utils.rnn.pad_sequence(rows, batch_first=True), lengths

