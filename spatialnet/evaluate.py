"""Evaluation: each task's accuracy with the full network and with its subnetwork after the split,
and the split's modularity."""
from __future__ import annotations

import torch

from . import data as data_mod
from .config import TrainConfig
from .model import SpatialMLP
from .modularity import measures
from .split import model_split, task_masks

# the per-run read-out that tables, sweeps and the demo report: accuracy, drop, modularity
READOUT = ("full", "split", "drop", "cross_task_share", "segregation", "dead")


@torch.no_grad()
def task_accuracy(model, x, y, task: int, masks=None, batch: int = 4096) -> float:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    lo = task * data_mod.NUM_CLASSES
    correct = torch.zeros((), dtype=torch.long, device=device)
    for s in range(0, len(x), batch):
        logits = model(x[s:s + batch].to(device), masks)[:, lo:lo + data_mod.NUM_CLASSES]
        correct += (logits.argmax(1) == y[s:s + batch].to(device)).sum()
    model.train(was_training)
    return correct.item() / max(len(x), 1)


def evaluate(model: SpatialMLP, cfg: TrainConfig, td: data_mod.TaskData) -> dict:
    """Per-task accuracy of the full network and of each task's subnetwork (other tasks' and
    dead neurons disabled in the split layers), ``full``/``split`` the means over the tasks,
    and the modularity measures of the split (``modularity.py``)."""
    assignment = model_split(model, cfg.split_layers, cfg.num_tasks)
    full, split = [], []
    for t, (x, y) in enumerate(td.test_sets):
        full.append(task_accuracy(model, x, y, t))
        split.append(task_accuracy(model, x, y, t, task_masks(assignment, t)))
    sizes = {str(l): [int((g == t).sum()) for t in range(cfg.num_tasks)] for l, g in assignment.items()}
    mean_full, mean_split = sum(full) / len(full), sum(split) / len(split)
    return {"tasks": list(cfg.tasks), "full": mean_full, "split": mean_split,
            "full_per_task": full, "split_per_task": split, "drop": mean_full - mean_split,
            "split_sizes": sizes, **measures(model, assignment)}
