"""Strategy objects that need more than a config can say: FSDP units from layer classes named by path."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from lightning.pytorch.strategies import FSDPStrategy


def import_class(path: str) -> type:
    """``"package.module.Class"`` -> the class."""
    module, _, name = path.rpartition(".")
    if not module:
        raise ValueError(f"{path!r}: give the import path of the class, "
                         "e.g. transformers.models.qwen2.modeling_qwen2.Qwen2DecoderLayer")
    return getattr(importlib.import_module(module), name)


def fsdp(layer_classes: Sequence[str], sharding_strategy: str = "FULL_SHARD", state_dict_type: str = "sharded",
         **kwargs: Any) -> FSDPStrategy:
    """FSDP with one unit per instance of each listed layer class; other keywords go to FSDPStrategy."""
    return FSDPStrategy(auto_wrap_policy={import_class(c) for c in layer_classes},
                        sharding_strategy=sharding_strategy, state_dict_type=state_dict_type, **kwargs)
