"""Label tags as tokens: the voice-label bias (centred per kind) and voice fusion in both generation paths."""

import pytest
import torch
from tiny_models import tiny_model

from osum.models.backbone import build_backbone
from osum.models.generation import GREEDY, PhasePlan, generate
from osum.models.labels import VOICE_SCALE, label_bias
from osum.template import SPEECH, speech_table_id


def test_label_bias_is_each_kinds_scores_centred_at_its_label_columns():
    table = torch.randn(12, 4)
    ids = torch.tensor([[2, 5, 7], [9, 3, -1]])  # kind 0: three labels; kind 1: two
    voice = torch.randn(3, 4)
    bias = label_bias(voice, ids, table)
    assert bias.shape == (3, 12)
    for labels in ([2, 5, 7], [9, 3]):
        scores = VOICE_SCALE * torch.nn.functional.cosine_similarity(voice[:, None], table[labels][None], dim=-1)
        torch.testing.assert_close(bias[:, labels], scores - scores.mean(1, keepdim=True))
    others = [i for i in range(12) if i not in (2, 5, 7, 9, 3)]
    assert bias[:, others].abs().sum() == 0
    huge = label_bias(1e6 * voice, ids, table)  # scores are bounded: the scale of the embedding does not matter
    torch.testing.assert_close(huge, bias)
    assert huge.abs().max() <= 2 * VOICE_SCALE


def test_voice_fusion_picks_the_label_its_voice_scores_and_both_generation_paths_agree(tokenizer_dir, tokenizer):
    torch.manual_seed(0)
    model, _ = build_backbone(tiny_model(tokenizer_dir, utterance_slots=1, voice_fusion=True))
    model.eval()
    male, female = (tokenizer.convert_tokens_to_ids(t) for t in ("<MALE>", "<FEMALE>"))
    model.use_label_ids(torch.tensor([[male, female]]))
    hidden = model.text_embed.weight.shape[1]
    n = [5, 3]
    prompts = [tokenizer.encode("what", add_special_tokens=False) + [speech_table_id(4097)] + [SPEECH] * k
               + [speech_table_id(4098)] for k in n]
    speech = 0.02 * torch.randn(2, max(n), hidden, generator=torch.Generator().manual_seed(1))
    direction = (model.text_embed.weight[male] - model.text_embed.weight[female]).detach()
    lengths = torch.tensor(n)
    with torch.no_grad():  # each clip's voice slot (its last embedding) says male for row 0, female for row 1
        speech[0, n[0] - 1] = 1e4 * direction
        speech[1, n[1] - 1] = -1e4 * direction
    plan = PhasePlan(start_phase="text", stop="text_eos", max_new_tokens=3)
    ours = generate(model, prompts, speech, lengths, plan, eos_id=10**6, text_sampling=GREEDY)
    theirs = model.generate(prompts, speech, lengths, eos_id=10**6, pad_id=tokenizer.pad_token_id, max_new_tokens=3)
    assert [g.text_ids for g in ours] == theirs
    assert [row[0] for row in theirs] == [male, female]
    two_clips = torch.tensor([prompts[0] + [SPEECH, 0, SPEECH]])  # a row with two clips (history): no bias
    assert model.voice_label_bias(torch.tensor([prompts[0]]), speech[:1], lengths[:1]) is not None
    assert model.voice_label_bias(two_clips, speech[:1], lengths[:1]) is None
    model.voice_fusion = False  # without it the same prompts do not name those labels
    plain = model.generate(prompts, speech, lengths, eos_id=10**6, pad_id=tokenizer.pad_token_id, max_new_tokens=3)
    assert [row[0] for row in plain] != [male, female]


def test_voice_fusion_needs_the_utterance_embedding(tokenizer_dir):
    with pytest.raises(ValueError, match="utterance_slots"):
        build_backbone(tiny_model(tokenizer_dir, voice_fusion=True))
