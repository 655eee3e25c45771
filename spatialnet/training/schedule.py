"""The learning-rate schedules every training in the package uses: constant or a cosine decay to 0,
after an optional linear warm-up, as a factor on each group's lr (``torch.optim.lr_scheduler.LambdaLR``)."""
from __future__ import annotations

import math

import torch

from ..config import SCHEDULES


def lr_factor(step: int, total: int, schedule: str = "constant", warmup: int = 0) -> float:
    """The lr factor at ``step`` (0-based) of ``total``: ``(step + 1) / warmup`` over the first
    ``warmup`` steps, then 1 (constant) or ``(1 + cos(pi t)) / 2`` with t the part of the steps
    after the warm-up that has passed (cosine, 0 at ``total``)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def make_scheduler(optimizer, total: int, schedule: str = "constant", warmup: int = 0):
    """A ``LambdaLR`` over ``optimizer`` (its inner optimiser for master weights) with :func:`lr_factor`."""
    inner = getattr(optimizer, "inner", optimizer)
    return torch.optim.lr_scheduler.LambdaLR(inner, lambda s: lr_factor(s, total, schedule, warmup))
