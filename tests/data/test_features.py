"""Batched log-mel and SpecAugment on the model's device give the loader's per-sample numbers."""

import random

import numpy as np
import pytest
import torch

from osum.data.features import HOP, apply_spec_masks, draw_spec_masks, log_mel, log_mel_batch, spec_augment


def test_log_mel_batch_equals_per_sample_log_mel():
    rng = np.random.default_rng(0)
    lengths = [16000, 12345, 8001, 401, 16159]  # 401: the shortest a reflection allows; 16159: 100 frames + 159
    audio = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]
    audio[1] *= 1e-3  # a quiet row: its own max sets its floor, not the batch's
    batch = torch.zeros(len(lengths), max(lengths))
    for i, a in enumerate(audio):
        batch[i, : len(a)] = torch.from_numpy(a)
    mel, frames = log_mel_batch(batch, torch.tensor(lengths))
    assert frames.tolist() == [n // HOP for n in lengths] and mel.shape == (5, max(lengths) // HOP, 80)
    for i, a in enumerate(audio):
        torch.testing.assert_close(mel[i, : frames[i]], log_mel(a), atol=1e-6, rtol=1e-6)
        assert (mel[i, frames[i] :] == 0).all()
    with pytest.raises(ValueError, match="more than 200 samples"):
        log_mel_batch(torch.zeros(1, 300), torch.tensor([200]))


def test_masks_applied_in_a_batch_equal_spec_augment():
    rng = np.random.default_rng(1)
    feats = [torch.from_numpy(rng.standard_normal((t, 80)).astype(np.float32)) for t in (300, 120, 7)]
    cfg = {"num_time_masks": 2, "max_time": 50, "num_freq_masks": 2, "max_freq": 10}
    batch = torch.zeros(3, 300, 80)
    masks = []
    for i, f in enumerate(feats):
        batch[i, : f.shape[0]] = f
        masks.append(draw_spec_masks(f.shape[0], 80, random.Random(f"key{i}"), **cfg))
    out = apply_spec_masks(batch, torch.tensor(masks))
    for i, f in enumerate(feats):
        expected = spec_augment(f, random.Random(f"key{i}"), **cfg)  # the same draws from the same sample RNG
        assert torch.equal(out[i, : f.shape[0]], expected)
        assert (expected == 0).any()
    assert torch.equal(apply_spec_masks(batch, torch.zeros(3, 0, 3, dtype=torch.long)), batch)
