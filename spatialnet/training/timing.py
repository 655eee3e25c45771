"""Timing a training step with and without the spatial costs, alternately on one model, so that
the machine's load hits both alike."""
from __future__ import annotations

import copy
import statistics
import time

import torch


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
