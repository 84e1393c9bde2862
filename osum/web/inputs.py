"""What a user hands the demo, checked: uploaded audio bytes -> a 16 kHz clip (or a clear message naming the file),
and 16 kHz audio -> WAV bytes for the page's <audio> element.

Bad input is the user's to fix, so each rule answers with an ``InputError`` whose message says what is wrong with
which file or field: an empty upload, bytes that are not audio, a clip longer than the demo's limit, a silent or
too-short clip. A clip at another sample rate is resampled to 16 kHz (``osum.data.audio.decode_audio``) and its
original rate is reported with the result.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from osum.data.audio import TARGET_SR, decode_audio
from osum.data.skips import BadSample


class InputError(ValueError):
    """Input the user can fix; its message is shown in the page as it is."""


@dataclass
class AudioInput:
    """A decoded upload: 16 kHz mono float32 samples and what the file was."""

    name: str
    audio: np.ndarray
    rate: int  # the file's own sample rate
    channels: int

    @property
    def seconds(self) -> float:
        return len(self.audio) / TARGET_SR

    def describe(self) -> dict:
        return {"name": self.name, "rate": self.rate, "channels": self.channels, "seconds": round(self.seconds, 2),
                "resampled": self.rate != TARGET_SR}


def _reason(name: str, bad: BadSample) -> str:
    return {
        "undecodable_audio": f"{name} is not an audio file this demo can read (WAV, FLAC or OGG)",
        "empty_audio": f"{name} holds no audio samples",
        "nonfinite_audio": f"{name} holds NaN or infinite samples",
        "bad_sample_rate": f"{name} has a sample rate of {bad.detail}, below the 8 kHz this demo takes",
        "too_short": f"{name} is too short ({bad.detail}; at least 0.05 s)",
        "silent_audio": f"{name} is silent (its peak is below 1e-4)",
    }.get(bad.reason, f"{name}: {bad}")


def read_audio(name: str, data: bytes, max_seconds: float) -> AudioInput:
    """Decode an uploaded file (any format soundfile reads) to 16 kHz mono; ``InputError`` for bad input."""
    name = name or "the uploaded file"
    if not data:
        raise InputError(f"{name} is empty (0 bytes)")
    try:
        info = sf.info(io.BytesIO(data))
    except Exception:  # soundfile raises several types for data it cannot read
        raise InputError(f"{name} is not an audio file this demo can read (WAV, FLAC or OGG)") from None
    if info.samplerate > 0 and info.frames / info.samplerate > max_seconds:
        raise InputError(f"{name} is {info.frames / info.samplerate:.1f} s long; this demo takes at most "
                         f"{max_seconds:g} s (--max-seconds)")
    try:
        audio = decode_audio(data)
    except BadSample as bad:
        raise InputError(_reason(name, bad)) from None
    return AudioInput(name, audio, int(info.samplerate), int(info.channels))


def decode_upload(upload: object, field: str, max_seconds: float) -> AudioInput:
    """The audio of a request field ``{"name": file name, "data": base64 bytes}``."""
    if not isinstance(upload, dict) or not upload.get("data"):
        name = upload.get("name") if isinstance(upload, dict) else None
        if name:
            raise InputError(f"{name} is empty (0 bytes)")
        raise InputError(f"no audio in '{field}': upload a file or record one first")
    name = str(upload.get("name") or "recording.wav")
    try:
        data = base64.b64decode(str(upload["data"]), validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"'{field}' of {name} is not base64-encoded data") from None
    return read_audio(name, data, max_seconds)


def wav_bytes(audio: np.ndarray, rate: int = TARGET_SR) -> bytes:
    """16-bit PCM WAV of a float waveform (clipped to [-1, 1])."""
    out = io.BytesIO()
    sf.write(out, np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return out.getvalue()
