"""The paper's greedy backward split, the masks it gives, and split-vs-full evaluation.

The output neurons belong to their head; going backward, each neuron n of an earlier split layer
goes to the task it feeds most strongly in the next layer::

    g(n) = argmax_i  sum_{m in next layer, g(m) = i} |w_mn|

(ties go to the lowest task index). The split covers the layers from the lowest spatial layer up
to the output (for the paper's (3, 4, 5) exactly the spatial layers). Evaluating task i disables
every other task's neurons in those layers: their outputs are zeroed after the activation, so
their bias is silenced too.

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


def greedy_split(weights: Sequence[torch.Tensor], output_groups: torch.Tensor,
                 num_tasks: int, dead_tol: float = 0.0) -> list[torch.Tensor]:
    """Task of each neuron, per layer, from the last layer backward.

    Args:
        weights: ``[W_a, ..., W_K]`` as ``nn.Linear.weight`` of consecutive layers, the last one
            producing the outputs. ``W_l`` has shape ``(N_l, N_{l-1})``.
        output_groups: ``(N_K,)`` task of each output neuron, in ``0..num_tasks-1``.
        num_tasks: M.
        dead_tol: a neuron whose outgoing sum of |w| to live neurons is below ``dead_tol`` times
            the layer's 90th percentile of it gets group -1 (dead); 0 (the paper's rule) marks none.

    Returns:
        ``[g_{a}, ..., g_K]``: one ``(N_l,)`` long tensor per layer produced by ``weights``
        (the input of ``W_a`` is not split), with -1 for dead neurons.
    """
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
    groups = output_groups.long()
    if groups.dim() != 1 or len(groups) != weights[-1].shape[0]:
        raise ValueError(f"output_groups must have shape ({weights[-1].shape[0]},), got {tuple(groups.shape)}")
    if len(groups) and (groups.min() < 0 or groups.max() >= num_tasks):
        raise ValueError(f"output_groups must lie in 0..{num_tasks - 1}")
    assignments = [groups]
    for W in reversed(weights[1:]):
        groups = groups.to(W.device)
        live = groups >= 0
        strength = torch.zeros(num_tasks, W.shape[1], dtype=W.dtype, device=W.device)
        strength.index_add_(0, groups[live], W.detach()[live].abs())  # [M, N_{l-1}]
        total = strength.sum(dim=0)
        groups = strength.argmax(dim=0)
        if dead_tol > 0 and len(total):
            groups[total < dead_tol * torch.quantile(total.float(), 0.9).to(total.dtype)] = -1
        assignments.insert(0, groups)
    return assignments


def model_split(model, layers: Sequence[int], num_tasks: int = 2,
                dead_tol: float = DEAD_TOL) -> dict[int, torch.Tensor]:
    """``{layer: (N_l,) task}`` for ``layers`` (a contiguous range ending at the output), -1 for
    dead neurons; the output layer is divided into ``num_tasks`` equal heads."""
    layers = list(layers)
    if layers != list(range(layers[0], model.num_layers + 1)):
        raise ValueError(f"split layers must be a contiguous range ending at the output layer "
                         f"{model.num_layers}, got {layers}")
    n_out = model.sizes[-1]
    if n_out % num_tasks:
        raise ValueError(f"{n_out} outputs cannot be divided into {num_tasks} equal heads")
    heads = torch.arange(n_out, device=model.layer(layers[-1]).weight.device) // (n_out // num_tasks)
    g = greedy_split([model.layer(l).weight for l in layers], heads, num_tasks, dead_tol)
    return dict(zip(layers, g))


def task_masks(assignment: dict[int, torch.Tensor], task: int) -> dict[int, torch.Tensor]:
    """Masks that keep ``task``'s neurons (1) and disable every other task's and the dead (0)."""
    return {l: (g == task).float() for l, g in assignment.items()}
