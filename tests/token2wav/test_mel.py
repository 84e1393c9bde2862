"""The token2wav mel, its frame rule (4 frames per code), and the Griffin-Lim fallback."""

import math

import numpy as np
import pytest
import torch
from conftest import speechlike

from osum.token2wav.griffin_lim import griffin_lim, mel_to_magnitude
from osum.token2wav.mel import (
    MelConfig,
    codes_for_samples,
    fit_to_codes,
    frames_for_codes,
    mel_basis,
    mel_spectrogram,
)


@pytest.mark.parametrize("n_samples", [640, 15999, 16000, 16160, 16161, 23999])
def test_frames_are_samples_over_hop_and_4_per_code(n_samples):
    wav = np.random.default_rng(0).normal(0, 0.1, n_samples).astype(np.float32)
    assert mel_spectrogram(wav).shape == (80, n_samples // 160)
    n_codes = codes_for_samples(n_samples)
    whisper_frames = n_samples // 160
    assert n_codes == math.ceil(math.ceil(whisper_frames / 2) / 2)
    for n in (n_codes - 1, n_codes, n_codes + 1):  # the data module accepts codes within one of the rule
        if n >= 1:
            fitted = fit_to_codes(wav, n)
            assert len(fitted) == 640 * n and mel_spectrogram(fitted).shape == (80, frames_for_codes(n)) == (80, 4 * n)


def test_codes_for_samples_examples():
    assert codes_for_samples(16000) == 25   # 100 Whisper frames -> 50 -> 25
    assert codes_for_samples(16160) == 26   # 101 -> 51 -> 26
    assert codes_for_samples(159) == 0


def test_mel_values_and_batch():
    cfg = MelConfig()
    wav = speechlike(0.5, 1)
    mel = mel_spectrogram(wav)
    assert float(mel.min()) >= np.log(cfg.clamp) - 1e-6 and torch.isfinite(mel).all()
    batch = mel_spectrogram(np.stack([wav, wav[::-1].copy()]))
    assert batch.shape == (2, 80, 50) and torch.allclose(batch[0], mel, atol=1e-5)
    silence = mel_spectrogram(np.zeros(1600, dtype=np.float32))
    assert torch.allclose(silence, torch.full_like(silence, np.log(cfg.clamp)))
    assert mel_basis(cfg).shape == (80, 321)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="hop_length"):
        MelConfig(hop_length=150)
    with pytest.raises(ValueError, match="fmax"):
        MelConfig(fmax=9000.0)
    with pytest.raises(ValueError, match="shape"):
        mel_spectrogram(np.zeros((1, 2, 1600)))
    with pytest.raises(ValueError, match="samples"):
        mel_spectrogram(np.zeros(100))
    with pytest.raises(ValueError, match="unknown"):
        MelConfig.from_dict({"hop": 160})


def test_griffin_lim_audio_has_the_input_mel():
    cfg = MelConfig()
    mel = mel_spectrogram(speechlike(1.0, 2))
    wav = griffin_lim(mel, n_iter=60)
    assert wav.dtype == np.float32 and wav.shape == (mel.shape[-1] * cfg.hop_length,)
    back = mel_spectrogram(wav)
    distance = float((back - mel).abs().mean())
    assert distance < 0.5, distance  # log domain: near-silent bins (40% of this signal) dominate
    magnitude, rebuilt = torch.exp(mel), torch.exp(back)
    convergence = float(torch.linalg.norm(rebuilt - magnitude) / torch.linalg.norm(magnitude))
    assert convergence < 0.15, convergence
    other = mel_spectrogram(speechlike(1.0, 3))  # another signal is far: the check can fail
    assert float((other - mel).abs().mean()) > 3 * distance


def test_nnls_fits_the_mel_at_least_as_well_as_the_pseudo_inverse():
    cfg = MelConfig()
    mel = mel_spectrogram(speechlike(0.3, 4))
    target = torch.exp(mel)
    errors = {}
    for method in ("pinv", "nnls"):
        magnitude = mel_to_magnitude(mel, cfg, method)
        assert float(magnitude.min()) >= 0.0
        errors[method] = float(torch.linalg.norm(mel_basis(cfg) @ magnitude - target))
    assert errors["nnls"] <= errors["pinv"] * 1.0001
    with pytest.raises(ValueError, match="method"):
        mel_to_magnitude(mel, cfg, "svd")
    with pytest.raises(ValueError, match="80, frames"):
        griffin_lim(torch.zeros(40, 10))
