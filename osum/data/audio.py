"""Audio decoding: bytes of any soundfile format -> 16 kHz mono float32, with sanity checks.

16-bit PCM WAV (what ``ShardWriter(audio_format="wav")`` writes, and the original OSUM shards hold)
is read straight from its bytes, without a codec; everything else goes through soundfile.
"""

from __future__ import annotations

import io
import struct

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


def pcm16_wav(data: bytes) -> tuple[np.ndarray, int] | None:
    """(samples x channels float32, rate) of a complete 16-bit PCM WAV, else None (let soundfile decide)."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk == b"fmt " and size >= 16:
            fmt = struct.unpack_from("<HHIIHH", data, body)  # format, channels, rate, byte rate, align, bits
        elif chunk == b"data":
            if fmt is None or fmt[0] != 1 or fmt[5] != 16 or fmt[1] < 1 or body + size > len(data):
                return None
            n = size // (2 * fmt[1])
            pcm = np.frombuffer(data, dtype="<i2", count=n * fmt[1], offset=body).reshape(n, fmt[1])
            return np.multiply(pcm, np.float32(1.0 / 32768.0), dtype=np.float32), fmt[2]  # one pass
        pos = body + size + (size & 1)
    return None


def decode_audio(data: bytes, min_seconds: float = 0.05, silence_peak: float = 1e-4) -> np.ndarray:
    """Decode, downmix, resample to 16 kHz; ``BadSample`` for undecodable, empty, NaN or silent audio."""
    decoded = pcm16_wav(data)
    if decoded is not None:
        audio, sr = decoded  # finite by construction
    else:
        try:
            audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except Exception as e:  # soundfile raises several types for broken data
            raise BadSample("undecodable_audio", str(e)[:120]) from None
    audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if audio.size == 0:
        raise BadSample("empty_audio")
    if decoded is None and not np.isfinite(audio).all():
        raise BadSample("nonfinite_audio", "NaN or inf samples")
    if sr < 8000:
        raise BadSample("bad_sample_rate", f"{sr} Hz")
    audio = resample(audio, sr)
    if audio.size < min_seconds * TARGET_SR:
        raise BadSample("too_short", f"{audio.size / TARGET_SR:.3f} s")
    if max(float(audio.max()), -float(audio.min())) < silence_peak:  # no |x| temporary
        raise BadSample("silent_audio", "peak below 1e-4")
    return np.ascontiguousarray(audio, dtype=np.float32)
