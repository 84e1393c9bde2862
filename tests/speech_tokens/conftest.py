"""Fixtures for the speech tokenizer tests: a tiny random Whisper folder and synthetic 16 kHz clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from speech_clips import bursts, sweep


@pytest.fixture(scope="session")
def whisper_dir(tmp_path_factory):
    """A transformers Whisper folder with a 2-layer, d 32 encoder and 50 positions (1 s per encoder pass),
    so that splitting long clips is exercised on clips of a few seconds."""
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("whisper")
    WhisperModel(WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
                               decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
                               max_source_positions=50, vocab_size=100, pad_token_id=0, bos_token_id=1,
                               eos_token_id=2, decoder_start_token_id=1)).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def clips() -> list[np.ndarray]:
    return [sweep(0.7, 200, 3000, 1), bursts(1.3, 2), sweep(2.9, 4000, 300, 3), bursts(0.4, 4), sweep(1.05, 500, 600, 5)]
