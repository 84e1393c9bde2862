"""A CosyVoice model folder: which files it holds, how their state dicts are read, and errors that name them.

``flow.pt`` and ``hift.pt`` are plain ``torch.save`` d state dicts (CosyVoice's ``load`` reads them with
``strict=True``). ``hift.pt`` comes in two weight-norm spellings, ``<conv>.weight_g`` / ``.weight_v``
(``torch.nn.utils.weight_norm``, the released files) and ``<conv>.parametrizations.weight.original0`` /
``original1`` (the parametrization API, which our modules use); both load, as do keys prefixed
``generator.`` (a HiFi-GAN training checkpoint). Only ``pathlib`` and ``torch`` here: ``is_cosyvoice_folder``
is cheap to ask.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

FLOW_FILE = "flow.pt"
HIFT_FILE = "hift.pt"
CAMPPLUS_FILE = "campplus.onnx"
YAML_FILE = "cosyvoice.yaml"
EXPORT_CONFIG = "token2wav.json"  # osum's own export folders (osum.token2wav.synthesizer)
WEIGHT_NORM = {".weight_g": ".parametrizations.weight.original0", ".weight_v": ".parametrizations.weight.original1"}
SHOWN = 5  # keys named in an error message


def is_cosyvoice_folder(path: str | Path) -> bool:
    """A folder with CosyVoice's ``flow.pt`` or ``hift.pt`` and no osum ``token2wav.json``."""
    path = Path(path)
    return (path.is_dir() and not (path / EXPORT_CONFIG).is_file()
            and ((path / FLOW_FILE).is_file() or (path / HIFT_FILE).is_file()))


def required(folder: str | Path, name: str) -> Path:
    path = Path(folder) / name
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is a CosyVoice model folder without {name}: it needs {FLOW_FILE} (the "
                                f"flow) and {HIFT_FILE} (the vocoder), as CosyVoice-300M-25Hz ships them")
    return path


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict ``torch.save`` d at ``path`` (tensors only, on the CPU)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle / zip error: say which file
        raise ValueError(f"{path}: not a torch-saved state dict ({type(e).__name__}: {e})") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (as CosyVoice saves {Path(path).name}), "
                         f"got {type(state).__name__}")
    return dict(state)


def hift_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``hift.pt`` keys in the parametrizations spelling, a ``generator.`` prefix dropped."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("generator.")
        for old, new in WEIGHT_NORM.items():
            if key.endswith(old):
                key = key[: -len(old)] + new
        out[key] = value
    return out


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > SHOWN else shown


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path, assign: bool = False
                ) -> None:
    """``module.load_state_dict(state, strict=True)``, with missing, unexpected and mis-shaped keys named
    (``assign``: the tensors replace the module's, as for a module made on the meta device)."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
              for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    if shapes:
        problems.append(f"mis-shaped {_listed(shapes)}")
    if problems:
        raise ValueError(f"{path}: does not fit CosyVoice's {type(module).__name__} at the sizes it implies: "
                         + "; ".join(problems))
    module.load_state_dict(state, strict=True, assign=assign)
