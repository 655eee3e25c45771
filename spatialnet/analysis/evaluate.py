"""Evaluation: each task's accuracy with the full network and with its subnetwork after the split,
the split's modularity (``modularity.py``), and a check of the dead rule.

``full_dead_silenced`` is the full net's accuracy with only the dead neurons silenced;
``dead_delta`` = full - that. The dead rule (``split.DEAD_TOL``) is trustworthy only while
|dead_delta| stays within ``DEAD_DELTA_MAX`` (0.002): a neuron that moves the accuracy is not dead.
Which images: ``td.test_sets``, the validation split unless the run asked for the test sets
(``TrainConfig.eval_split``, ``data.py``)."""
from __future__ import annotations

import torch

from .. import data as data_mod
from ..model import SpatialMLP
from .modularity import measures
from .task_split import model_split, task_masks

# the split accuracies besides the greedy split with outputs zeroed (``split``, ``drop``): every
# split of task_split.SPLITS by every way of disabling (task_split.DISABLE), ``split_<split>`` /
# ``split_<split>_inputs`` and the drops alike
SPLIT_READOUTS = tuple(f"{k}_{s}{d}" for s in ("greedy", "balanced", "mean") for d in ("", "_inputs")
                       if (s, d) != ("greedy", "") for k in ("split", "drop"))
# the per-run read-out that tables, sweeps and the demo report: accuracy, drop, modularity
READOUT = ("full", "split", "drop", *SPLIT_READOUTS, "abs_w", "silhouette", "silhouette_null", "ari", "ari_null", "nn", "nn_null", "stacked",
           "on_next", "purity", "purity_null", "territory", "territory_null", "band", "band_null", "out_silhouette",
           "out_silhouette_null", "cross_task_share", "share_chance", "share_norm", "newman_q", "dead",
           "dead_fraction", "dead_delta")
# what every study keeps of a run: the read-out and its per-task and per-layer detail
RECORD = (*READOUT, "full_per_task", "split_per_task", "split_sizes", "split_sizes_mean", "dead_per_layer", "per_layer", "eval_split",
          "tasks")
DEAD_DELTA_MAX = 0.002

# The spatial net's targets per mode (docs/protocol.md), as (read-out key, "<=" or ">=", limit), met when
# every seed meets them: the reports mark them and sweeps can take them as constraints.
_CROWDING = (("nn", ">=", 0.4), ("stacked", "<=", 0.3))
_MODULES = (("silhouette", ">=", 0.5), ("ari", ">=", 0.9), ("share_norm", "<=", 0.1), ("dead_fraction", "<=", 0.5))
TARGETS = {
    "concat": (("drop", "<=", 0.01), ("full", ">=", 0.91), *_MODULES, *_CROWDING),   # paper's full 0.92 - 0.01
    "mix": (("drop", "<=", 0.01), ("full", ">=", 0.88), *_MODULES, *_CROWDING),      # 0.89 - 0.01
    "sequential": (("drop", "<=", 0.05), ("silhouette", ">=", 0.35), *_CROWDING),
}


# what a wide net must show besides: one territory per task, a band between them, the output
# sheet grouped by task (docs/measures.md)
TERRITORY_TARGETS = (("purity", ">=", 0.95), ("territory", ">=", 0.9), ("band", "<=", 0.75),
                     ("out_silhouette", ">=", 0.3))


def target_gap(value, op: str, limit: float) -> float:
    """How far ``value`` misses ``op limit`` (<= 0: met); a missing value misses by 1."""
    if value is None:
        return 1.0
    return value - limit if op == "<=" else limit - value


@torch.no_grad()
def task_accuracy(model, x, y, task: int, masks=None, batch: int = 4096, disable: str = "outputs") -> float:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    lo = task * data_mod.NUM_CLASSES
    correct = torch.zeros((), dtype=torch.long, device=device)
    for s in range(0, len(x), batch):
        logits = model(x[s:s + batch].to(device), masks, disable=disable)[:, lo:lo + data_mod.NUM_CLASSES]
        correct += (logits.argmax(1) == y[s:s + batch].to(device)).sum()
    model.train(was_training)
    return correct.item() / max(len(x), 1)


@torch.no_grad()
def head_accuracy(model, td: data_mod.TaskData, prep=lambda x: x, batch: int = 1000) -> list[float]:
    """Each task's accuracy on ``td``'s read-out images (concat pairs) of any model whose output
    holds the tasks' heads side by side (10 logits each); ``prep`` shapes a batch for the model."""
    model.eval()
    x, _ = td.test_sets[0]
    logits = torch.cat([model(prep(x[s:s + batch])) for s in range(0, len(x), batch)]).view(len(x), -1, 10)
    model.train()
    return [float((logits[:, t].argmax(-1) == y).double().mean()) for t, (_, y) in enumerate(td.test_sets)]


def evaluate(model: SpatialMLP, cfg, td: data_mod.TaskData, dead_tol: float | None = None) -> dict:
    """Per-task accuracy of the full network and of each task's subnetwork (other tasks' and
    dead neurons disabled in the split layers) of a net ``cfg`` (its ``TrainConfig``) describes,
    ``full``/``split`` the means over the tasks (the greedy split, outputs zeroed), the same for
    the other splits and the other way of disabling (``SPLIT_READOUTS``), ``abs_w`` the sum of
    |w| over the weights into the split layers, and the modularity measures of the greedy split
    (``modularity.py``)."""
    tol = {} if dead_tol is None else {"dead_tol": dead_tol}
    splits = {s: model_split(model, cfg.split_layers, cfg.num_tasks, split=s, **tol)
              for s in ("greedy", "balanced", "mean")}
    assignment = splits["greedy"]
    alive = {l: (g >= 0).float() for l, g in assignment.items()}
    full, undead = [], []
    split = {(s, d): [] for s in splits for d in ("outputs", "inputs")}
    for t, (x, y) in enumerate(td.test_sets):
        full.append(task_accuracy(model, x, y, t))
        undead.append(task_accuracy(model, x, y, t, alive))
        for (s, d), acc in split.items():
            acc.append(task_accuracy(model, x, y, t, task_masks(splits[s], t), disable=d))
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    mean_full, mean_undead = mean(full), mean(undead)
    out = {}
    for (s, d), acc in split.items():
        name = f"{s}{'_inputs' if d == 'inputs' else ''}"
        if name != "greedy":
            out[f"split_{name}"], out[f"drop_{name}"] = mean(acc), mean_full - mean(acc)
    sizes = lambda a: {str(l): [int((g == t).sum()) for t in range(cfg.num_tasks)]  # noqa: E731
                       for l, g in a.items()}
    greedy = split[("greedy", "outputs")]
    abs_w = sum(float(model.layer(l).weight.detach().abs().sum()) for l in cfg.split_layers)
    return {"tasks": list(cfg.tasks), "full": mean_full, "split": mean(greedy),
            "full_per_task": full, "split_per_task": greedy, "drop": mean_full - mean(greedy), **out,
            "abs_w": abs_w, "full_dead_silenced": mean_undead, "dead_delta": mean_full - mean_undead,
            "split_sizes": sizes(assignment), "split_sizes_mean": sizes(splits["mean"]),
            "eval_split": getattr(td, "eval_split", "test"), **measures(model, assignment, cfg.num_tasks)}
