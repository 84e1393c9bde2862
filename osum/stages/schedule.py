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


def adamw_with_schedule(module, optim: dict, scheduler: dict, max_steps: int | None) -> dict:
    """Lightning's ``configure_optimizers`` answer for ``module``'s trainable parameters: AdamW (no weight decay
    on biases and norms) and the per-step schedule of ``lr_factor``."""
    import torch

    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    if not decay and not no_decay:
        raise ValueError("no trainable parameters: check model.freeze / model.unfreeze")
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": optim.get("weight_decay", 0.01)},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=optim["lr"], betas=tuple(optim.get("betas", (0.9, 0.99))), eps=optim.get("eps", 1e-6))
    total = max_steps if max_steps and max_steps > 0 else 100_000
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(step, scheduler.get("name", "cosine"), scheduler.get("warmup_steps", 0), total,
                                    scheduler.get("min_ratio", 0.0)))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
