"""The Vocos-style vocoder: its size and frame rule, its losses, and that it learns a tiny batch."""

import numpy as np
import pytest
import torch
from conftest import speechlike

from osum.token2wav.mel import mel_spectrogram
from osum.token2wav.vocoder import Vocoder, VocoderConfig, VocoderLoss

TINY = dict(dim=32, intermediate=64, layers=2, resolutions=[[256, 64, 256], [128, 32, 128]])


def test_default_size_and_frame_rule():
    model = Vocoder(VocoderConfig())
    assert 0.45e6 < sum(p.numel() for p in model.parameters()) < 0.7e6
    with torch.no_grad():
        wav = model(torch.randn(2, 80, 13) - 5)
    assert wav.shape == (2, 13 * 160) and torch.isfinite(wav).all()


def test_loss_is_zero_on_the_target_and_positive_elsewhere():
    loss = VocoderLoss(VocoderConfig(**TINY))
    real = torch.from_numpy(np.stack([speechlike(0.3, 1), speechlike(0.3, 2)]))
    same = loss(real, real.clone())
    assert all(float(v) < 1e-5 for v in same.values())
    other = loss(real.flip(0), real)
    assert float(other["sc"]) > 0.3 and float(other["mel"]) > 0.3
    assert torch.isclose(other["loss"], other["sc"] + other["log_mag"] + other["mel"])
    with pytest.raises(ValueError, match="batch, samples"):
        loss(real[0], real[0])


def test_reconstruction_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    cfg = VocoderConfig(**TINY)
    model, loss = Vocoder(cfg), VocoderLoss(cfg)
    real = torch.from_numpy(np.stack([speechlike(0.32, 5), speechlike(0.32, 6)]))
    mel = mel_spectrogram(real)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(40):
        out = loss(model(mel), real)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5]), losses


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="resolutions"):
        VocoderConfig(resolutions=[[256, 64, 512]])
    with pytest.raises(ValueError, match="unknown"):
        VocoderConfig.from_dict({"width": 3})
    with pytest.raises(ValueError, match="log mel"):
        Vocoder(VocoderConfig(**TINY))(torch.zeros(1, 40, 5))
