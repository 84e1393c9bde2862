"""Backbone: placeholders filled, loss over supervised tokens only, freezing and LoRA, generation."""

import copy
import random

import pytest
import torch

from osum.models.backbone import build_backbone
from osum.template import SequenceBuilder

TINY = {
    "encoder": {"path": None, "config": {"n_mels": 80, "d_model": 32, "n_layers": 1, "n_heads": 4, "ffn_dim": 64}},
    "adapter": {"d_model": 32, "n_layers": 1, "n_heads": 4, "ffn_dim": 64, "dropout": 0.0, "strides": [1, 2, 2]},
    "llm": {"path": None, "dtype": "float32", "attn_implementation": "sdpa",
            "config": {"model_type": "qwen2", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "num_key_value_heads": 2, "intermediate_size": 64, "tie_word_embeddings": False},
            "lora": {"enabled": False}},
    "speech_token_num": 4097,
    "freeze": ["^speech_head\\."],
}


def make(tokenizer_dir, **changes):
    cfg = copy.deepcopy(TINY)
    cfg["llm"]["tokenizer"] = tokenizer_dir
    for k, v in changes.items():
        cfg[k] = v
    torch.manual_seed(0)
    return build_backbone(cfg)


def batch_for(model, tokenizer, n=2, frames=(90, 57)):
    builder = SequenceBuilder(tokenizer)
    seqs = [builder.build("text", "Transcribe the speech.", builder.speech_length(f), "one two") for f in frames[:n]]
    width = max(len(s) for s in seqs)
    ids = torch.full((n, width), tokenizer.pad_token_id)
    tg = torch.full((n, width), -100)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s.input_ids)
        tg[i, : len(s)] = torch.tensor(s.targets)
    mel = torch.randn(n, max(frames[:n]), 80)
    return {"input_ids": ids, "targets": tg, "mel": mel, "mel_lengths": torch.tensor(frames[:n]), "keys": ["a", "b"]}


def grads_of(model, batch):
    model.zero_grad()
    out = model(batch)
    (out["loss_sum"] / out["n_tokens"]).backward()
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_loss_counts_only_supervised_tokens(tokenizer_dir, tokenizer):
    model, _ = make(tokenizer_dir)
    batch = batch_for(model, tokenizer)
    out = model(batch)
    assert int(out["n_tokens"]) == int((batch["targets"] != -100).sum())
    assert out["per_sample_loss"].sum().item() == pytest.approx(out["loss_sum"].item(), rel=1e-5)


def test_freezing_by_regex_exactly(tokenizer_dir, tokenizer):
    model, _ = make(tokenizer_dir, freeze=["^encoder\\.", "^llm\\.", "^speech_head\\."], unfreeze=["^llm\\..*norm"])
    trained = grads_of(model, batch_for(model, tokenizer))
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith("encoder.") for n in trained)
    assert {n for n in trained if n.startswith("llm.")} <= {n for n in expected if "norm" in n}
    assert any(n.startswith("adapter.") for n in trained)
    assert "speech_embed.weight" in trained  # the speech BOS/EOS rows are used
    assert trained <= expected
    with pytest.raises(ValueError, match="matches no parameter"):
        make(tokenizer_dir, freeze=["^encodr\\."])


def test_lora_trains_only_adapters_encoder_and_link(tokenizer_dir, tokenizer):
    llm = copy.deepcopy(TINY["llm"])
    llm["lora"] = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    model, _ = make(tokenizer_dir, llm={**llm, "tokenizer": tokenizer_dir})
    trained = grads_of(model, batch_for(model, tokenizer))
    llm_trained = {n for n in trained if n.startswith("llm.")}
    assert llm_trained and all("lora_" in n for n in llm_trained)
    assert any("q_proj.lora_B" in n for n in llm_trained) and any("v_proj.lora_B" in n for n in llm_trained)
    assert not any("k_proj.lora" in n for n in trained)
    assert any(n.startswith("encoder.") for n in trained) and any(n.startswith("adapter.") for n in trained)
    frozen_llm = [n for n, p in model.named_parameters() if n.startswith("llm.") and "lora_" not in n and p.requires_grad]
    assert frozen_llm == []


def test_frozen_encoder_cache_gives_same_loss(tokenizer_dir, tokenizer):
    model, _ = make(tokenizer_dir, freeze=["^encoder\\.", "^speech_head\\."], encoder_cache=True)
    model.eval()
    batch = batch_for(model, tokenizer)
    first = model(batch)["loss_sum"].item()
    assert set(model._encoder_cache) == {"a", "b"}
    assert model(batch)["loss_sum"].item() == pytest.approx(first, rel=1e-3)


def test_batched_generation_matches_stepwise_greedy(tokenizer_dir, tokenizer):
    model, _ = make(tokenizer_dir)
    model.eval()
    builder = SequenceBuilder(tokenizer)
    mel = torch.randn(2, 90, 80)
    lengths = torch.tensor([90, 41])
    speech, speech_lengths = model.encode_speech(mel, lengths)
    prompts = [builder.prompt("text", "Transcribe the speech.", int(n)) for n in speech_lengths]
    got = model.generate(prompts, speech, speech_lengths, eos_id=10**6, pad_id=tokenizer.pad_token_id,
                         max_new_tokens=5)
    for i, p in enumerate(prompts):
        ids, want = torch.tensor([p]), []
        for _ in range(5):
            h = model.decoder(inputs_embeds=model.embed(ids, speech[i : i + 1], speech_lengths[i : i + 1]))
            nxt = int(model.text_head(h.last_hidden_state[:, -1]).argmax(-1))
            want.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
        assert got[i] == want


def test_encoder_sub_batches_give_the_same_loss_and_gradients(tokenizer_dir, tokenizer):
    results = []
    for sub_batches in (1, 2):
        model, _ = make(tokenizer_dir, encoder_sub_batches=sub_batches)
        model.eval()
        batch = batch_for(model, tokenizer, frames=(90, 57))
        model.zero_grad()
        out = model(batch)
        out["loss_sum"].backward()
        results.append((out["loss_sum"].item(), model.encoder.conv1.weight.grad.clone()))
    (loss_one, grad_one), (loss_two, grad_two) = results
    assert loss_two == pytest.approx(loss_one, rel=1e-5)
    scale = float(grad_one.abs().max())
    assert scale > 0
    torch.testing.assert_close(grad_two, grad_one, rtol=1e-3, atol=1e-4 * scale)


def test_features_on_the_model_give_the_loaders_loss(tokenizer_dir, tokenizer):
    from osum.data.features import HOP, draw_spec_masks, log_mel, spec_augment

    model, _ = make(tokenizer_dir)
    model.eval()
    rng = torch.Generator().manual_seed(0)
    audio = [0.1 * torch.randn(n, generator=rng) for n in (14400, 9120)]  # 90 and 57 frames
    batch = batch_for(model, tokenizer, frames=(90, 57))
    masks = [draw_spec_masks(len(a) // HOP, 80, random.Random(i)) for i, a in enumerate(audio)]
    mel = torch.zeros(2, 90, 80)
    for i, a in enumerate(audio):
        mel[i, : len(a) // HOP] = spec_augment(log_mel(a), random.Random(i))
    waves = torch.nn.utils.rnn.pad_sequence(audio, batch_first=True)
    from_loader = model({**batch, "mel": mel})["loss_sum"]
    on_model = model({**batch, "mel": None, "audio": waves, "audio_lengths": torch.tensor([14400, 9120]),
                      "spec_masks": torch.tensor(masks)})["loss_sum"]
    assert on_model.item() == pytest.approx(from_loader.item(), rel=1e-5)
