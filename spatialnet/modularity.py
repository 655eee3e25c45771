"""How modular a split net is, read from its weights and positions.

Given the greedy split's assignment ``{layer: (N_l,) task, -1 = dead}`` (``split.py``):

- ``dead``: neurons the split found dead (negligible outgoing weights), over the split layers.
  They are left out of both measures below.
- ``cross_task_share``: the sum of |w| over the connections between consecutive split layers
  that join live neurons of different tasks, divided by the sum of |w| over all connections
  between live neurons there. 0: the tasks' subnetworks are disjoint; about 1 - 1/M: no
  structure (M tasks of equal size).
- ``segregation`` (nets with positions): for each live neuron, the share of its ``k`` nearest
  live neighbours in its own layer that belong to its own task, chance-corrected against
  shuffled task labels, ``(observed - chance) / (1 - chance)`` per layer, where chance is the
  exact expectation under a random relabelling, ``mean_i (n_task(i) - 1) / (n - 1)``; averaged
  over the split layers that have positions and live neurons of at least two tasks. 0: tasks
  interleaved at random; 1: every neuron's neighbours are its own task's. ``None`` where no
  layer qualifies (a regular net has no positions).
"""
from __future__ import annotations

import torch

SEGREGATION_K = 5


def dead_count(assignment: dict[int, torch.Tensor]) -> dict[int, int]:
    return {l: int((g < 0).sum()) for l, g in assignment.items()}


@torch.no_grad()
def cross_task_share(model, assignment: dict[int, torch.Tensor]) -> float | None:
    layers = sorted(assignment)
    cross = total = 0.0
    for l in layers[1:]:
        a = model.layer(l).weight.detach().abs().double()  # [N_l, N_{l-1}]
        g_out, g_in = assignment[l].to(a.device), assignment[l - 1].to(a.device)
        live = (g_out >= 0)[:, None] & (g_in >= 0)[None, :]
        total += float(a[live].sum())
        cross += float(a[live & (g_out[:, None] != g_in[None, :])].sum())
    return cross / total if total > 0 else None


@torch.no_grad()
def layer_segregation(p: torch.Tensor, g: torch.Tensor, k: int = SEGREGATION_K) -> float | None:
    """Chance-corrected k-nearest-neighbour task agreement of live neurons (g >= 0) at ``p``."""
    live = g >= 0
    p, g = p.detach()[live].double(), g[live]
    n = len(g)
    counts = torch.bincount(g)
    if n < 2 or int((counts > 0).sum()) < 2:
        return None
    kk = min(k, n - 1)
    d = torch.cdist(p, p)
    d.fill_diagonal_(float("inf"))
    nearest = d.topk(kk, dim=1, largest=False).indices  # [n, kk]
    observed = (g[nearest] == g[:, None]).double().mean()
    chance = ((counts[g] - 1).double() / (n - 1)).mean()
    return float((observed - chance) / (1 - chance))


def segregation(model, assignment: dict[int, torch.Tensor], k: int = SEGREGATION_K) -> float | None:
    values = [layer_segregation(model.layer(l).positions, g.to(model.layer(l).positions.device), k)
              for l, g in sorted(assignment.items()) if hasattr(model.layer(l), "positions")]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def measures(model, assignment: dict[int, torch.Tensor]) -> dict:
    """``{"cross_task_share", "segregation", "dead", "dead_per_layer"}`` of a split net."""
    dead = dead_count(assignment)
    return {"cross_task_share": cross_task_share(model, assignment),
            "segregation": segregation(model, assignment),
            "dead": sum(dead.values()), "dead_per_layer": {str(l): n for l, n in dead.items()}}
