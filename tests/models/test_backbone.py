"""Backbone: placeholders filled, loss over supervised tokens only, freezing and LoRA, generation."""

import copy

import pytest
import torch
from batches import pad, text_batch
from tiny_models import TINY_MODEL, tiny_model

from osum.models.backbone import LabelChoices, build_backbone
from osum.models.labels import VOICE_SCALE
from osum.template import SequenceBuilder, SpeechVocab, Text, Turn, speech_table_id


def make(tokenizer_dir, **changes):
    torch.manual_seed(0)
    return build_backbone(tiny_model(tokenizer_dir, **{"freeze": ["^speech_head\\."], **changes}))


def batch_for(model, tokenizer, n=2, frames=(90, 57)):
    return text_batch(tokenizer, frames[:n])


def grads_of(model, batch):
    model.zero_grad()
    out = model(**batch)
    (out["text"].loss_sum / out["text"].n_tokens).backward()
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_loss_counts_only_supervised_tokens(tokenizer_dir, tokenizer):
    model, _ = make(tokenizer_dir)
    batch = batch_for(model, tokenizer)
    out = model(**batch)
    assert int(out["text"].n_tokens) == int((batch["text_targets"] != -100).sum())
    assert out["text"].per_sample_loss.sum().item() == pytest.approx(out["text"].loss_sum.item(), rel=1e-5)
    assert int(out["speech"].n_tokens) == 0 and "speech_head" not in out["used"]


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
    llm = copy.deepcopy(TINY_MODEL["llm"])
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
    first = model(**batch)["text"].loss_sum.item()
    assert set(model._encoder_cache) == {"k0", "k1"}
    assert model(**batch)["text"].loss_sum.item() == pytest.approx(first, rel=1e-3)


def test_batched_generation_matches_stepwise_greedy(tokenizer_dir, tokenizer):
    model, _ = make(tokenizer_dir)
    model.eval()
    builder = SequenceBuilder(tokenizer)
    mel = torch.randn(2, 90, 80)
    lengths = torch.tensor([90, 41])
    speech, speech_lengths = model.encode_speech(mel, lengths)
    prompts = [builder.prompt("text", [Turn.spoken(int(n), "Transcribe the speech.")]) for n in speech_lengths]
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
        out = model(**batch)
        out["text"].loss_sum.backward()
        results.append((out["text"].loss_sum.item(), model.encoder.conv1.weight.grad.clone()))
    (loss_one, grad_one), (loss_two, grad_two) = results
    assert loss_two == pytest.approx(loss_one, rel=1e-5)
    scale = float(grad_one.abs().max())
    assert scale > 0
    torch.testing.assert_close(grad_two, grad_one, rtol=1e-3, atol=1e-4 * scale)


def speech_output_batch(tokenizer, codes=(5, 9, 4095)):
    """A TTS sample (text in, S c1..cn S out) beside an understanding sample, laid out by the real template."""
    builder = SequenceBuilder(tokenizer)
    tts = builder.build("text2token", [Turn([Text("one two")], speech=list(codes))])
    asr = builder.build("text", [Turn.spoken(builder.speech_length(57), "Transcribe the speech.", text="one two")])
    seqs = [tts, asr]
    return {"input_ids": pad([s.input_ids for s in seqs], tokenizer.pad_token_id),
            "text_targets": pad([s.text_targets for s in seqs], -100),
            "speech_targets": pad([s.speech_targets for s in seqs], -100),
            "mel": torch.randn(1, 57, 80), "mel_lengths": torch.tensor([57]), "clip_keys": ["a"]}


def test_each_head_runs_only_at_its_own_positions(tokenizer_dir, tokenizer):
    model, _ = make(tokenizer_dir, freeze=[])
    batch = speech_output_batch(tokenizer)
    out = model(**batch)
    assert int(out["speech"].n_tokens) == 5  # S c1 c2 c3 S
    assert int(out["text"].n_tokens) == int((batch["text_targets"] != -100).sum())
    # the speech loss is the cross-entropy of the speech head at exactly the speech-target positions
    hidden = model.decoder(inputs_embeds=model.embed(batch["input_ids"], *model.encode_speech(
        batch["mel"], batch["mel_lengths"]))).last_hidden_state
    sel = batch["speech_targets"] != -100
    want = torch.nn.functional.cross_entropy(model.speech_head(hidden[sel]), batch["speech_targets"][sel],
                                             reduction="sum")
    assert out["speech"].loss_sum.item() == pytest.approx(want.item(), rel=1e-5)
    print(f"speech head: {int(sel.sum())} positions, loss sum {out['speech'].loss_sum.item():.3f}; "
          f"text head: {int(out['text'].n_tokens)} positions")
    model.zero_grad()
    (out["text"].loss_sum + out["speech"].loss_sum).backward()
    assert model.speech_head.weight.grad.abs().sum() > 0
    assert {"text_head", "speech_head", "speech_embed", "encoder", "adapter"} <= out["used"]


def test_idle_parameters_are_the_parts_a_text_only_batch_skips(tokenizer_dir, tokenizer):
    model, _ = make(tokenizer_dir, freeze=[])
    builder = SequenceBuilder(tokenizer)
    seq = builder.build("text2text", [Turn([Text("what is two plus three")], text="five")])
    out = model(torch.tensor([seq.input_ids]), torch.tensor([seq.text_targets]), torch.tensor([seq.speech_targets]))
    idle = {id(p) for p in model.idle_parameters(out["used"])}
    names = {n.split(".")[0] for n, p in model.named_parameters() if id(p) in idle}
    assert names == {"encoder", "adapter", "speech_embed", "speech_head"}
    model.zero_grad()
    out["text"].loss_sum.backward()
    got_grad = {id(p) for p in model.parameters() if p.grad is not None}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert got_grad == trainable - idle  # exactly the idle ones get no gradient


def test_out_of_range_speech_rows_raise_and_sizes_are_checked(tokenizer_dir, tokenizer):
    model, _ = make(tokenizer_dir)
    with pytest.raises(IndexError):
        model.embed(torch.tensor([[1, speech_table_id(4099)]]), None, None)
    model.check_vocab(SpeechVocab(4096))
    with pytest.raises(ValueError, match="speech_token_num"):
        model.check_vocab(SpeechVocab(1024))


def test_label_choice_loss_is_the_cross_entropy_among_the_kinds_labels(tokenizer_dir, tokenizer):
    model, _ = make(tokenizer_dir)
    model.eval()
    batch = batch_for(model, tokenizer)
    one, two = tokenizer.encode("one two", add_special_tokens=False)[:2]
    other = tokenizer.encode("three", add_special_tokens=False)[0]
    kind_of_id = torch.full((len(tokenizer),), -1)
    kind_of_id[[one, other]] = 0  # kind 0: {one, three}; two is not a label
    choices = LabelChoices(kind_of_id, torch.tensor([[one, other, -1]]))
    plain, text = model(**batch)["text"], model(**batch, label_choices=choices)["text"]
    assert plain.choice_loss_sum is None and text.loss_sum.item() == pytest.approx(plain.loss_sum.item(), rel=1e-6)
    hidden = model.decoder(inputs_embeds=model.embed(batch["input_ids"], *model.encode_speech(
        batch["mel"], batch["mel_lengths"]))).last_hidden_state
    sel = batch["text_targets"] == one
    logits = model.text_head(hidden[sel])[:, [one, other]]
    want = torch.nn.functional.cross_entropy(logits, torch.zeros(int(sel.sum()), dtype=torch.long), reduction="sum")
    assert int(text.n_choices) == int(sel.sum()) == 2  # one label position per sample
    assert text.choice_loss_sum.item() == pytest.approx(want.item(), rel=1e-5)


def test_voice_label_loss_scores_each_clips_voice_against_its_labels_embeddings(tokenizer_dir, tokenizer):
    model, _ = make(tokenizer_dir, utterance_slots=1)
    batch = batch_for(model, tokenizer)
    one, two, three = tokenizer.encode("one two three", add_special_tokens=False)[:3]
    kind_of_id = torch.full((len(tokenizer),), -1)
    kind_of_id[[one, two]], kind_of_id[three] = 0, 1
    choices = LabelChoices(kind_of_id, torch.tensor([[one, two], [three, -1]]))
    _, _, voice = model.encode_speech_and_voice(batch["mel"], batch["mel_lengths"])
    assert voice.shape == (2, model.text_embed.weight.shape[1])
    labels = torch.tensor([[two, three], [one, -1]])  # clip 1 has no label of kind 1
    loss, counts, hits = choices.voice_loss(voice, labels, model.text_embed.weight)
    table = model.text_embed.weight
    cosine = torch.nn.functional.cosine_similarity(voice[:, None], table[[one, two]][None], dim=-1)
    scores = VOICE_SCALE * cosine  # bounded: a large utterance embedding does not make the loss large
    want = torch.nn.functional.cross_entropy(scores, torch.tensor([1, 0]), reduction="sum")  # kind 1: one label, CE 0
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert counts.tolist() == [2, 1] and hits[1] == 1 and hits[0] == (scores.argmax(1) == torch.tensor([1, 0])).sum()
    model.zero_grad()
    loss.backward()  # it trains the voice path only, not the token embeddings it is scored against
    assert model.utterance.proj.weight.grad.abs().sum() > 0 and model.text_embed.weight.grad is None


@pytest.mark.parametrize("position", ["last", "first"])
def test_ctc_aligns_the_frames_not_the_utterance_embedding(tokenizer_dir, tokenizer, position):
    model, _ = make(tokenizer_dir, utterance_slots=1, utterance_position=position, ctc_weight=0.5)
    batch = text_batch(tokenizer, utterance_slots=1)
    spoken = tokenizer.encode("one two", add_special_tokens=False)
    batch.update(ctc_targets=torch.tensor([spoken, spoken]), ctc_lengths=torch.tensor([len(spoken)] * 2))
    out = model(**batch)
    speech, lengths, _ = model.encode_speech_and_voice(batch["mel"], batch["mel_lengths"])
    frames = speech if position == "last" else speech[:, 1:]
    want, _ = model.ctc(frames, lengths - 1, model.text_embed.weight, batch["ctc_targets"], batch["ctc_lengths"])
    assert out["ctc_loss"].item() == pytest.approx(want.item(), rel=1e-5)
    model.zero_grad()
    out["ctc_loss"].backward()
    assert model.utterance.proj.weight.grad is None or model.utterance.proj.weight.grad.abs().sum() == 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.adapter.parameters())
