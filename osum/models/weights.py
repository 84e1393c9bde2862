"""Reading weight files and loading state dicts with a report of missing and unexpected keys."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


class WeightMismatchError(RuntimeError):
    """Loading found missing, unexpected or wrongly shaped tensors and was not told to go on."""


def load_folder_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a Hugging Face folder (safetensors, sharded or not, else pytorch_model*.bin)."""
    path = Path(path)
    files = sorted(path.glob("*.safetensors"))
    if files:
        from safetensors.torch import load_file

        state: dict[str, torch.Tensor] = {}
        for f in files:
            state.update(load_file(str(f)))
        return state
    files = sorted(path.glob("pytorch_model*.bin"))
    if not files:
        raise FileNotFoundError(f"{path}: no *.safetensors or pytorch_model*.bin weights")
    state = {}
    for f in files:
        state.update(torch.load(f, map_location="cpu", weights_only=True))
    return state


def load_with_report(module: nn.Module, state: dict[str, torch.Tensor], strict: bool = True,
                     what: str = "weights", from_base: frozenset[str] = frozenset()) -> tuple[list[str], list[str]]:
    """Load ``state`` into ``module``; log missing/unexpected/mis-shaped keys; raise on any if strict.
    Keys in ``from_base`` are absent on purpose (frozen base tensors the model already holds)."""
    own = module.state_dict()
    shape_bad = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                 for k, v in state.items() if k in own and own[k].shape != v.shape]
    if shape_bad and strict:
        raise WeightMismatchError(f"{what}: shape mismatch for {len(shape_bad)} tensor(s): {shape_bad[:10]}")
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    result = module.load_state_dict(usable, strict=False)
    missing = [k for k in result.missing_keys if k not in from_base]
    if from_base:
        log.info("%s: %d frozen tensors kept from the base weights the model was built from", what,
                 len(from_base & set(result.missing_keys)))
    unexpected = sorted(set(state) - set(own))
    for name, keys in (("missing", missing), ("unexpected", unexpected), ("shape-mismatched", shape_bad)):
        if keys:
            log.warning("%s: %d %s key(s): %s%s", what, len(keys), name, keys[:8], " ..." if len(keys) > 8 else "")
    if strict and (missing or unexpected):
        raise WeightMismatchError(f"{what}: {len(missing)} missing key(s) {missing[:8]}, "
                                  f"{len(unexpected)} unexpected key(s) {unexpected[:8]}; "
                                  "set strict: false to load anyway")
    log.info("%s: loaded %d tensors", what, len(usable))
    return missing, unexpected


def _peft_free(name: str) -> str:
    """A backbone tensor name as it reads without a peft LoRA wrapper around the LLM."""
    return name.replace("llm.base_model.model.", "llm.", 1).replace(".base_layer.", ".")


def _export_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """Backbone-named tensors of an ``osum.export`` folder (merged LLM in ``llm/``, the rest in safetensors)."""
    from safetensors.torch import load_file

    state = {f"llm.{k}": v for k, v in load_folder_state_dict(directory / "llm").items()}
    for part, prefix in (("encoder", "encoder."), ("adapter", "adapter."), ("speech", "")):
        state.update({prefix + k: v for k, v in load_file(str(directory / f"{part}.safetensors")).items()})
    return state


def _checkpoint_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Backbone-named tensors of a Lightning checkpoint (the stage's ``backbone.`` entries), and the
    names of the frozen base tensors a trainable-only checkpoint left out on purpose."""
    checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    state = {k.removeprefix("backbone."): v for k, v in checkpoint["state_dict"].items() if k.startswith("backbone.")}
    base = checkpoint.get("osum_base_weights") or {}
    return state, {k.removeprefix("backbone.") for k in base.get("keys", [])}


def load_initial_weights(backbone: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Weights only (no optimizer, step or data position) from a training checkpoint or an export folder.

    Names are matched across a LoRA wrapper (a plain stage-1 LLM into a stage-2 LLM with LoRA, whose
    adapters then start fresh); missing and unexpected keys are logged, shape mismatches skipped.
    """
    from osum.export import is_export_dir

    path = Path(path)
    state, from_base = (_export_state_dict(path), set()) if is_export_dir(path) else _checkpoint_state_dict(path)
    by_plain_name = {_peft_free(k): k for k in backbone.state_dict()}
    state = {by_plain_name.get(_peft_free(k), k): v for k, v in state.items()}
    from_base = frozenset(by_plain_name.get(_peft_free(k), k) for k in from_base)
    return load_with_report(backbone, state, strict=False, what=f"init_from {path}", from_base=from_base)
