"""Label tags as single added tokens of a pretrained tokenizer: rows grown, trained under LoRA, kept by the
checkpoint and merged by the export (osum.convert add-tags, model.llm.lora.trainable_tokens)."""

from __future__ import annotations

import copy

import torch
from test_artifacts import echo_stage, write_checkpoint
from test_export import MODEL
from transformers import AutoModelForCausalLM, Qwen2Config

from osum.convert.tokens import add_tag_tokens
from osum.export import export
from osum.models.artifacts import load_backbone
from osum.models.llm import base_model, build_llm
from osum.tasks.labels import every_tag
from osum.text import load_tokenizer


def test_added_tags_are_one_trainable_token_each_through_checkpoint_and_export(tokenizer, tokenizer_dir, tmp_path):
    folder, added = add_tag_tokens(tokenizer_dir, tmp_path / "tokenizer")
    assert "<SURPRISE>" in added and "<FEMALE>" not in added  # the fixture's tokenizer keeps the mini tags whole
    assert len(tokenizer.encode("<SURPRISE>", add_special_tokens=False)) > 1
    grown = load_tokenizer(str(folder))
    surprise = grown.convert_tokens_to_ids("<SURPRISE>")
    assert grown.encode("one two<SURPRISE>", add_special_tokens=False)[-1] == surprise
    AutoModelForCausalLM.from_config(Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, tie_word_embeddings=True)).save_pretrained(tmp_path / "llm")
    model = copy.deepcopy(MODEL)
    model["llm"].update(path=str(tmp_path / "llm"), config=None)
    model["llm"]["lora"]["trainable_tokens"] = "tags"
    stage = echo_stage(str(folder), model)
    backbone = stage.backbone
    assert backbone.text_embed.weight.shape[0] == len(grown) > len(tokenizer)
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    deltas = [n for n in trainable if "trainable_tokens_delta" in n]
    tag_rows = [t for t in every_tag() if t in grown.get_added_vocab()]  # the new ones and the fixture's own
    assert len(deltas) == 1 and backbone.get_parameter(deltas[0]).shape == (len(tag_rows), 32)
    assert not any(n.endswith("embed_tokens.weight") or n.endswith("base_layer.weight") and "embed" in n
                   for n in trainable)
    # the new row is read on input and scored on output (tied), and its gradient reaches the delta only
    ids = torch.tensor([[surprise, surprise]])
    hidden = backbone.decoder(inputs_embeds=backbone.embed(ids, None, None)).last_hidden_state
    loss = torch.nn.functional.cross_entropy(backbone.text_head(hidden[0]), ids[0])
    backbone.zero_grad()
    loss.backward()
    assert backbone.get_parameter(deltas[0]).grad.abs().sum() > 0
    # under peft's trainable tokens the table's weight (what the voice path scores against) has the trained rows
    with torch.no_grad():
        backbone.get_parameter(deltas[0])[tag_rows.index("<SURPRISE>")] += 1.0
    torch.testing.assert_close(backbone.text_embed.weight[surprise], backbone.text_embed(torch.tensor([surprise]))[0])
    # a trainable-only checkpoint keeps the trained rows; the export merges them into a plain table
    ckpt = write_checkpoint(stage, tmp_path / "tags.ckpt")
    loaded, _ = load_backbone(ckpt)
    for name, value in backbone.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0, atol=0, msg=name)
    exported, _ = load_backbone(export(ckpt, tmp_path / "exported"))
    row = base_model(exported.llm).get_input_embeddings().weight[surprise]
    torch.testing.assert_close(row, backbone.text_embed(torch.tensor([surprise]))[0].detach())


def test_grown_rows_start_at_their_words_embedding(tokenizer, tokenizer_dir, tmp_path):
    """<SURPRISE> starts at the mean embedding of the pieces of "surprise": label tags start apart, as their words are."""
    folder, added = add_tag_tokens(tokenizer_dir, tmp_path / "tokenizer")
    grown = load_tokenizer(str(folder))
    AutoModelForCausalLM.from_config(Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, tie_word_embeddings=True)).save_pretrained(tmp_path / "llm")
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "llm").get_input_embeddings().weight.detach()
    table = build_llm(str(tmp_path / "llm"), None, len(grown), tokenizer=grown).get_input_embeddings().weight
    new_tags = [t for t in added if t.strip("<>").isalpha()]
    assert len(new_tags) > 1
    for tag in new_tags:
        pieces = tokenizer.encode(tag.strip("<>").lower(), add_special_tokens=False)
        torch.testing.assert_close(table[grown.convert_tokens_to_ids(tag)], base[pieces].mean(0), msg=tag)
    assert not torch.allclose(*(table[grown.convert_tokens_to_ids(t)] for t in new_tags[:2]))
    torch.testing.assert_close(table[: len(tokenizer)], base)
