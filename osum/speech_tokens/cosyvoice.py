"""CosyVoice's released ONNX models, run through onnxruntime with the inputs CosyVoice's frontend gives them.

``CosyVoiceTokenizerOnnx``: ``speech_tokenizer_v1.onnx`` (4096 supervised codes at 50 Hz) takes a
128-bin Whisper log-mel as ``feats`` float32 (1, 128, T) and ``feats_length`` int32 (1,) and returns the
codes (1, N). ``CampPlusOnnx``: ``campplus.onnx`` speaker embedding, from an 80-bin Kaldi fbank
(dither 0) minus its mean over time, (1, T, 80) -> (192,). Both check the session's inputs and outputs
when opened, so a wrong file fails with a clear message instead of at the first clip. onnxruntime is
imported only here, when one of them is made (``pip install onnxruntime``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from osum.data.features import log_mel
from osum.speech_tokens.features import checked_audio

SAMPLE_RATE = 16000


def onnx_session(path: str | Path, providers: Sequence[str] | None = None):
    """An onnxruntime ``InferenceSession`` for ``path`` (CPU unless ``providers`` say otherwise)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("running CosyVoice's ONNX models needs onnxruntime: pip install onnxruntime") from None
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such ONNX model file")
    return ort.InferenceSession(str(path), providers=list(providers or ["CPUExecutionProvider"]))


def _describe(args) -> str:
    return ", ".join(f"{a.name} {a.type} {a.shape}" for a in args)


class CosyVoiceTokenizerOnnx:
    """CosyVoice's supervised speech tokenizer v1: 16 kHz audio (up to 30 s) -> codes 0..4095 at 50 Hz."""

    INPUTS = ("feats", "feats_length")
    n_mels = 128
    codes = 4096
    rate = 50.0
    max_seconds = 30.0

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None):
        self.path = Path(path)
        self.session = onnx_session(path, providers)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if sorted(i.name for i in inputs) != sorted(self.INPUTS):
            raise ValueError(f"{path}: expected inputs {list(self.INPUTS)} (CosyVoice speech_tokenizer_v1.onnx), "
                             f"the model has {_describe(inputs)}")
        if len(outputs) != 1 or len(outputs[0].shape) != 2:
            raise ValueError(f"{path}: expected one output of codes (1, N), the model has {_describe(outputs)}")
        self.output = outputs[0].name

    def feats(self, audio: np.ndarray, name: str = "clip") -> np.ndarray:
        """The model input: Whisper's 128-bin log-mel as (1, 128, T) float32."""
        audio = checked_audio(audio, name, self.max_seconds)
        return log_mel(audio, self.n_mels).T.contiguous()[None].numpy()

    def encode(self, audio_16k: np.ndarray, name: str = "clip") -> list[int]:
        """Codes of one 16 kHz clip."""
        feats = self.feats(audio_16k, name)
        lengths = np.array([feats.shape[2]], dtype=np.int32)
        (codes,) = self.session.run([self.output], {"feats": feats, "feats_length": lengths})
        if codes.ndim != 2 or codes.shape[0] != 1:
            raise ValueError(f"{self.path}: output {self.output} has shape {codes.shape}, expected (1, N)")
        return [int(c) for c in codes[0]]

    def encode_batch(self, audios: Sequence[np.ndarray], names: Sequence[str] | None = None) -> list[list[int]]:
        """Codes of each clip (one model call per clip: the released graph is run as CosyVoice runs it)."""
        names = names if names is not None else [f"clip {i}" for i in range(len(audios))]
        return [self.encode(audio, name) for audio, name in zip(audios, names, strict=True)]


def campplus_fbank(audio: np.ndarray, name: str = "clip") -> torch.Tensor:
    """CAM++'s input features: 80-bin Kaldi fbank (dither 0) of 16 kHz audio minus its mean over time, (T, 80)."""
    import torchaudio.compliance.kaldi as kaldi

    wave = torch.from_numpy(checked_audio(audio, name))[None]
    feats = kaldi.fbank(wave, num_mel_bins=80, dither=0.0, sample_frequency=SAMPLE_RATE)
    return feats - feats.mean(dim=0, keepdim=True)


class CampPlusOnnx:
    """CosyVoice's CAM++ speaker encoder: 16 kHz audio -> a 192-dimensional speaker embedding."""

    dim = 192
    n_mels = 80

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None):
        self.path = Path(path)
        self.session = onnx_session(path, providers)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        dims = inputs[0].shape if len(inputs) == 1 else []
        if len(dims) != 3 or (isinstance(dims[2], int) and dims[2] != self.n_mels):  # named dims are free
            raise ValueError(f"{path}: expected one input of fbank frames (1, T, 80) (CosyVoice campplus.onnx), "
                             f"the model has {_describe(inputs)}")
        if len(outputs) != 1:
            raise ValueError(f"{path}: expected one output (the embedding), the model has {_describe(outputs)}")
        self.input, self.output = inputs[0].name, outputs[0].name

    def embed(self, audio_16k: np.ndarray, name: str = "clip") -> np.ndarray:
        """The (192,) float32 speaker embedding of one 16 kHz clip."""
        feats = campplus_fbank(audio_16k, name)[None].numpy()
        (embedding,) = self.session.run([self.output], {self.input: feats})
        embedding = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if embedding.shape != (self.dim,):
            raise ValueError(f"{self.path}: output {self.output} has {embedding.size} values, expected {self.dim}")
        return embedding

    def embed_batch(self, audios: Sequence[np.ndarray], names: Sequence[str] | None = None) -> list[np.ndarray]:
        names = names if names is not None else [f"clip {i}" for i in range(len(audios))]
        return [self.embed(audio, name) for audio, name in zip(audios, names, strict=True)]
