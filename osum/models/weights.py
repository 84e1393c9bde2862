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


def assert_complete(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Raise ``ValueError`` unless ``state`` assigns every tensor of ``model``, no other, each in its shape
    (converters: a converted model has no random weights left)."""
    target = model.state_dict()
    missing = sorted(set(target) - set(state))
    extra = sorted(set(state) - set(target))
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in target.items()
              if k in state and state[k].shape != v.shape]
    if missing or extra or shapes:
        raise ValueError(f"weights not assigned: {missing}; unknown: {extra}; shape mismatches: {shapes}")
