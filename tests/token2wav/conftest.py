"""Tiny speech-like audio and shard sets for the token2wav tests (no TTS engine, no real codes needed).

The codes are a deterministic function of the audio (energy and spectral centroid per 40 ms, quantised),
so they carry what the flow model needs to learn, as the real tokenizer's would.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from osum.data.index import build_index, write_index
from osum.data.shards import ShardWriter
from osum.token2wav.mel import codes_for_samples

SR = 16000
VOCAB = 64


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a CPU shared with other jobs, a second thread's barrier waits cost seconds a step."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Voiced stretches (harmonics of a gliding f0 under two moving formants), noise bursts and pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = rng.uniform(100, 200) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    formants = [rng.uniform(400, 900) + 200 * np.sin(2 * np.pi * rng.uniform(1, 3) * t),
                rng.uniform(1200, 2400) + 300 * np.sin(2 * np.pi * rng.uniform(1, 3) * t)]
    voiced = np.zeros(n)
    for k in range(1, 30):
        fk = k * f0
        gain = sum(np.exp(-(((fk - f) / 150.0) ** 2)) for f in formants) / k**0.5
        voiced += gain * np.sin(k * phase)
    syllables = (np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)) > -0.3).astype(float)
    noise = rng.normal(0, 0.3, n) * (1 - syllables) * (np.sin(2 * np.pi * 1.3 * t) > 0.5)
    wav = voiced * syllables + noise
    return (0.5 * wav / np.abs(wav).max()).astype(np.float32)


def toy_codes(wav: np.ndarray, vocab: int = VOCAB) -> list[int]:
    """As many codes as the tokenizer would give, from each 40 ms window's energy and spectral centroid."""
    n_codes = codes_for_samples(len(wav))
    padded = np.pad(wav, (0, n_codes * 640 - len(wav)))
    frames = padded.reshape(n_codes, 640)
    spec = np.abs(np.fft.rfft(frames * np.hanning(640), axis=1))
    energy = np.log(spec.sum(1) + 1e-6)
    centroid = (spec * np.arange(spec.shape[1])).sum(1) / (spec.sum(1) + 1e-6)
    e_bin = np.clip(((energy - energy.min()) / (np.ptp(energy) + 1e-6) * 8).astype(int), 0, 7)
    c_bin = np.clip(((centroid - centroid.min()) / (np.ptp(centroid) + 1e-6) * (vocab // 8)).astype(int), 0, vocab // 8 - 1)
    return [int(v) for v in (e_bin * (vocab // 8) + c_bin) % vocab]


def write_split(out, seeds: list[int], mismatched: bool = False, text_only: bool = False) -> None:
    with ShardWriter(out, max_samples=3) as writer:
        for seed in seeds:
            wav = speechlike(1.0 + 0.1 * (seed % 5), seed)
            writer.write(f"utt{seed:03d}", wav, SR, {"txt": "x", "speaker": f"v{seed % 2}",
                                                     "speech_tokens": toy_codes(wav)})
        if mismatched:
            wav = speechlike(1.2, 99)
            writer.write("bad_count", wav, SR, {"txt": "x", "speech_tokens": toy_codes(wav)[:-5]})
        if text_only:
            writer.write_text_only("chat_only", {"txt": "a question", "question": "q", "answer": "a"})
    write_index(out, build_index(writer.stats))


@pytest.fixture(scope="session")
def tts_root(tmp_path_factory):
    """A data root with ``mini_tts/{train,valid}`` and the same shards as ``{train,valid}_codes``."""
    root = tmp_path_factory.mktemp("t2w_data")
    write_split(root / "mini_tts" / "train_codes", list(range(6)), mismatched=True, text_only=True)
    write_split(root / "mini_tts" / "valid_codes", [10, 11])
    (root / "mini_tts" / "train").symlink_to(root / "mini_tts" / "train_codes", target_is_directory=True)
    (root / "mini_tts" / "valid").symlink_to(root / "mini_tts" / "valid_codes", target_is_directory=True)
    return root
