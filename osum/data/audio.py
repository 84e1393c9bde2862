"""Audio decoding: bytes of any soundfile format -> 16 kHz mono float32, with sanity checks."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import torch

from osum.data.skips import BadSample

TARGET_SR = 16000


def resample(audio: np.ndarray, sr: int, target_sr: int = TARGET_SR) -> np.ndarray:
    if sr == target_sr:
        return audio
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(audio), sr, target_sr).numpy()


def decode_audio(data: bytes, min_seconds: float = 0.05, silence_peak: float = 1e-4) -> np.ndarray:
    """Decode, downmix, resample to 16 kHz; ``BadSample`` for undecodable, empty, NaN or silent audio."""
    try:
        audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for broken data
        raise BadSample("undecodable_audio", str(e)[:120]) from None
    audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if audio.size == 0:
        raise BadSample("empty_audio")
    if not np.isfinite(audio).all():
        raise BadSample("nonfinite_audio", "NaN or inf samples")
    if sr < 8000:
        raise BadSample("bad_sample_rate", f"{sr} Hz")
    audio = resample(audio, sr)
    if audio.size < min_seconds * TARGET_SR:
        raise BadSample("too_short", f"{audio.size / TARGET_SR:.3f} s")
    if float(np.abs(audio).max()) < silence_peak:
        raise BadSample("silent_audio", "peak below 1e-4")
    return np.ascontiguousarray(audio, dtype=np.float32)
