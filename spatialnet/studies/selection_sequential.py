"""Sequential mode alone: which setting comes nearest its targets (a split that keeps the accuracy,
clusters, no crowding), on the validation split? A sweep like ``selection.py``'s, wider in alpha
and beta."""
from __future__ import annotations

from .registry import register_study
from .selection import OBJECTIVES, run_declared, sweep_arguments

SPACE = ("alpha=0.3:30:log", "beta=0.3:60:log", "pos_lr_scale=0.3:10:log", "cost_warmup=0:10")


@register_study("selection-sequential", question="Sequential mode alone: which setting comes nearest its targets "
                                                 "(a split that keeps the accuracy, clusters, no crowding), on the "
                                                 "validation split?",
                outputs=("sweeps/sequential-val.md", "sweeps/sequential-val.json", "sweeps/sequential-val.png"),
                arguments=lambda p: sweep_arguments(p, trials=8))
def run(args) -> None:
    run_declared(args, "sequential-val", SPACE, ("sequential",), OBJECTIVES)
