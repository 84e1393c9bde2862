"""Which parameters train: freeze and unfreeze by regular expressions over parameter names."""

from __future__ import annotations

import logging
import re

from torch import nn

log = logging.getLogger(__name__)


def apply_freezing(module: nn.Module, freeze: list[str], unfreeze: list[str] | None = None) -> dict[str, int]:
    """Set ``requires_grad=False`` on names matching any ``freeze`` pattern, then ``True`` on ``unfreeze``.

    Patterns are Python regexes searched in the full parameter name. A pattern that matches nothing
    is an error (it is almost always a typo). Returns counts of trainable and frozen parameters.
    """
    names = [n for n, _ in module.named_parameters()]
    for key, patterns in (("freeze", freeze), ("unfreeze", unfreeze or [])):
        for p in patterns:
            if not any(re.search(p, n) for n in names):
                raise ValueError(f"model.{key} pattern {p!r} matches no parameter; names look like {names[:4]}")
    for name, param in module.named_parameters():
        if any(re.search(p, name) for p in freeze):
            param.requires_grad_(False)
        if any(re.search(p, name) for p in unfreeze or []):
            param.requires_grad_(True)
    counts = {"trainable": 0, "frozen": 0}
    for p in module.parameters():
        counts["trainable" if p.requires_grad else "frozen"] += p.numel()
    log.info("parameters: %s trainable, %s frozen", f"{counts['trainable']:,}", f"{counts['frozen']:,}")
    return counts


def is_frozen(module: nn.Module) -> bool:
    return not any(p.requires_grad for p in module.parameters())
