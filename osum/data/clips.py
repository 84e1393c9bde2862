"""The audio clips of an example: decoded and checked against the length filters, then featurized.

An example has one clip per turn that has user audio, in placeholder order (history turns first, then
the current turn); a text-only example (T2T, TTS) has none. Each clip keeps its encoder-cache key (the
sample key for the current clip, ``KEY.wav_i`` for history turn ``i``). Features are the log-mel
(with SpecAugment on the current clip when training), or with ``data.features: model`` the waveform
and the SpecAugment masks drawn here, for the model to apply on its device.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from osum.data.audio import TARGET_SR, decode_audio
from osum.data.features import HOP, draw_spec_masks, log_mel, spec_augment
from osum.data.filters import Filters
from osum.data.skips import BadSample


@dataclass
class Clip:
    """One clip's features (``mel``, or ``audio`` and ``spec_masks``) and what the batch needs of it."""

    key: str  # encoder-cache key
    frames: int  # mel frames
    seconds: float
    mel: torch.Tensor | None = None
    audio: torch.Tensor | None = None  # 16 kHz waveform (data.features: model)
    spec_masks: list[tuple[int, int, int]] | None = None  # SpecAugment masks for the model to apply, drawn here
    ctc_ids: list[int] | None = None  # the transcript's token ids, for the auxiliary CTC loss (current clip only)


def checked_audio(data: bytes, filters: Filters, crop: bool, where: str = "") -> tuple[np.ndarray, float | None]:
    """16 kHz audio within ``filters``' length limits, cropped to ``max_seconds`` when ``crop`` allows;
    ``(audio, seconds before the crop or None)``. ``BadSample`` for undecodable or out-of-range audio."""
    suffix = f" ({where})" if where else ""
    try:
        audio = decode_audio(data)
    except BadSample as e:
        if not where:
            raise
        raise BadSample(e.reason, f"{e.detail}{suffix}") from None
    seconds, cropped_from = audio.size / TARGET_SR, None
    if seconds > filters.max_seconds:
        if not crop:
            raise BadSample("too_long", f"{seconds:.1f} s > {filters.max_seconds} s{suffix}")
        audio, cropped_from = audio[: int(filters.max_seconds * TARGET_SR)], seconds
        seconds = audio.size / TARGET_SR
    if seconds < filters.min_seconds:
        raise BadSample("too_short", f"{seconds:.2f} s{suffix}")
    return audio, cropped_from


def frames_of(audio: np.ndarray) -> int:
    return audio.size // HOP


def make_clip(key: str, audio: np.ndarray, features: str, n_mels: int, spec_aug: dict | None,
              rng: random.Random) -> Clip:
    """Featurize one clip (``spec_aug``: SpecAugment settings, or None for none)."""
    clip = Clip(key=key, frames=frames_of(audio), seconds=audio.size / TARGET_SR)
    if features == "model":
        clip.audio = torch.from_numpy(audio)
        clip.spec_masks = draw_spec_masks(clip.frames, n_mels, rng, **spec_aug) if spec_aug else None
    else:
        clip.mel = log_mel(audio, n_mels)
        if spec_aug:
            clip.mel = spec_augment(clip.mel, rng, **spec_aug)
        clip.frames = int(clip.mel.shape[0])
    return clip
