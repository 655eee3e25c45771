"""The paper's greedy backward split, the masks it gives, and split-vs-full evaluation.

The output neurons belong to their head; going backward, each neuron n of an earlier split layer
goes to the task it feeds most strongly in the next layer::

    g(n) = argmax_i  sum_{m in next layer, g(m) = i} |w_mn|

(ties go to the lowest task index). The split covers the layers from the lowest spatial layer up
to the output (for the paper's (3, 4, 5) exactly the spatial layers).

A net without modules can make the greedy split collapse: when one task's output weights are a
little stronger everywhere, every neuron of a layer goes to it and the other task's subnetwork
loses the layer whole, so its accuracy falls whatever the net's structure. Two splits that
cannot collapse read beside it (``SPLITS``):

- ``balanced``: in each layer, from the output backward, each task takes an equal share of the
  live neurons (the remainder to the lowest tasks), the ones that send it the most relative to
  the others: an assignment of maximal total strength under those sizes (scipy's
  ``linear_sum_assignment`` on each task's columns repeated by its share), on strengths
  normalised per task so that one task's larger weights do not take every neuron. ``shares=``
  gives other proportions (e.g. the greedy split's sizes of another net).
- ``mean``: the greedy rule on strengths averaged over each task's live neurons of the next
  layer instead of summed, so a task with fewer neurons there is not outvoted by count.

Evaluating task i disables every other task's neurons in the split layers, in one of two ways
(``DISABLE``): ``outputs`` zeroes their outputs after the activation, so their bias is silenced
too; ``inputs`` zeroes their incoming weights, as the paper's authors' code does, so a sigmoid
unit still sends sigma(b) onward.

Dead neurons. A neuron whose outgoing sum of |w| to the live neurons of the next layer is below
``dead_tol`` times the 90th percentile of that sum over its layer belongs to no task (group -1):
the transport cost drives whole neurons to near-zero output weights, and the argmax over such
strengths would hand them to a task at random (or, at exactly zero, to task 0). They feed no
task's split (the layer before sees no pull from them), are disabled in every task's
subnetwork (their outgoing weights are negligible), and are left out of the modularity
measures (``modularity.py``). The percentile, not the mean, is the yardstick because in wide
spatial nets most neurons of a layer can be dead, which drags the mean down to their level.
NOTE: 0.1 separates them in the nets we trained: with Adam at a constant lr a weight that the
L1 term has killed still jitters at about the lr, so a dead neuron keeps 1-3 % of a live
neuron's outgoing sum (4x-wide concat net, layer 3: 420 neurons at 0.03-0.07 of the mean, the
86 live ones above 1.5); at initialisation no neuron is below a quarter of the 90th percentile.
"""
from __future__ import annotations

from typing import Sequence

import torch


DEAD_TOL = 0.1
SPLITS = ("greedy", "balanced", "mean")
DISABLE = ("outputs", "inputs")


def _check_groups(weights, output_groups, num_tasks) -> torch.Tensor:
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
    groups = output_groups.long()
    if groups.dim() != 1 or len(groups) != weights[-1].shape[0]:
        raise ValueError(f"output_groups must have shape ({weights[-1].shape[0]},), got {tuple(groups.shape)}")
    if len(groups) and (groups.min() < 0 or groups.max() >= num_tasks):
        raise ValueError(f"output_groups must lie in 0..{num_tasks - 1}")
    return groups


def _strength(W: torch.Tensor, groups: torch.Tensor, num_tasks: int, mean: bool = False) -> torch.Tensor:
    """``[M, N_{l-1}]``: the summed (or, with ``mean``, averaged) |w| from each neuron to each
    task's live neurons of the next layer."""
    live = groups >= 0
    strength = torch.zeros(num_tasks, W.shape[1], dtype=W.dtype, device=W.device)
    strength.index_add_(0, groups[live], W.detach()[live].abs())
    if mean:
        count = torch.bincount(groups[live], minlength=num_tasks).clamp(min=1).to(W.dtype)
        strength = strength / count[:, None]
    return strength


def _dead(total: torch.Tensor, dead_tol: float) -> torch.Tensor:
    if dead_tol <= 0 or not len(total):
        return torch.zeros_like(total, dtype=torch.bool)
    return total < dead_tol * torch.quantile(total.float(), 0.9).to(total.dtype)


def greedy_split(weights: Sequence[torch.Tensor], output_groups: torch.Tensor,
                 num_tasks: int, dead_tol: float = 0.0, mean: bool = False) -> list[torch.Tensor]:
    """Task of each neuron, per layer, from the last layer backward.

    Args:
        weights: ``[W_a, ..., W_K]`` as ``nn.Linear.weight`` of consecutive layers, the last one
            producing the outputs. ``W_l`` has shape ``(N_l, N_{l-1})``.
        output_groups: ``(N_K,)`` task of each output neuron, in ``0..num_tasks-1``.
        num_tasks: M.
        dead_tol: a neuron whose outgoing sum of |w| to live neurons is below ``dead_tol`` times
            the layer's 90th percentile of it gets group -1 (dead); 0 (the paper's rule) marks none.
        mean: compare each task's strength averaged over its live neurons of the next layer
            (the ``mean`` split) instead of summed (the paper's).

    Returns:
        ``[g_{a}, ..., g_K]``: one ``(N_l,)`` long tensor per layer produced by ``weights``
        (the input of ``W_a`` is not split), with -1 for dead neurons.
    """
    groups = _check_groups(weights, output_groups, num_tasks)
    assignments = [groups]
    for W in reversed(weights[1:]):
        groups = groups.to(W.device)
        summed = _strength(W, groups, num_tasks)
        dead = _dead(summed.sum(dim=0), dead_tol)
        groups = (_strength(W, groups, num_tasks, mean=True) if mean else summed).argmax(dim=0)
        groups[dead] = -1
        assignments.insert(0, groups)
    return assignments


def _equal_shares(n: int, num_tasks: int) -> list[int]:
    return [n // num_tasks + (t < n % num_tasks) for t in range(num_tasks)]


def balanced_split(weights: Sequence[torch.Tensor], output_groups: torch.Tensor, num_tasks: int,
                   dead_tol: float = 0.0, shares: Sequence[Sequence[float]] | None = None) -> list[torch.Tensor]:
    """Like :func:`greedy_split`, but each layer's live neurons are shared out in fixed
    proportions: equal, or ``shares[k]`` (one weight per task) for the k-th split layer below the
    output (``shares[0]`` is the layer feeding the output). Within the sizes, the assignment
    maximises the total strength, each task's strengths divided by their mean over the layer.
    Dead neurons (``dead_tol``, as in the greedy split) stay -1 and take no share."""
    from scipy.optimize import linear_sum_assignment

    groups = _check_groups(weights, output_groups, num_tasks)
    n_split = len(weights) - 1
    if shares is not None and (len(shares) != n_split or any(len(s) != num_tasks or min(s) < 0 or sum(s) <= 0
                                                             for s in shares)):
        raise ValueError(f"shares must give {num_tasks} non-negative proportions (not all 0) for each of the "
                         f"{n_split} split layers below the output, got {shares!r}")
    assignments = [groups]
    for k, W in enumerate(reversed(weights[1:])):
        groups = groups.to(W.device)
        strength = _strength(W, groups, num_tasks)
        dead = _dead(strength.sum(dim=0), dead_tol)
        live = (~dead).nonzero().squeeze(1)
        s = strength[:, live].double().cpu()
        s = s / s.mean(dim=1, keepdim=True).clamp(min=torch.finfo(s.dtype).tiny)
        n = len(live)
        if shares is None:
            sizes = _equal_shares(n, num_tasks)
        else:
            w = torch.tensor(shares[k], dtype=torch.float64)
            sizes = (w / w.sum() * n).floor().long().tolist()
            for t in torch.argsort(-(w / w.sum() * n - torch.tensor(sizes)))[:n - sum(sizes)].tolist():
                sizes[t] += 1
        slots = torch.repeat_interleave(torch.arange(num_tasks), torch.tensor(sizes, dtype=torch.long))
        rows, cols = linear_sum_assignment(s.t()[:, slots].numpy(), maximize=True)
        out = torch.full((W.shape[1],), -1, dtype=torch.long)
        out[live[torch.as_tensor(rows)].cpu()] = slots[torch.as_tensor(cols)]
        groups = out.to(W.device)
        assignments.insert(0, groups)
    return assignments


def model_split(model, layers: Sequence[int], num_tasks: int = 2,
                dead_tol: float = DEAD_TOL, split: str = "greedy", shares=None) -> dict[int, torch.Tensor]:
    """``{layer: (N_l,) task}`` for ``layers`` (a contiguous range ending at the output), -1 for
    dead neurons; the output layer is divided into ``num_tasks`` equal heads. ``split``: one of
    ``SPLITS`` (``shares`` for ``balanced``, see :func:`balanced_split`)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    layers = list(layers)
    if layers != list(range(layers[0], model.num_layers + 1)):
        raise ValueError(f"split layers must be a contiguous range ending at the output layer "
                         f"{model.num_layers}, got {layers}")
    n_out = model.sizes[-1]
    if n_out % num_tasks:
        raise ValueError(f"{n_out} outputs cannot be divided into {num_tasks} equal heads")
    heads = torch.arange(n_out, device=model.layer(layers[-1]).weight.device) // (n_out // num_tasks)
    weights = [model.layer(l).weight for l in layers]
    if split == "balanced":
        g = balanced_split(weights, heads, num_tasks, dead_tol, shares)
    else:
        g = greedy_split(weights, heads, num_tasks, dead_tol, mean=split == "mean")
    return dict(zip(layers, g))


def task_masks(assignment: dict[int, torch.Tensor], task: int) -> dict[int, torch.Tensor]:
    """Masks that keep ``task``'s neurons (1) and disable every other task's and the dead (0)."""
    return {l: (g == task).float() for l, g in assignment.items()}
