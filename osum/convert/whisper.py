"""CTranslate2 Whisper -> transformers ``WhisperForConditionalGeneration``, tokenizer, feature extractor and
generation config (every source variable used, or a ``ValueError`` that lists the rest)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from osum.convert.ct2 import Ct2Model, dequantize_ct2, read_ct2
from osum.convert.packages import find_ct2_parts, find_sibling
from osum.models.llm import DTYPES
from osum.models.weights import assert_complete

# Decoder flags of CTranslate2's WhisperSpec and the only values transformers' Whisper implements.
_CT2_WHISPER_FLAGS = {
    "decoder/activation": 3,  # GELU
    "decoder/pre_norm": 1,
    "decoder/alibi": 0,
    "decoder/scale_embeddings": 0,
    "decoder/start_from_zero_embedding": 0,
}
_CT2_INFORMATIONAL = ("decoder/alignment_heads", "decoder/alignment_layer")


class _Source:
    """Hands out source variables by name and remembers which ones were used or missing."""

    def __init__(self, model: Ct2Model) -> None:
        self.variables = dequantize_ct2(model.variables)
        self.aliases = model.aliases
        self.used: set[str] = set()
        self.missing: list[str] = []

    def __contains__(self, name: str) -> bool:
        return self.aliases.get(name, name) in self.variables

    def __call__(self, name: str) -> torch.Tensor:
        target = self.aliases.get(name, name)
        if target not in self.variables:
            self.missing.append(name)
            return torch.empty(0)
        self.used.add(target)
        return torch.from_numpy(np.ascontiguousarray(self.variables[target]))

    def scalar(self, name: str) -> int:
        return int(self(name).reshape(-1)[0]) if name in self else -1

    def unused(self) -> list[str]:
        return sorted(set(self.variables) - self.used)


def _layer_count(names: Sequence[str], prefix: str) -> int:
    indices = {int(m.group(1)) for n in names if (m := re.match(rf"{prefix}/layer_(\d+)/", n))}
    if indices != set(range(len(indices))):
        raise ValueError(f"non-contiguous {prefix} layers: {sorted(indices)}")
    return len(indices)


def _put_linear(out: dict, take: _Source, src: str, dst: str) -> None:
    out[f"{dst}.weight"] = take(f"{src}/weight")
    out[f"{dst}.bias"] = take(f"{src}/bias")


def _put_norm(out: dict, take: _Source, src: str, dst: str) -> None:
    out[f"{dst}.weight"] = take(f"{src}/gamma")
    out[f"{dst}.bias"] = take(f"{src}/beta")


def _put_fused(out: dict, take: _Source, src: str, dsts: Sequence[str]) -> None:
    """Split a fused projection; the k part's bias must be zero (Whisper's k_proj has none)."""
    weights = take(f"{src}/weight").chunk(len(dsts), dim=0)
    biases = take(f"{src}/bias").chunk(len(dsts), dim=0)
    for dst, weight, bias in zip(dsts, weights, biases):
        out[f"{dst}.weight"] = weight
        if dst.endswith("k_proj"):
            if bias.numel() and bias.abs().max() > 1e-6:
                raise ValueError(f"{src}: k part of the fused bias is non-zero; Whisper's k_proj has no bias")
        else:
            out[f"{dst}.bias"] = bias


def _put_attention(out: dict, take: _Source, src: str, dst: str, cross: bool) -> None:
    if cross:
        out[f"{dst}.q_proj.weight"] = take(f"{src}/linear_0/weight")
        out[f"{dst}.q_proj.bias"] = take(f"{src}/linear_0/bias")
        _put_fused(out, take, f"{src}/linear_1", [f"{dst}.k_proj", f"{dst}.v_proj"])
        _put_linear(out, take, f"{src}/linear_2", f"{dst}.out_proj")
    else:
        _put_fused(out, take, f"{src}/linear_0", [f"{dst}.q_proj", f"{dst}.k_proj", f"{dst}.v_proj"])
        _put_linear(out, take, f"{src}/linear_1", f"{dst}.out_proj")


def _put_encoder(out: dict, take: _Source, layers: int) -> None:
    for conv in ("conv1", "conv2"):
        _put_linear(out, take, f"encoder/{conv}", f"model.encoder.{conv}")
    out["model.encoder.embed_positions.weight"] = take("encoder/position_encodings/encodings")
    for i in range(layers):
        src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        _put_norm(out, take, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
        _put_attention(out, take, f"{src}/self_attention", f"{dst}.self_attn", cross=False)
        _put_norm(out, take, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
        _put_linear(out, take, f"{src}/ffn/linear_0", f"{dst}.fc1")
        _put_linear(out, take, f"{src}/ffn/linear_1", f"{dst}.fc2")
    _put_norm(out, take, "encoder/layer_norm", "model.encoder.layer_norm")


def _put_decoder(out: dict, take: _Source, layers: int) -> None:
    out["model.decoder.embed_tokens.weight"] = take("decoder/embeddings/weight")
    out["model.decoder.embed_positions.weight"] = take("decoder/position_encodings/encodings")
    for i in range(layers):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        _put_norm(out, take, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
        _put_attention(out, take, f"{src}/self_attention", f"{dst}.self_attn", cross=False)
        _put_norm(out, take, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
        _put_attention(out, take, f"{src}/attention", f"{dst}.encoder_attn", cross=True)
        _put_norm(out, take, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
        _put_linear(out, take, f"{src}/ffn/linear_0", f"{dst}.fc1")
        _put_linear(out, take, f"{src}/ffn/linear_1", f"{dst}.fc2")
    _put_norm(out, take, "decoder/layer_norm", "model.decoder.layer_norm")
    projection = "decoder/projection/weight"
    out["proj_out.weight"] = (
        take(projection) if projection in take else out["model.decoder.embed_tokens.weight"]
    )


def _check_flags(take: _Source) -> None:
    for name, expected in _CT2_WHISPER_FLAGS.items():
        value = take.scalar(name)
        if value not in (-1, expected):
            raise ValueError(
                f"{name}={value} is not supported by transformers' Whisper (expected {expected})"
            )
    for name in _CT2_INFORMATIONAL:
        take.scalar(name)


def whisper_state_from_ct2(model: Ct2Model) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Map every CT2 Whisper variable onto transformers names; also return the head counts.

    Raises ``ValueError`` listing any source variable left unused or expected but absent.
    """
    if model.spec != "WhisperSpec":
        raise ValueError(f"not a CTranslate2 Whisper model (spec {model.spec!r})")
    take = _Source(model)
    names = list(take.variables)
    _check_flags(take)
    heads = {"encoder": take.scalar("encoder/num_heads"), "decoder": take.scalar("decoder/num_heads")}
    state: dict[str, torch.Tensor] = {}
    _put_encoder(state, take, _layer_count(names, "encoder"))
    _put_decoder(state, take, _layer_count(names, "decoder"))
    problems = []
    if take.missing:
        problems.append(f"missing source variables: {take.missing}")
    if take.unused():
        problems.append(f"unused source variables: {take.unused()}")
    if problems:
        raise ValueError("CTranslate2 -> Whisper mapping incomplete; " + "; ".join(problems))
    return state, heads


@dataclass
class WhisperTokens:
    """The special token ids a Whisper config and generation config need."""

    eot: int
    sot: int
    translate: int
    transcribe: int
    prev: int
    no_timestamps: int
    languages: dict[str, int]

    @classmethod
    def from_tokenizer(cls, tokenizer) -> WhisperTokens:
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _WHISPER_SPECIALS}
        sot, translate = ids["<|startoftranscript|>"], ids["<|translate|>"]
        languages = {tokenizer.convert_ids_to_tokens(i): i for i in range(sot + 1, translate)}
        return cls(
            eot=ids["<|endoftext|>"],
            sot=sot,
            translate=translate,
            transcribe=ids["<|transcribe|>"],
            prev=ids["<|startofprev|>"],
            no_timestamps=ids["<|notimestamps|>"],
            languages=languages,
        )


_WHISPER_SPECIALS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startofprev|>",
    "<|notimestamps|>",
)


def whisper_config(
    state: dict[str, torch.Tensor], heads: dict[str, int], tokens: WhisperTokens, ct2_config: dict
):
    """A ``WhisperConfig`` whose shapes are read from the mapped tensors."""
    from transformers import WhisperConfig

    def count(prefix: str) -> int:
        return len({k.split(".")[3] for k in state if k.startswith(f"model.{prefix}.layers.")})

    embed = state["model.decoder.embed_tokens.weight"]
    return WhisperConfig(
        vocab_size=embed.shape[0],
        num_mel_bins=state["model.encoder.conv1.weight"].shape[1],
        d_model=embed.shape[1],
        encoder_layers=count("encoder"),
        decoder_layers=count("decoder"),
        encoder_attention_heads=heads["encoder"],
        decoder_attention_heads=heads["decoder"],
        encoder_ffn_dim=state["model.encoder.layers.0.fc1.weight"].shape[0],
        decoder_ffn_dim=state["model.decoder.layers.0.fc1.weight"].shape[0],
        max_source_positions=state["model.encoder.embed_positions.weight"].shape[0],
        max_target_positions=state["model.decoder.embed_positions.weight"].shape[0],
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=bool(torch.equal(state["proj_out.weight"], embed)),
        decoder_start_token_id=tokens.sot,
        bos_token_id=tokens.eot,
        eos_token_id=tokens.eot,
        pad_token_id=tokens.eot,
        suppress_tokens=ct2_config.get("suppress_ids", []),
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin", [220, tokens.eot]),
    )


def whisper_generation_config(config, tokens: WhisperTokens, ct2_config: dict, multilingual: bool):
    """Whisper generation config: greedy, no timestamps, language/task ids for multilingual models."""
    from transformers import GenerationConfig

    extra = {}
    if multilingual:
        extra = {
            "lang_to_id": tokens.languages,
            "task_to_id": {"translate": tokens.translate, "transcribe": tokens.transcribe},
        }
    return GenerationConfig(
        decoder_start_token_id=tokens.sot,
        bos_token_id=tokens.eot,
        eos_token_id=tokens.eot,
        pad_token_id=tokens.eot,
        max_length=config.max_target_positions,
        suppress_tokens=list(config.suppress_tokens or []),
        begin_suppress_tokens=list(config.begin_suppress_tokens or []),
        alignment_heads=ct2_config.get("alignment_heads", []),
        no_timestamps_token_id=tokens.no_timestamps,
        prev_sot_token_id=tokens.prev,
        max_initial_timestamp_index=50,
        return_timestamps=False,
        is_multilingual=multilingual,
        **extra,
    )


def whisper_tokenizer(tokenizer_json: Path, vocabulary: Path | None, vocab_size: int):
    """``WhisperTokenizerFast`` from tokenizer.json, completed with the timestamp tokens of
    vocabulary.txt so that every id of the embedding has a token."""
    from tokenizers import Tokenizer
    from transformers import WhisperTokenizerFast

    spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    known = {v: k for k, v in spec["model"]["vocab"].items()} | {
        a["id"]: a["content"] for a in spec["added_tokens"]
    }
    if vocabulary is not None:
        _extend_from_vocabulary(spec, known, vocabulary.read_text(encoding="utf-8").splitlines())
    if max(known) + 1 != vocab_size:
        raise ValueError(f"tokenizer covers {max(known) + 1} ids but the embedding has {vocab_size} rows")
    specials = [a["content"] for a in spec["added_tokens"] if a["special"]]
    return WhisperTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)), extra_special_tokens=specials
    )


def _extend_from_vocabulary(spec: dict, known: dict[int, str], lines: list[str]) -> None:
    mismatched = [i for i, tok in enumerate(lines) if i in known and known[i] != tok]
    if mismatched:
        raise ValueError(f"vocabulary.txt disagrees with tokenizer.json at ids {mismatched[:10]}")
    for i in range(len(known), len(lines)):
        spec["added_tokens"].append(
            {
                "id": i,
                "content": lines[i],
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": False,
            }
        )
        known[i] = lines[i]


def build_whisper(ct2: Ct2Model, tokens: WhisperTokens, ct2_config: dict, multilingual: bool | None = None):
    """A ``WhisperForConditionalGeneration`` carrying the CT2 weights (float32)."""
    from transformers import WhisperForConditionalGeneration

    state, heads = whisper_state_from_ct2(ct2)
    config = whisper_config(state, heads, tokens, ct2_config)
    if multilingual is None:
        multilingual = config.vocab_size >= 51865  # OpenAI's own rule
    model = WhisperForConditionalGeneration(config).eval()
    assert_complete(model, state)
    model.load_state_dict(state, strict=True)
    model.generation_config = whisper_generation_config(config, tokens, ct2_config, multilingual)
    return model


def convert_whisper_ct2(
    sources: Sequence[str], out: Path, dtype: str = "float32", multilingual: bool | None = None
) -> Path:
    """Convert a CTranslate2 Whisper (files, folder or package) into a transformers folder."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    parts = find_ct2_parts(sources)
    tokenizer_json = find_sibling(parts, "tokenizer.json")
    if tokenizer_json is None:
        raise FileNotFoundError(f"no tokenizer.json next to {[str(p) for p in parts]}")
    config_json = find_sibling(parts, "config.json")
    ct2_config = json.loads(config_json.read_text()) if config_json else {}
    ct2 = read_ct2(parts)
    vocab_size = _embedding_rows(ct2)
    tokenizer = whisper_tokenizer(tokenizer_json, find_sibling(parts, "vocabulary.txt"), vocab_size)
    model = build_whisper(ct2, WhisperTokens.from_tokenizer(tokenizer), ct2_config, multilingual)
    model.to(DTYPES[dtype]).save_pretrained(out, safe_serialization=True)
    features = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(out)
    return Path(out)


def _embedding_rows(ct2: Ct2Model) -> int:
    embed = ct2.variables.get("decoder/embeddings/weight")
    if embed is None:
        raise ValueError("decoder/embeddings/weight not found in model.bin")
    return embed.shape[0]

