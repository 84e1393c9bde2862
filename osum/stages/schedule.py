"""Learning-rate schedules: linear warm-up, then cosine, inverse-square-root (the original WarmupLR) or constant."""

from __future__ import annotations

import math


def lr_factor(step: int, name: str, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate at optimizer step ``step``."""
    if name not in ("cosine", "inverse_sqrt", "constant"):
        raise ValueError(f"scheduler.name must be cosine, inverse_sqrt or constant, got {name!r}")
    step = max(step, 0)
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if name == "constant":
        return 1.0
    if name == "inverse_sqrt":
        return math.sqrt(max(warmup_steps, 1) / max(step, 1))
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
