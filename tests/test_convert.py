"""Tests for osum.convert: CTranslate2 Whisper round trip and the Llama -> Qwen2 copy (tiny random models)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from osum.convert import (  # noqa: E402
    convert_whisper_ct2,
    find_ct2_parts,
    llama_to_qwen2,
    parse_ct2,
    read_ct2,
    whisper_state_from_ct2,
)

SPECIALS = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|de|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
]
TIMESTAMPS = [f"<|{0.02 * i:.2f}|>" for i in range(5)]
INT8_VAR = "encoder/layer_0/ffn/linear_0/weight"
BF16_VAR = "decoder/position_encodings/encodings"


# ---- a small CTranslate2 model.bin writer ------------------------------------------------------


def _ct2_string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _ct2_variable(name: str, array: np.ndarray, code: int) -> bytes:
    if code == 5:  # bfloat16: the upper half of the float32 bits
        raw = (np.asarray(array, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
    else:
        raw = np.asarray(array, {0: "<f4", 1: "i1", 2: "<i2", 4: "<f2"}[code]).tobytes()
    header = _ct2_string(name) + struct.pack("<B", array.ndim) + struct.pack(f"<{array.ndim}I", *array.shape)
    return header + struct.pack("<BI", code, len(raw)) + raw


def write_ct2(variables: dict[str, tuple[np.ndarray, int]], aliases: dict[str, str]) -> bytes:
    out = struct.pack("<I", 6) + _ct2_string("WhisperSpec") + struct.pack("<II", 3, len(variables))
    out += b"".join(_ct2_variable(n, a, c) for n, (a, c) in sorted(variables.items()))
    out += struct.pack("<I", len(aliases)) + b"".join(
        _ct2_string(a) + _ct2_string(t) for a, t in aliases.items()
    )
    return out


def _int8(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = (127.0 / np.abs(weight).max(axis=1)).astype(np.float32)
    return np.round(weight * scale[:, None]).astype(np.int8), scale


def _store(variables: dict, name: str, tensor: torch.Tensor) -> None:
    """fp32 vectors, fp16 matrices, one int8 (+ _scale) and one bf16 variable."""
    array = tensor.detach().float().numpy()
    if name == INT8_VAR:
        variables[name], variables[f"{name}_scale"] = (_int8(array)[0], 1), (_int8(array)[1], 0)
    else:
        variables[name] = (array, 5 if name == BF16_VAR else 4 if array.ndim >= 2 else 0)


def _fused(*tensors: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.zeros_like(like) if t is None else t for t in tensors])


def _attention(v: dict, src: str, attn, cross: bool) -> None:
    q, k, val, o = attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj
    if cross:
        _store(v, f"{src}/linear_0/weight", q.weight)
        _store(v, f"{src}/linear_0/bias", q.bias)
        _store(v, f"{src}/linear_1/weight", torch.cat([k.weight, val.weight]))
        _store(v, f"{src}/linear_1/bias", _fused(None, val.bias, like=val.bias))
        last = "linear_2"
    else:
        _store(v, f"{src}/linear_0/weight", torch.cat([q.weight, k.weight, val.weight]))
        _store(v, f"{src}/linear_0/bias", _fused(q.bias, None, val.bias, like=q.bias))
        last = "linear_1"
    _store(v, f"{src}/{last}/weight", o.weight)
    _store(v, f"{src}/{last}/bias", o.bias)


def _norm(v: dict, src: str, norm) -> None:
    _store(v, f"{src}/gamma", norm.weight)
    _store(v, f"{src}/beta", norm.bias)


def _ffn(v: dict, src: str, layer) -> None:
    _norm(v, f"{src}/layer_norm", layer.final_layer_norm)
    for i, fc in enumerate((layer.fc1, layer.fc2)):
        _store(v, f"{src}/linear_{i}/weight", fc.weight)
        _store(v, f"{src}/linear_{i}/bias", fc.bias)


def whisper_to_ct2_variables(model) -> dict[str, tuple[np.ndarray, int]]:
    enc, dec, v = model.model.encoder, model.model.decoder, {}
    for conv in ("conv1", "conv2"):
        _store(v, f"encoder/{conv}/weight", getattr(enc, conv).weight)
        _store(v, f"encoder/{conv}/bias", getattr(enc, conv).bias)
    _store(v, "encoder/position_encodings/encodings", enc.embed_positions.weight)
    for i, layer in enumerate(enc.layers):
        _norm(v, f"encoder/layer_{i}/self_attention/layer_norm", layer.self_attn_layer_norm)
        _attention(v, f"encoder/layer_{i}/self_attention", layer.self_attn, cross=False)
        _ffn(v, f"encoder/layer_{i}/ffn", layer)
    _norm(v, "encoder/layer_norm", enc.layer_norm)
    _store(v, "decoder/embeddings/weight", dec.embed_tokens.weight)
    _store(v, "decoder/position_encodings/encodings", dec.embed_positions.weight)
    for i, layer in enumerate(dec.layers):
        _norm(v, f"decoder/layer_{i}/self_attention/layer_norm", layer.self_attn_layer_norm)
        _attention(v, f"decoder/layer_{i}/self_attention", layer.self_attn, cross=False)
        _norm(v, f"decoder/layer_{i}/attention/layer_norm", layer.encoder_attn_layer_norm)
        _attention(v, f"decoder/layer_{i}/attention", layer.encoder_attn, cross=True)
        _ffn(v, f"decoder/layer_{i}/ffn", layer)
    _norm(v, "decoder/layer_norm", dec.layer_norm)
    for part, heads in (
        ("encoder", model.config.encoder_attention_heads),
        ("decoder", model.config.decoder_attention_heads),
    ):
        v[f"{part}/num_heads"] = (np.array(heads, np.int16), 2)
    for flag, value in (
        ("activation", 3),
        ("pre_norm", 1),
        ("alibi", 0),
        ("scale_embeddings", 0),
        ("start_from_zero_embedding", 0),
    ):
        v[f"decoder/{flag}"] = (np.array(value, np.int8), 1)
    return v


# ---- the tiny source model -----------------------------------------------------------------------


def _tiny_tokenizer_files(folder: Path) -> int:
    """A byte-level tokenizer.json with Whisper's special tokens, and a vocabulary.txt with timestamps."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "vocabulary.txt").write_text("\n".join(alphabet + SPECIALS + TIMESTAMPS) + "\n")
    return len(alphabet) + len(SPECIALS) + len(TIMESTAMPS)


def _round_like_storage(model) -> None:
    """Give the reference model exactly the values the CT2 file will hold."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "model.encoder.layers.0.fc1.weight":
                q, scale = _int8(p.numpy())
                p.copy_(torch.from_numpy(q.astype(np.float32) / scale[:, None]))
            elif name == "model.decoder.embed_positions.weight":
                p.copy_(p.bfloat16().float())
            elif p.ndim >= 2:
                p.copy_(p.half().float())


def _tiny_whisper(vocab_size: int):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    eot = 256
    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=50,
        max_target_positions=32,
        decoder_start_token_id=eot + 1,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        init_std=0.2,
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # layer norms and biases away from their 1/0 init, so the mapping matters
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    _round_like_storage(model)
    return model


@pytest.fixture(scope="module")
def whisper_ct2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct2")
    vocab_size = _tiny_tokenizer_files(folder)
    model = _tiny_whisper(vocab_size)
    variables = whisper_to_ct2_variables(model)
    (folder / "model.bin").write_bytes(
        write_ct2(variables, {"decoder/projection/weight": "decoder/embeddings/weight"})
    )
    (folder / "config.json").write_text(
        json.dumps(
            {
                "suppress_ids": [1, 2],
                "suppress_ids_begin": [220, 256],
                "alignment_heads": [[1, 0]],
                "lang_ids": [258, 259],
            }
        )
    )
    return folder, model


def test_whisper_ct2_round_trip(whisper_ct2, tmp_path):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    folder, reference = whisper_ct2
    out = convert_whisper_ct2([str(folder)], tmp_path / "hf", multilingual=True)
    converted = WhisperForConditionalGeneration.from_pretrained(out).eval()

    ref_params = dict(reference.named_parameters())
    for name, param in converted.named_parameters():
        torch.testing.assert_close(param, ref_params[name], atol=1e-6, rtol=1e-5, msg=name)
    assert converted.proj_out.weight.data_ptr() == converted.model.decoder.embed_tokens.weight.data_ptr()

    torch.manual_seed(1)
    features = torch.randn(2, 80, 100)
    tokens = torch.randint(0, reference.config.vocab_size, (2, 7))
    with torch.no_grad():
        expected = reference(input_features=features, decoder_input_ids=tokens).logits
        got = converted(input_features=features, decoder_input_ids=tokens).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    processor = WhisperProcessor.from_pretrained(out)
    assert len(processor.tokenizer) == reference.config.vocab_size
    assert processor.feature_extractor.feature_size == 80
    gen = converted.generation_config
    assert (gen.decoder_start_token_id, gen.eos_token_id, gen.no_timestamps_token_id) == (257, 256, 265)
    assert gen.lang_to_id == {"<|en|>": 258, "<|de|>": 259}
    assert gen.task_to_id == {"translate": 260, "transcribe": 261}
    assert list(gen.suppress_tokens) == [1, 2]
    assert converted.config.max_source_positions == 50 and converted.config.decoder_attention_heads == 4


def test_whisper_ct2_split_parts_match_whole(whisper_ct2, tmp_path):
    folder, _ = whisper_ct2
    data = (folder / "model.bin").read_bytes()
    cut = len(data) // 3
    (tmp_path / "model.bin.part1").write_bytes(data[:cut])
    (tmp_path / "model.bin.part2").write_bytes(data[cut:])
    whole = parse_ct2(data)
    parts = find_ct2_parts([str(tmp_path / "model.bin.part2"), str(tmp_path / "model.bin.part1")])
    assert [p.name for p in parts] == ["model.bin.part1", "model.bin.part2"]
    joined = read_ct2(parts)
    assert joined.aliases == whole.aliases and joined.variables.keys() == whole.variables.keys()
    assert all(np.array_equal(joined.variables[k], whole.variables[k]) for k in whole.variables)
    assert whole.variables[INT8_VAR].dtype == np.int8


def test_whisper_ct2_reports_unused_and_missing(whisper_ct2):
    folder, _ = whisper_ct2
    model = parse_ct2((folder / "model.bin").read_bytes())
    model.variables["decoder/extra/weight"] = np.zeros(3, np.float32)
    del model.variables["encoder/layer_1/ffn/linear_1/bias"]
    with pytest.raises(ValueError, match="decoder/extra/weight") as err:
        whisper_state_from_ct2(model)
    assert "encoder/layer_1/ffn/linear_1/bias" in str(err.value)


@pytest.mark.parametrize("tied", [True, False])
def test_llama_to_qwen2_identical_logits(tied):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2ForCausalLM

    config = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tied,
        rope_parameters={"rope_type": "default", "rope_theta": 5000.0},
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    llama = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in llama.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    qwen = llama_to_qwen2(llama)
    assert isinstance(qwen, Qwen2ForCausalLM)
    assert qwen.config.rope_parameters["rope_theta"] == 5000.0 and qwen.config.rms_norm_eps == 1e-5
    assert qwen.config.sliding_window is None and qwen.config.tie_word_embeddings is tied
    assert all(qwen.model.layers[0].self_attn.q_proj.bias == 0)
    ids = torch.randint(0, 128, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(qwen(ids).logits, llama(ids).logits, atol=1e-6, rtol=0)
