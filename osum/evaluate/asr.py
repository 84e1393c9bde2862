"""The ASR judge: a local transformers Whisper folder that transcribes 16 kHz clips, batched and greedy.

The folder is what ``python -m osum.convert whisper-ct2`` writes (``config.json``, ``model.safetensors``,
``processor_config.json`` with the feature extractor, ``tokenizer.json``, ``generation_config.json``),
e.g. ``assets/whisper-tiny.en`` (``make assets``) or ``assets/whisper-base`` (``make smol-assets``).
English, no timestamps, one 30 s window per clip (longer clips are refused rather than cut).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE = 16000
MAX_SECONDS = 30.0


class AsrJudge:
    """Transcribe clips with the Whisper model in ``path`` (greedy decoding, ``batch_size`` clips a step)."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", batch_size: int = 16,
                 max_new_tokens: int = 128) -> None:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.path = Path(path)
        missing = [name for name in ("config.json", "generation_config.json")
                   if not (self.path / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{self.path} is not a transformers Whisper folder (no {', '.join(missing)}); make one with "
                "python -m osum.convert whisper-ct2 (see the Makefile's assets)")
        self.processor = WhisperProcessor.from_pretrained(self.path)
        self.model = WhisperForConditionalGeneration.from_pretrained(self.path).to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.multilingual = bool(getattr(self.model.generation_config, "is_multilingual", False))

    def transcribe(self, wavs: list[np.ndarray]) -> list[str]:
        """One transcript per 16 kHz mono clip, in order, stripped of surrounding spaces."""
        clips = [_checked(wav, i) for i, wav in enumerate(wavs)]
        texts: list[str] = []
        for start in range(0, len(clips), self.batch_size):
            texts += self._batch(clips[start : start + self.batch_size])
        return texts

    def _batch(self, clips: list[np.ndarray]) -> list[str]:
        features = self.processor.feature_extractor(clips, sampling_rate=SAMPLE_RATE, return_tensors="pt",
                                                    return_attention_mask=True)
        language = {"language": "en", "task": "transcribe"} if self.multilingual else {}
        with torch.inference_mode():
            ids = self.model.generate(features.input_features.to(self.device),
                                      attention_mask=features.attention_mask.to(self.device),
                                      max_new_tokens=self.max_new_tokens, num_beams=1, do_sample=False,
                                      return_timestamps=False, **language)
        return [text.strip() for text in self.processor.batch_decode(ids, skip_special_tokens=True)]


def _checked(wav: np.ndarray, index: int) -> np.ndarray:
    """``wav`` as float32 1-D, or a ValueError naming clip ``index``."""
    audio = np.asarray(wav)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"clip {index}: expected non-empty 1-D 16 kHz audio, got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError(f"clip {index}: audio has NaN or infinite values")
    if audio.size > MAX_SECONDS * SAMPLE_RATE:
        raise ValueError(f"clip {index}: {audio.size / SAMPLE_RATE:.1f} s is longer than Whisper's "
                         f"{MAX_SECONDS:.0f} s window")
    return audio.astype(np.float32, copy=False)
