"""The flow model: it learns a tiny batch, samples mels of the right shape, and guidance is what it claims."""

import pytest
import torch
from conftest import VOCAB, speechlike, toy_codes

from osum.token2wav.flow import FlowConfig, FlowModel, pad_codes, reference_segments
from osum.token2wav.mel import fit_to_codes, mel_spectrogram

TINY = dict(vocab_size=VOCAB, encoder_dim=32, encoder_layers=1, estimator_dim=48, estimator_blocks=2, heads=2,
            speaker_dim=16, dropout=0.0)


def tiny_batch(seeds=(1, 2)):
    wavs = [speechlike(0.6 + 0.2 * i, s) for i, s in enumerate(seeds)]
    codes, lengths = pad_codes([toy_codes(w) for w in wavs])
    mel = torch.full((len(wavs), 80, 4 * codes.shape[1]), -11.5)
    for i, w in enumerate(wavs):
        m = mel_spectrogram(fit_to_codes(w, int(lengths[i])))
        mel[i, :, : m.shape[-1]] = m
    return codes, lengths, mel


def test_default_size_is_a_few_million_parameters():
    n = sum(p.numel() for p in FlowModel(FlowConfig()).parameters())
    assert 2e6 < n < 5e6, n


def test_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    model = FlowModel(FlowConfig(**TINY))
    codes, lengths, mel = tiny_batch()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses, priors = [], []
    for _ in range(100):
        out = model.loss(codes, lengths, mel)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
        priors.append(float(out["prior"].detach()))
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.6 * first, (first, last)
    assert sum(priors[-10:]) < 0.5 * sum(priors[:10])


def test_padding_does_not_change_the_loss():
    torch.manual_seed(0)
    model = FlowModel(FlowConfig(**TINY)).eval()
    codes, lengths, mel = tiny_batch(seeds=(3,))
    padded_codes = torch.cat([codes, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    padded_mel = torch.cat([mel, torch.full((1, 80, 20), 3.0)], dim=2)
    ref = (mel, lengths * 4)
    a = model.loss(codes, lengths, mel, *ref, generator=torch.Generator().manual_seed(1))
    b = model.loss(padded_codes, lengths, padded_mel, *ref, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a["prior"], b["prior"], atol=1e-5)


def test_sampling_shape_and_guidance():
    torch.manual_seed(0)
    model = FlowModel(FlowConfig(**TINY)).eval()
    codes, lengths, mel = tiny_batch()
    ref, ref_lengths = mel, lengths * 4
    out, out_lengths = model.sample(codes, lengths, ref, ref_lengths, steps=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 80, 4 * codes.shape[1]) and out_lengths.tolist() == (4 * lengths).tolist()
    assert torch.isfinite(out).all() and float(out[1, :, out_lengths[1]:].abs().sum()) == 0.0

    noise = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
    mask, mu, speaker = model.conditions(codes, lengths, ref, ref_lengths)

    def euler(w):  # the solver written out: guidance from the estimator with and without the conditions
        x = noise * mask[:, None, :]
        grid = 1 - torch.cos(torch.linspace(0, 1, 4) * 0.5 * torch.pi)
        for i in range(3):
            t = grid[i].expand(2)
            v = model.estimator(x, mask, mu, speaker, t)
            if w:
                v = (1 + w) * v - w * model.estimator(x, mask, torch.zeros_like(mu), torch.zeros_like(speaker), t)
            x = x + (grid[i + 1] - grid[i]) * v
        return model.denormalize(x) * mask[:, None, :]

    with torch.no_grad():
        cond = model.sample(codes, lengths, ref, ref_lengths, steps=3, cfg_strength=0.0, noise=noise)[0]
        guided = model.sample(codes, lengths, ref, ref_lengths, steps=3, cfg_strength=0.7, noise=noise)[0]
        assert torch.allclose(cond, euler(0.0), atol=1e-5)
        assert torch.allclose(guided, euler(0.7), atol=1e-5)
        assert not torch.allclose(cond, guided, atol=1e-3)


def test_references_set_the_voice_and_length_zero_means_none():
    torch.manual_seed(0)
    model = FlowModel(FlowConfig(**TINY)).eval()
    codes, lengths, mel = tiny_batch()
    with torch.no_grad():
        _, _, spk = model.conditions(codes, lengths, mel, torch.tensor([40, 0]))
        _, _, none = model.conditions(codes, lengths, None, None)
        _, _, other = model.conditions(codes, lengths, mel.flip(0), torch.tensor([40, 40]))
    assert float(spk[1].abs().sum()) == 0.0 and float(none.abs().sum()) == 0.0
    assert not torch.allclose(spk[0], other[0])


def test_reference_segments_stay_inside_each_row():
    mel = torch.arange(2 * 3 * 10, dtype=torch.float).reshape(2, 3, 10)
    ref, lengths = reference_segments(mel, torch.tensor([10, 4]), 0.5, torch.Generator().manual_seed(0))
    for b, n in enumerate(lengths.tolist()):
        assert (2 if b else 5) <= n <= (4 if b else 10)
        start = int(ref[b, 0, 0] - mel[b, 0, 0])
        assert torch.equal(ref[b, :, :n], mel[b, :, start : start + n]) and float(ref[b, :, n:].abs().sum()) == 0


def test_bad_input_is_refused():
    model = FlowModel(FlowConfig(**TINY))
    codes, lengths, mel = tiny_batch()
    with pytest.raises(ValueError, match="vocab_size"):
        model.loss(codes + VOCAB, lengths, mel)
    with pytest.raises(ValueError, match="4 x codes"):
        model.loss(codes, lengths, mel[:, :, :-4])
    with pytest.raises(ValueError, match="t_schedule"):
        FlowConfig(t_schedule="log")
    with pytest.raises(ValueError, match="unknown"):
        FlowConfig.from_dict({"hidden": 3})
    with pytest.raises(ValueError, match="at least one code"):
        pad_codes([[1, 2], []])
