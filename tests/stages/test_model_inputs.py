"""The stage turns a loader batch into the backbone's tensors; with data.features=model it computes the log-mel."""

import random

import pytest
import torch
from batches import text_batch
from tiny_models import tiny_model

from osum.data.features import HOP, draw_spec_masks, log_mel, spec_augment
from osum.models.backbone import build_backbone
from osum.stages.base import model_inputs


def test_features_on_the_model_give_the_loaders_loss(tokenizer_dir, tokenizer):
    torch.manual_seed(0)
    model, _ = build_backbone(tiny_model(tokenizer_dir))
    model.eval()
    rng = torch.Generator().manual_seed(0)
    audio = [0.1 * torch.randn(n, generator=rng) for n in (14400, 9120)]  # 90 and 57 frames
    batch = text_batch(tokenizer, frames=(90, 57))
    masks = [draw_spec_masks(len(a) // HOP, 80, random.Random(i)) for i, a in enumerate(audio)]
    mel = torch.zeros(2, 90, 80)
    for i, a in enumerate(audio):
        mel[i, : len(a) // HOP] = spec_augment(log_mel(a), random.Random(i))
    waves = torch.nn.utils.rnn.pad_sequence(audio, batch_first=True)
    from_loader = model(**model_inputs({**batch, "mel": mel}, 80))["text"].loss_sum
    on_model = model(**model_inputs({**batch, "mel": None, "audio": waves, "audio_lengths": torch.tensor([14400, 9120]),
                                     "spec_masks": torch.tensor(masks)}, 80))["text"].loss_sum
    assert on_model.item() == pytest.approx(from_loader.item(), rel=1e-5)


def test_a_clip_whose_encoder_output_is_cached_gets_no_log_mel_and_the_same_loss(tokenizer_dir, tokenizer):
    torch.manual_seed(0)
    model, _ = build_backbone(tiny_model(tokenizer_dir, encoder_cache=True, freeze=["^encoder\\."]))
    model.eval()
    rng = torch.Generator().manual_seed(0)
    audio = [0.1 * torch.randn(n, generator=rng) for n in (14400, 9120)]
    waves = torch.nn.utils.rnn.pad_sequence(audio, batch_first=True)
    batch = {**text_batch(tokenizer, frames=(90, 57)), "mel": None, "audio": waves,
             "audio_lengths": torch.tensor([14400, 9120])}
    full = model_inputs(batch, 80, model.cached_clip_keys())  # nothing cached yet: every clip's log-mel
    first = model(**full)["text"].loss_sum  # fills the cache with both clips
    model._encoder_cache.pop(batch["clip_keys"][1])  # clip 1 is new again
    part = model_inputs(batch, 80, model.cached_clip_keys())
    assert part["mel"][0].abs().sum() == 0 and torch.equal(part["mel_lengths"], full["mel_lengths"])
    torch.testing.assert_close(part["mel"][1], full["mel"][1])
    assert model(**part)["text"].loss_sum.item() == pytest.approx(first.item(), rel=1e-5)
