"""An original openai-whisper ``.pt`` loads into our encoder through ``WhisperEncoder.from_pretrained``."""

from __future__ import annotations

import re

import pytest
import torch

from osum.models.encoder import WhisperEncoder
from osum.models.weights import WeightMismatchError

# Our name -> openai name (written out here, independently of osum.models.whisper_openai).
TO_OPENAI = (
    (r"^embed_positions\.weight$", "positional_embedding"),
    (r"^layers\.(\d+)\.self_attn\.q_proj\.", r"blocks.\1.attn.query."),
    (r"^layers\.(\d+)\.self_attn\.k_proj\.", r"blocks.\1.attn.key."),
    (r"^layers\.(\d+)\.self_attn\.v_proj\.", r"blocks.\1.attn.value."),
    (r"^layers\.(\d+)\.self_attn\.out_proj\.", r"blocks.\1.attn.out."),
    (r"^layers\.(\d+)\.self_attn_layer_norm\.", r"blocks.\1.attn_ln."),
    (r"^layers\.(\d+)\.fc1\.", r"blocks.\1.mlp.0."),
    (r"^layers\.(\d+)\.fc2\.", r"blocks.\1.mlp.2."),
    (r"^layers\.(\d+)\.final_layer_norm\.", r"blocks.\1.mlp_ln."),
    (r"^layer_norm\.", "ln_post."),
)


def openai_checkpoint(enc: WhisperEncoder) -> dict:
    state = {}
    for name, tensor in enc.state_dict().items():
        for pattern, repl in TO_OPENAI:
            name = re.sub(pattern, repl, name)
        state[f"encoder.{name}"] = tensor.half()  # released checkpoints are float16
    state["decoder.token_embedding.weight"] = torch.zeros(10, enc.d_model, dtype=torch.half)
    dims = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 32, "n_audio_head": 4, "n_audio_layer": 2,
            "n_vocab": 10, "n_text_ctx": 448, "n_text_state": 32, "n_text_head": 4, "n_text_layer": 1}
    return {"dims": dims, "model_state_dict": state}


def test_openai_checkpoint_loads_and_runs(tmp_path):
    torch.manual_seed(0)
    source = WhisperEncoder(d_model=32, n_layers=2, n_heads=4, ffn_dim=128).eval()
    ckpt = openai_checkpoint(source)
    assert "encoder.blocks.1.attn.key.bias" not in ckpt["model_state_dict"]
    torch.save(ckpt, tmp_path / "tiny.pt")
    loaded = WhisperEncoder.from_pretrained(tmp_path / "tiny.pt").eval()
    for k, v in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v.half().float()), k
    mel = torch.randn(1, 64, 80)
    with torch.no_grad():
        want = WhisperEncoder(d_model=32, n_layers=2, n_heads=4, ffn_dim=128)
        want.load_state_dict({k: v.half().float() for k, v in source.state_dict().items()})
        torch.testing.assert_close(loaded(mel, torch.tensor([64]))[0], want.eval()(mel, torch.tensor([64]))[0])


def test_unknown_encoder_tensor_fails_strict(tmp_path):
    ckpt = openai_checkpoint(WhisperEncoder(d_model=32, n_layers=2, n_heads=4, ffn_dim=128))
    ckpt["model_state_dict"]["encoder.blocks.0.attn.extra"] = torch.zeros(1)
    torch.save(ckpt, tmp_path / "odd.pt")
    with pytest.raises(WeightMismatchError, match="unexpected"):
        WhisperEncoder.from_pretrained(tmp_path / "odd.pt")
    assert WhisperEncoder.from_pretrained(tmp_path / "odd.pt", strict=False).d_model == 32
