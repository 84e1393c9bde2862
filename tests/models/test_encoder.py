"""Our encoder equals transformers' Whisper encoder on the same frames, at any length and in batches."""

import itertools
import random

import torch
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder as HFWhisperEncoder

from osum.models.encoder import WhisperEncoder, length_groups


def hf_reference(hf: HFWhisperEncoder, cfg: WhisperConfig, mel: torch.Tensor) -> torch.Tensor:
    """transformers' encoder accepts exactly 2 x max_source_positions frames: give it a table of that size."""
    positions = mel.shape[0] // 2
    short = HFWhisperEncoder(WhisperConfig(**{**cfg.to_dict(), "max_source_positions": positions})).eval()
    state = hf.state_dict()
    state["embed_positions.weight"] = state["embed_positions.weight"][:positions]
    short.load_state_dict(state)
    return short(mel.T[None]).last_hidden_state[0]


def test_matches_transformers_on_variable_lengths():
    torch.manual_seed(0)
    cfg = WhisperConfig(num_mel_bins=80, d_model=64, encoder_layers=2, encoder_attention_heads=4,
                        encoder_ffn_dim=128, max_source_positions=1500)
    hf = HFWhisperEncoder(cfg).eval()
    ours = WhisperEncoder.from_hf_config(cfg).eval()
    ours.load_state_dict(hf.state_dict(), strict=True)
    lengths = [240, 136, 58]
    mel = torch.zeros(3, 240, 80)
    for i, n in enumerate(lengths):
        mel[i, :n] = torch.randn(n, 80)
    with torch.no_grad():
        out, out_lengths = ours(mel, torch.tensor(lengths))
        assert out_lengths.tolist() == [120, 68, 29]
        for i, n in enumerate(lengths):
            ref = hf_reference(hf, cfg, mel[i, :n])
            torch.testing.assert_close(out[i, : out_lengths[i]], ref, atol=1e-5, rtol=1e-4)
        # the full 30 s window as transformers runs it
        full = torch.randn(1, 3000, 80)
        torch.testing.assert_close(ours(full, torch.tensor([3000]))[0], hf(full.transpose(1, 2)).last_hidden_state,
                                   atol=1e-5, rtol=1e-4)


def test_odd_lengths_batch_equals_single():
    torch.manual_seed(1)
    enc = WhisperEncoder(d_model=32, n_layers=2, n_heads=4, ffn_dim=64).eval()
    lengths = [101, 37]
    mel = torch.zeros(2, 101, 80)
    mel[0] = torch.randn(101, 80)
    mel[1, :37] = torch.randn(37, 80)
    with torch.no_grad():
        out, lens = enc(mel, torch.tensor(lengths))
        alone, _ = enc(mel[1:, :37], torch.tensor([37]))
    assert lens.tolist() == [51, 19]
    torch.testing.assert_close(out[1, :19], alone[0], atol=1e-5, rtol=1e-4)


def test_too_long_audio_is_refused():
    enc = WhisperEncoder(d_model=32, n_layers=1, n_heads=4, ffn_dim=64, max_source_positions=10)
    try:
        enc(torch.zeros(1, 40, 80), torch.tensor([40]))
    except ValueError as e:
        assert "exceeds the encoder's 10 positions" in str(e)
    else:
        raise AssertionError("expected a ValueError")


def brute_force_padded(lengths, max_groups):
    """Cheapest split of the sorted lengths into <= max_groups consecutive groups, by trying every split."""
    s, best = sorted(lengths), float("inf")
    for k in range(1, min(max_groups, len(s)) + 1):
        for cuts in itertools.combinations(range(1, len(s)), k - 1):
            bounds = (0, *cuts, len(s))
            best = min(best, sum((b - a) * s[b - 1] for a, b in itertools.pairwise(bounds)))
    return best


def test_length_groups_is_the_cheapest_split():
    rng = random.Random(0)
    for _ in range(60):
        lengths = [rng.randint(50, 600) for _ in range(rng.randint(1, 9))]
        k = rng.randint(1, 4)
        groups = length_groups(lengths, k)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))  # every sample once
        assert 1 <= len(groups) <= k
        padded = sum(len(g) * max(lengths[i] for i in g) for g in groups)
        assert padded == brute_force_padded(lengths, k), (lengths, k, groups)


def test_length_groups_leaves_equal_lengths_together():
    assert length_groups([300] * 7, 4) == [list(range(7))]
    assert [sorted(g) for g in length_groups([100, 400, 101, 399], 2)] == [[0, 2], [1, 3]]


def test_length_groups_of_a_huge_batch_split_by_count():
    lengths = list(range(3000, 0, -1))
    groups = length_groups(lengths, 3)
    assert [len(g) for g in groups] == [1000, 1000, 1000]
    assert max(lengths[i] for i in groups[0]) < min(lengths[i] for i in groups[1])
