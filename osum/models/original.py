"""Map an original OSUM / OSUM-EChat checkpoint (a WeNet-style ``.pt`` state dict) onto our SpeechLLM.

Original names (reference 1.2-1.5, 4.7) and where they go:

* ``encoder.*`` (Whisper in WeNet names: ``embed.conv.0/2``, ``embed.pos_enc.pe``,
  ``encoders.N.self_attn.linear_q/k/v/out``, ``feed_forward.w_1/w_2``, ``norm1/norm2``, ``after_norm``)
  -> ``encoder.*`` (transformers Whisper names);
* ``down_sample_2.conv.{1,4,7}`` -> ``adapter.conv.convs.{0,1,2}``;
* ``speech_transformer.*`` (WeNet TransformerEncoder) -> ``adapter.input_layer`` (``embed.out.0/1``),
  ``adapter.transformer.layers.N`` (q, k, v fused into torch's ``in_proj_weight``/``in_proj_bias``),
  ``adapter.final_norm`` (``after_norm``); ``speech_llama_proj`` -> ``adapter.proj``;
* ``speech_token_emded.weight`` -> ``speech_embed.weight``; ``speech_head``/``speaker_head`` -> ``speech_head``;
* ``llama_model.*``, plain or PEFT-wrapped (``base_model.model.``, ``.base_layer``, ``lora_A/B.default``)
  -> ``llm.*``: LoRA tensors are copied where our LLM has LoRA on the same module, otherwise merged into
  the base weight (``W + B @ A * alpha / r``); LoRA modules of ours that the checkpoint lacks keep their
  fresh (no-op) initialisation;
* ``ln_speech.*`` (never called in the original), a persisted adapter position table and rotary
  ``inv_freq`` buffers are dropped with a note.

Anything else is reported as unmapped; the import fails on unmapped, missing, unexpected or mis-shaped
tensors unless ``allow_partial`` is set.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from osum.models.weights import WeightMismatchError, load_with_report

log = logging.getLogger(__name__)

# (original name pattern, our name): the first matching rule renames a tensor.
RULES: tuple[tuple[str, str], ...] = (
    (r"^encoder\.embed\.conv\.0\.", "encoder.conv1."),
    (r"^encoder\.embed\.conv\.2\.", "encoder.conv2."),
    (r"^encoder\.embed\.pos_enc\.pe$", "encoder.embed_positions.weight"),
    (r"^encoder\.encoders\.(\d+)\.self_attn\.linear_q\.", r"encoder.layers.\1.self_attn.q_proj."),
    (r"^encoder\.encoders\.(\d+)\.self_attn\.linear_k\.", r"encoder.layers.\1.self_attn.k_proj."),
    (r"^encoder\.encoders\.(\d+)\.self_attn\.linear_v\.", r"encoder.layers.\1.self_attn.v_proj."),
    (r"^encoder\.encoders\.(\d+)\.self_attn\.linear_out\.", r"encoder.layers.\1.self_attn.out_proj."),
    (r"^encoder\.encoders\.(\d+)\.feed_forward\.w_1\.", r"encoder.layers.\1.fc1."),
    (r"^encoder\.encoders\.(\d+)\.feed_forward\.w_2\.", r"encoder.layers.\1.fc2."),
    (r"^encoder\.encoders\.(\d+)\.norm1\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"^encoder\.encoders\.(\d+)\.norm2\.", r"encoder.layers.\1.final_layer_norm."),
    (r"^encoder\.after_norm\.", "encoder.layer_norm."),
    (r"^down_sample_2\.conv\.1\.", "adapter.conv.convs.0."),
    (r"^down_sample_2\.conv\.4\.", "adapter.conv.convs.1."),
    (r"^down_sample_2\.conv\.7\.", "adapter.conv.convs.2."),
    (r"^speech_transformer\.embed\.out\.0\.", "adapter.input_layer.0."),
    (r"^speech_transformer\.embed\.out\.1\.", "adapter.input_layer.1."),
    (r"^speech_transformer\.encoders\.(\d+)\.self_attn\.linear_out\.",
     r"adapter.transformer.layers.\1.self_attn.out_proj."),
    (r"^speech_transformer\.encoders\.(\d+)\.feed_forward\.w_1\.", r"adapter.transformer.layers.\1.linear1."),
    (r"^speech_transformer\.encoders\.(\d+)\.feed_forward\.w_2\.", r"adapter.transformer.layers.\1.linear2."),
    (r"^speech_transformer\.encoders\.(\d+)\.norm([12])\.", r"adapter.transformer.layers.\1.norm\2."),
    (r"^speech_transformer\.after_norm\.", "adapter.final_norm."),
    (r"^speech_llama_proj\.", "adapter.proj."),
    (r"^speech_token_emded\.weight$", "speech_embed.weight"),
    (r"^(speech|speaker)_head\.", "speech_head."),
)
# The adapter transformer's separate q, k, v projections, fused in that order into torch's in_proj.
QKV = re.compile(r"^speech_transformer\.encoders\.(\d+)\.self_attn\.linear_([qkv])\.(weight|bias)$")
DROPPED: tuple[tuple[str, str], ...] = (
    (r"^ln_speech\.", "a LayerNorm the original never calls (reference 1.2)"),
    (r"^speech_transformer\.embed\.pos_enc\.pe$", "fixed sinusoidal table, rebuilt by our adapter"),
    (r"rotary_emb\.inv_freq$", "rotary frequencies, recomputed by transformers"),
)
LLM_PREFIX = "llama_model."
PEFT_PREFIX = "base_model.model."
LORA = re.compile(r"^(.*)\.lora_([AB])\.default\.weight$")


@dataclass
class ImportReport:
    """What happened to every tensor of the original checkpoint."""

    loaded: int = 0
    dropped: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    lora_merged: list[str] = field(default_factory=list)
    lora_fresh: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"loaded {self.loaded} tensors"]
        for name in ("dropped", "unmapped", "missing", "unexpected", "lora_merged", "lora_fresh"):
            items = getattr(self, name)
            if items:
                more = f" ... (+{len(items) - 8})" if len(items) > 8 else ""
                lines.append(f"{name} ({len(items)}): {', '.join(items[:8])}{more}")
        return "\n".join(lines)


def read_original(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an original ``.pt`` (plain, or DeepSpeed's ``{'module': state_dict}``)."""
    obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    state = obj.get("module", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (or {{'module': state_dict}})")
    return state


def rename(name: str) -> str | None:
    """Our name for a non-LLM original tensor, or None when no rule applies."""
    for pattern, repl in RULES:
        if re.search(pattern, name):
            return re.sub(pattern, repl, name)
    return None


def drop_reason(name: str) -> str | None:
    return next((why for pattern, why in DROPPED if re.search(pattern, name)), None)


def fuse_qkv(parts: Mapping[tuple[str, str], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """{(layer, weight|bias): {q, k, v}} -> ``adapter.transformer.layers.N.self_attn.in_proj_*``."""
    out = {}
    for (layer, kind), qkv in parts.items():
        if set(qkv) != {"q", "k", "v"}:
            raise WeightMismatchError(f"speech_transformer.encoders.{layer}.self_attn: linear_{{q,k,v}}.{kind} "
                                      f"incomplete (found {sorted(qkv)})")
        out[f"adapter.transformer.layers.{layer}.self_attn.in_proj_{kind}"] = torch.cat([qkv[p] for p in "qkv"])
    return out


def plain_llm_name(name: str) -> str:
    """A PEFT-wrapped LLM name -> the transformers name (``base_model.model.`` and ``.base_layer`` removed)."""
    if name.startswith(PEFT_PREFIX):
        name = name[len(PEFT_PREFIX):]
    return name.replace(".base_layer.", ".")


def split_lora(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """LLM tensors -> base tensors by transformers name, and LoRA {module: {A, B}} by module name."""
    base, lora = {}, {}
    for name, tensor in state.items():
        match = LORA.match(name)
        if match:
            lora.setdefault(plain_llm_name(match.group(1)), {})[match.group(2)] = tensor
        else:
            base[plain_llm_name(name)] = tensor
    for module, ab in lora.items():
        if set(ab) != {"A", "B"}:
            raise WeightMismatchError(f"LoRA of {module}: only lora_{''.join(ab)} present")
    return base, lora


def merge_lora(weight: torch.Tensor, ab: Mapping[str, torch.Tensor], alpha: float) -> torch.Tensor:
    """``W + B @ A * alpha / r`` (peft's merge for a Linear) in float32; loading casts it to our dtype."""
    a, b = ab["A"].float(), ab["B"].float()
    return weight.float() + b @ a * (alpha / a.shape[0])


def map_llm(state: Mapping[str, torch.Tensor], llm: nn.Module, lora_alpha: float | None,
            report: ImportReport) -> dict[str, torch.Tensor]:
    """Original ``llama_model.*`` tensors (prefix removed) -> our ``llm.*`` names."""
    own = llm.state_dict()
    ours_base = {plain_llm_name(k): k for k in own if not LORA.match(k)}
    ours_lora: dict[str, dict[str, str]] = {}
    for k in own:
        if match := LORA.match(k):
            ours_lora.setdefault(plain_llm_name(match.group(1)), {})[match.group(2)] = k
    base, lora = split_lora(state)
    out = {}
    for module, ab in lora.items():
        if module in ours_lora:
            out.update({ours_lora[module][p]: ab[p] for p in "AB"})
            continue
        if lora_alpha is None:
            raise ValueError(f"the checkpoint has LoRA on {module} but our LLM has none there: "
                             "merging it needs lora_alpha (model.llm.lora.alpha or --lora-alpha)")
        if f"{module}.weight" not in base:
            raise WeightMismatchError(f"LoRA of {module} but no base weight {module}.weight")
        base[f"{module}.weight"] = merge_lora(base[f"{module}.weight"], ab, lora_alpha)
        report.lora_merged.append(module)
    for module in sorted(set(ours_lora) - set(lora)):
        out.update({k: own[k] for k in ours_lora[module].values()})  # keep the fresh init (B = 0: no change)
        report.lora_fresh.append(module)
    for name, tensor in base.items():
        out[ours_base.get(name, name)] = tensor
    return {f"llm.{k}": v for k, v in out.items()}


def fill_tied(mapped: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Give tied parameters (e.g. lm_head and embed_tokens) the one tensor the checkpoint holds for them."""
    groups: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if tensor.numel():
            groups.setdefault(tensor.data_ptr(), []).append(name)
    for names in groups.values():
        present = [n for n in names if n in mapped]
        if len(names) < 2 or not present:
            continue
        first = mapped[present[0]]
        if any(not torch.equal(mapped[n], first) for n in present[1:]):
            raise WeightMismatchError(f"the checkpoint has different tensors for {present}, which our model ties "
                                      "(check tie_word_embeddings of the LLM config)")
        mapped.update({n: first for n in names})


def map_original(state: Mapping[str, torch.Tensor], model: nn.Module,
                 lora_alpha: float | None = None) -> tuple[dict[str, torch.Tensor], ImportReport]:
    """Our state dict (names of ``SpeechLLM``) from an original one, and what was dropped or unmapped."""
    report = ImportReport()
    mapped: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    llm_state = {}
    for name, tensor in state.items():
        if why := drop_reason(name):
            report.dropped.append(f"{name} ({why})")
        elif name.startswith(LLM_PREFIX):
            llm_state[name[len(LLM_PREFIX):]] = tensor
        elif match := QKV.match(name):
            qkv.setdefault((match.group(1), match.group(3)), {})[match.group(2)] = tensor
        elif ours := rename(name):
            mapped[ours] = tensor
        else:
            report.unmapped.append(name)
    if "encoder.embed_positions.weight" in mapped:  # WeNet keeps it as (1, max_len, d)
        pe = mapped["encoder.embed_positions.weight"]
        mapped["encoder.embed_positions.weight"] = pe.reshape(-1, pe.shape[-1])
    mapped.update(fuse_qkv(qkv))
    mapped.update(map_llm(llm_state, model.llm, lora_alpha, report))
    fill_tied(mapped, model)
    return mapped, report


def import_original(model: nn.Module, state: Mapping[str, torch.Tensor], allow_partial: bool = False,
                    lora_alpha: float | None = None) -> ImportReport:
    """Load an original checkpoint's state dict into ``model`` (a SpeechLLM); see the module docstring."""
    mapped, report = map_original(state, model, lora_alpha)
    if report.unmapped and not allow_partial:
        raise WeightMismatchError(f"{len(report.unmapped)} original tensor(s) have no place in our model: "
                                  f"{report.unmapped[:8]}; pass allow_partial (--allow-partial) to skip them")
    report.missing, report.unexpected = load_with_report(model, mapped, strict=not allow_partial,
                                                         what="original checkpoint")
    own = model.state_dict()
    report.loaded = sum(1 for k, v in mapped.items() if k in own and own[k].shape == v.shape)
    for note in report.dropped:
        log.info("dropped %s", note)
    log.info("%s", report.summary())
    return report
