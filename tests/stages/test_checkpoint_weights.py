"""Checkpoints keep trainable tensors and a reference to frozen pretrained ones; `full` keeps everything."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config, WhisperConfig, WhisperForConditionalGeneration

from osum.stages.understanding import UnderstandingStage


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tokenizer):
    """A local Whisper folder and a local Qwen2 folder, as a user would have them."""
    root = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    WhisperForConditionalGeneration(WhisperConfig(
        num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100, pad_token_id=0,
        bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)).save_pretrained(root / "w")
    AutoModelForCausalLM.from_config(Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, tie_word_embeddings=True)).save_pretrained(root / "llm")
    return root


def stage_for(folders, tokenizer_dir, checkpoint_weights):
    model = {
        "encoder": {"path": str(folders / "w")},
        "adapter": {"d_model": 32, "n_layers": 1, "n_heads": 4, "ffn_dim": 64, "dropout": 0.0, "strides": [1, 2, 2]},
        "llm": {"path": str(folders / "llm"), "tokenizer": tokenizer_dir, "dtype": "float32",
                "attn_implementation": "sdpa",
                "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}},
        "speech_token_num": 4097, "freeze": ["^encoder\\.", "^speech_head\\."], "checkpoint_weights": checkpoint_weights,
    }
    return UnderstandingStage(model=copy.deepcopy(model), optim={"lr": 1e-3}, scheduler={"name": "constant"})


def save(stage, path):
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(stage)
    trainer.save_checkpoint(path)
    return torch.load(path, map_location="cpu", weights_only=False)


def test_trainable_checkpoint_leaves_out_frozen_base_and_reloads_equal(folders, tokenizer_dir, tmp_path):
    stage = stage_for(folders, tokenizer_dir, "trainable")
    with torch.no_grad():
        for p in stage.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))  # "trained"
    ckpt = save(stage, tmp_path / "small.ckpt")
    full = save(stage_for(folders, tokenizer_dir, "full"), tmp_path / "full.ckpt")
    kept = set(ckpt["state_dict"])
    assert not any(k.startswith("backbone.encoder.") for k in kept)  # frozen, from the Whisper folder
    assert [k for k in kept if k.startswith("backbone.llm.") and "lora_" not in k] == []  # frozen LLM base
    assert any("lora_B" in k for k in kept) and any(k.startswith("backbone.adapter.") for k in kept)
    assert "backbone.speech_head.weight" in kept  # frozen but random: it cannot come from a folder
    assert len(ckpt["osum_base_weights"]["keys"]) > 0
    dropped_bytes = sum(full["state_dict"][k].numel() * 4 for k in ckpt["osum_base_weights"]["keys"])
    saved = (tmp_path / "full.ckpt").stat().st_size - (tmp_path / "small.ckpt").stat().st_size
    assert saved > 0.9 * dropped_bytes > 0
    assert set(full["state_dict"]) >= kept | set(ckpt["osum_base_weights"]["keys"])

    reloaded = UnderstandingStage.load_from_checkpoint(tmp_path / "small.ckpt", map_location="cpu")
    for (name, a), (_, b) in zip(stage.state_dict().items(), reloaded.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
