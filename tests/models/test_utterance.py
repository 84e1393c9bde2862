"""The utterance path: features standardised by running statistics of training clips, then projected."""

import torch

from osum.models.utterance import UtteranceEmbedding


def clips(n=8, t=30, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    offset = 50 * torch.randn(d, generator=g)  # a large common component, as pooled encoder outputs have
    return offset + torch.randn(n, t, d, generator=g), torch.randint(10, t + 1, (n,), generator=g)


def test_statistics_come_from_training_clips_and_standardise_them():
    module = UtteranceEmbedding(16, 8)
    frames, lengths = clips()
    module.train()
    module(frames, lengths)
    mask = (torch.arange(30)[None] < lengths[:, None])[..., None].float()
    pooled = (frames * mask).sum(1) / lengths[:, None]
    torch.testing.assert_close(module.running_mean, pooled.mean(0))  # the first batch sets them
    z = (pooled - module.running_mean) / torch.sqrt(module.running_var + module.eps)
    assert z.abs().mean() < 2 and int(module.seen) == 8
    torch.testing.assert_close(module(frames, lengths), module.proj(z))


def test_a_clip_gets_the_same_embedding_whatever_its_batch_and_in_eval():
    module = UtteranceEmbedding(16, 8)
    frames, lengths = clips()
    module.train()
    module(frames, lengths)
    module.eval()
    before = module.running_mean.clone()
    alone = module(frames[:1], lengths[:1])
    together = module(frames, lengths)[:1]
    torch.testing.assert_close(alone, together)
    assert torch.equal(module.running_mean, before)  # eval does not move the statistics
    module.train()
    module(frames[:1], lengths[:1])  # a single clip carries no variance: the statistics stay
    assert torch.equal(module.running_mean, before)


def test_the_voice_slot_goes_before_or_after_each_clips_frames(tokenizer_dir):
    from tiny_models import tiny_model

    from osum.models.backbone import build_backbone

    mel, lengths = torch.randn(2, 90, 80), torch.tensor([90, 41])
    out = {}
    for position in ("first", "last"):
        torch.manual_seed(0)
        model, _ = build_backbone(tiny_model(tokenizer_dir, utterance_slots=1, utterance_position=position))
        model.eval()
        out[position] = model.encode_speech(mel, lengths)
    (first, n_first), (last, n_last) = out["first"], out["last"]
    assert torch.equal(n_first, n_last)
    for i, n in enumerate(n_first.tolist()):
        torch.testing.assert_close(last[i, n - 1], first[i, 0])  # the voice embedding
        torch.testing.assert_close(last[i, : n - 1], first[i, 1:n])  # the frames
