"""25 Hz speech features: a Whisper encoder cut after one layer, its frames average-pooled in pairs.

Audio (16 kHz float32) -> Whisper log-mel at 100 fps (``osum.data.features.log_mel``) -> conv front end
(50 fps) -> transformer layers 1..``layer`` -> optionally the encoder's final LayerNorm -> mean of
``pool`` consecutive frames (2: 25 Hz). Only the layers up to the chosen one are kept, so nothing past
it is computed. Clips are batched (padded, with lengths masking the padding, so that a clip gives the
same frames alone or in a batch) and clips longer than the encoder's position table (30 s for
Whisper) are split at frame counts that keep ``n_codes`` exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from osum.data.features import HOP, N_FFT, log_mel
from osum.models.encoder import WhisperEncoder, lengths_to_mask

SAMPLE_RATE = 16000


def checked_audio(audio: np.ndarray, name: str, max_seconds: float | None = None) -> np.ndarray:
    """``audio`` as float32 mono 16 kHz samples, or a ValueError naming ``name``."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"{name}: audio must be mono 1-D 16 kHz samples, got shape {audio.shape}")
    if audio.size <= N_FFT // 2:
        raise ValueError(f"{name}: {audio.size} samples is too short (needs more than {N_FFT // 2} at 16 kHz)")
    if not np.isfinite(audio).all():
        raise ValueError(f"{name}: audio has NaN or infinite samples")
    if max_seconds is not None and audio.size > max_seconds * SAMPLE_RATE:
        raise ValueError(f"{name}: {audio.size / SAMPLE_RATE:.1f} s is longer than the model's {max_seconds:g} s")
    return audio


def n_codes(n_samples: int, pool: int = 2) -> int:
    """Number of codes for a clip of ``n_samples`` at 16 kHz.

    The rule, step by step: ``T = n_samples // 160`` log-mel frames (centred STFT, hop 160, last frame
    dropped, as Whisper does); the encoder's stride-2 conv gives ``ceil(T / 2)`` frames at 50 Hz; pooling
    ``pool`` frames (the last window may be partial) gives ``ceil(ceil(T / 2) / pool)`` codes. With the
    default pool 2 that is ``ceil(T / 4)``: each code stands for 4 mel frames at 100 Hz, which is how the
    vocoder side upsamples codes (x4) back to mel frames of hop 160.
    """
    if n_samples <= N_FFT // 2:
        raise ValueError(f"a clip needs more than {N_FFT // 2} samples (16 kHz) for one mel frame, got {n_samples}")
    frames = n_samples // HOP
    encoder_frames = (frames + 1) // 2
    return -(-encoder_frames // pool)


def resolve_layer(layer: int, n_layers: int) -> int:
    """The 1-based index of ``layer`` in an encoder of ``n_layers`` (negative counts from the end: -1 = last)."""
    index = layer + n_layers + 1 if layer < 0 else layer
    if not 1 <= index <= n_layers:
        raise ValueError(f"layer {layer} is out of range for an encoder of {n_layers} layers "
                         f"(use 1..{n_layers}, or -1..-{n_layers} from the end)")
    return index


def pool_frames(x: torch.Tensor, lengths: torch.Tensor, pool: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of each ``pool`` consecutive real frames of (B, T, D) -> (B, ceil(T / pool), D) and new lengths;
    padded frames do not count, so a partial last window is the mean of the frames it has."""
    if pool == 1:
        return x, lengths
    b, t, d = x.shape
    n = -(-t // pool)
    real = lengths_to_mask(lengths, t).to(x.dtype)[..., None]
    sums = F.pad(x * real, (0, 0, 0, n * pool - t)).view(b, n, pool, d).sum(2)
    counts = F.pad(real, (0, 0, 0, n * pool - t)).view(b, n, pool, 1).sum(2)
    return sums / counts.clamp(min=1.0), (lengths + pool - 1) // pool


def encoder_sizes(encoder: WhisperEncoder) -> dict[str, int]:
    """The constructor arguments that rebuild ``encoder`` (``WhisperEncoder(**sizes)``)."""
    first = encoder.layers[0]
    return {"n_mels": encoder.n_mels, "d_model": encoder.d_model, "n_layers": len(encoder.layers),
            "n_heads": first.self_attn.n_heads, "ffn_dim": first.fc1.out_features,
            "max_source_positions": encoder.max_positions}


class LayerFeatures(nn.Module):
    """A Whisper encoder truncated after its last needed layer, with its output pooled to 25 Hz.

    ``encoder`` must already hold only layers 1..layer (``cut``); ``final_norm`` keeps its final
    LayerNorm, else it is replaced by the identity and the raw residual stream of that layer is used.
    """

    def __init__(self, encoder: WhisperEncoder, final_norm: bool, pool: int = 2):
        super().__init__()
        if pool < 1:
            raise ValueError(f"pool must be >= 1, got {pool}")
        if not final_norm:
            encoder.layer_norm = nn.Identity()
        self.encoder, self.final_norm, self.pool = encoder.eval(), final_norm, pool

    @staticmethod
    def cut(encoder: WhisperEncoder, layer: int) -> WhisperEncoder:
        """``encoder`` keeping layers 1..``layer`` (1-based or negative), in place."""
        encoder.layers = encoder.layers[: resolve_layer(layer, len(encoder.layers))]
        return encoder

    @classmethod
    def from_whisper(cls, path: str | Path, layer: int = -1, final_norm: bool | None = None,
                     pool: int = 2) -> tuple[LayerFeatures, dict]:
        """From a Whisper folder or openai ``.pt``; ``final_norm`` None = only when ``layer`` is the last.
        Also returns what a saved tokenizer records about the source (path, layer count, layer asked)."""
        encoder = WhisperEncoder.from_pretrained(path)
        total = len(encoder.layers)
        index = resolve_layer(layer, total)
        if final_norm is None:
            final_norm = index == total
        source = {"encoder": str(Path(path).resolve()), "encoder_layers": total, "layer_arg": layer}
        return cls(cls.cut(encoder, index), final_norm, pool), source

    @property
    def layer(self) -> int:
        return len(self.encoder.layers)

    @property
    def dim(self) -> int:
        return self.encoder.d_model

    @property
    def n_mels(self) -> int:
        return self.encoder.n_mels

    @property
    def max_frames(self) -> int:
        """The most mel frames one encoder pass takes: a multiple of 2 x pool, so chunks keep ``n_codes`` exact."""
        step = 2 * self.pool
        return self.encoder.max_positions * 2 // step * step

    def forward(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, n_mels) right-padded log-mel -> (B, ceil(ceil(T/2)/pool), D) pooled frames and their counts."""
        hidden, lengths = self.encoder(mel, mel_lengths)
        return pool_frames(hidden, lengths, self.pool)

    def mel(self, audio: np.ndarray, name: str = "clip") -> torch.Tensor:
        """Log-mel (T, n_mels) of one 16 kHz clip, with a clear error naming ``name`` for bad input."""
        return log_mel(checked_audio(audio, name), self.n_mels)

    @torch.inference_mode()
    def clips(self, audios: Sequence[np.ndarray], batch_size: int = 16,
              names: Sequence[str] | None = None) -> list[torch.Tensor]:
        """Pooled features (n_codes(len), D) of each clip, on the CPU, computed ``batch_size`` pieces at a time
        (pieces of similar length batched together; clips over ``max_frames`` split into several pieces)."""
        names = names if names is not None else [f"clip {i}" for i in range(len(audios))]
        if len(names) != len(audios):
            raise ValueError(f"{len(names)} names for {len(audios)} clips")
        device = next(self.encoder.parameters()).device
        pieces: list[tuple[int, int, torch.Tensor]] = []  # (clip, part, mel)
        for i, audio in enumerate(audios):
            mel = self.mel(audio, names[i])
            for part, start in enumerate(range(0, mel.shape[0], self.max_frames)):
                pieces.append((i, part, mel[start : start + self.max_frames]))
        order = sorted(range(len(pieces)), key=lambda p: -pieces[p][2].shape[0])
        outputs: dict[int, torch.Tensor] = {}
        for start in range(0, len(order), max(1, batch_size)):
            group = order[start : start + batch_size]
            lengths = torch.tensor([pieces[p][2].shape[0] for p in group])
            mel = torch.zeros(len(group), int(lengths.max()), self.n_mels)
            for row, p in enumerate(group):
                mel[row, : lengths[row]] = pieces[p][2]
            feats, out_lengths = self(mel.to(device), lengths.to(device))
            for row, p in enumerate(group):
                outputs[p] = feats[row, : out_lengths[row]].float().cpu()
        per_clip: list[list[torch.Tensor]] = [[] for _ in audios]
        for p, (i, _, _) in enumerate(pieces):  # pieces are in clip, part order
            per_clip[i].append(outputs[p])
        return [torch.cat(parts) for parts in per_clip]
