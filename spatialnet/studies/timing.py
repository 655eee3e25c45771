"""Shared by the studies of spatialized timm and torchvision models (``vit_modules.py``,
``wide_mlp.py``): the concat data, evaluation, and timing a training step with and without the
spatial costs, alternately, on one model."""
from __future__ import annotations

import copy
import statistics
import time

import torch

from .. import data as D


def concat_data(seed: int, data_dir=None) -> D.TaskData:
    """MNIST + Fashion-MNIST side by side (1568-d), 5000 images per dataset held out of training
    (spatialnet's validation split, not read here), evaluated on the test sets; the data folder
    as every command takes it (``data_dir``, else $SPATIALNET_DATA, else the cache)."""
    ds = D.load("full", data_dir)
    return D.TaskData(D.with_validation(ds, D.val_size(ds.source), "test"), "concat", seed)


def as_image(x: torch.Tensor) -> torch.Tensor:
    """(B, 1568) -> (B, 1, 28, 56): the two 28x28 images side by side."""
    return x.view(len(x), 2, 28, 28).permute(0, 2, 1, 3).reshape(len(x), 1, 28, 56)


@torch.no_grad()
def accuracy(model, td: D.TaskData, prep=lambda x: x, batch: int = 1000) -> list[float]:
    """Test accuracy of each task's head."""
    model.eval()
    x, _ = td.test_sets[0]
    logits = torch.cat([model(prep(x[s:s + batch])) for s in range(0, len(x), batch)]).view(len(x), -1, 10)
    model.train()
    return [float((logits[:, t].argmax(-1) == y).double().mean()) for t, (_, y) in enumerate(td.test_sets)]


def time_steps(model, costs, batches, loss_fn, lr: float, alpha: float, beta: float, pairs: int) -> dict:
    """Median seconds of a training step (forward, backward, AdamW step) without the costs and
    with them, taken alternately on a copy of ``model`` (so the machine's load hits both alike),
    and of the costs alone (forward + backward)."""
    model, costs = copy.deepcopy((model, costs))  # one deepcopy: the costs keep pointing at the copy's layers
    opt = torch.optim.AdamW(costs.param_groups(model, lr=lr, position_lr=lr), lr=lr)
    times = {"plain": [], "spatial": [], "costs_only": []}

    def step(with_costs: bool, x, y):
        opt.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        loss = loss_fn(model, x, y)
        if with_costs:
            loss = loss + costs(alpha, beta)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    for i, (x, y) in enumerate(batches):
        if i >= pairs + 2:
            break
        first = i % 2 == 0  # alternate which goes first
        a = step(not first, x, y)
        b = step(first, x, y)
        if i >= 2:  # warm-up
            times["spatial" if not first else "plain"].append(a)
            times["plain" if not first else "spatial"].append(b)
        opt.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        costs(alpha, beta).backward()
        times["costs_only"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    med["added_share"] = med["spatial"] / med["plain"] - 1.0
    med["costs_share"] = med["costs_only"] / med["plain"]
    diffs = [s - p for s, p in zip(times["spatial"], times["plain"])]
    med["paired_difference"] = statistics.median(diffs)  # per pair: with minus without
    med["pairs"] = len(times["plain"])
    med["samples"] = times
    return med
