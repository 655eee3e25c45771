"""The paper's greedy backward split, the masks it gives, and split-vs-full evaluation.

The output neurons belong to their head; going backward, each neuron n of an earlier split layer
goes to the task it feeds most strongly in the next layer::

    g(n) = argmax_i  sum_{m in next layer, g(m) = i} |w_mn|

(ties go to the lowest task index). The split covers the layers from the lowest spatial layer up
to the output (for the paper's (3, 4, 5) exactly the spatial layers). Evaluating task i disables
every other task's neurons in those layers: their outputs are zeroed after the activation, so
their bias is silenced too.
"""
from __future__ import annotations

from typing import Sequence

import torch


def greedy_split(weights: Sequence[torch.Tensor], output_groups: torch.Tensor,
                 num_tasks: int) -> list[torch.Tensor]:
    """Task of each neuron, per layer, from the last layer backward.

    Args:
        weights: ``[W_a, ..., W_K]`` as ``nn.Linear.weight`` of consecutive layers, the last one
            producing the outputs. ``W_l`` has shape ``(N_l, N_{l-1})``.
        output_groups: ``(N_K,)`` task of each output neuron, in ``0..num_tasks-1``.
        num_tasks: M.

    Returns:
        ``[g_{a}, ..., g_K]``: one ``(N_l,)`` long tensor per layer produced by ``weights``
        (the input of ``W_a`` is not split).
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
        strength = torch.zeros(num_tasks, W.shape[1], dtype=W.dtype, device=W.device)
        strength.index_add_(0, groups.to(W.device), W.detach().abs())  # [M, N_{l-1}]
        groups = strength.argmax(dim=0)
        assignments.insert(0, groups)
    return assignments


def split_layers(model) -> list[int]:
    """Layers the split covers: lowest spatial layer .. output (all layers of a regular net's
    default split are chosen by the caller instead)."""
    return list(range(min(model.spatial_layers), model.num_layers + 1))


def model_split(model, layers: Sequence[int], num_tasks: int = 2) -> dict[int, torch.Tensor]:
    """``{layer: (N_l,) task}`` for ``layers`` (a contiguous range ending at the output); the
    output layer is divided into ``num_tasks`` equal heads."""
    layers = list(layers)
    if layers != list(range(layers[0], model.num_layers + 1)):
        raise ValueError(f"split layers must be a contiguous range ending at the output layer "
                         f"{model.num_layers}, got {layers}")
    n_out = model.sizes[-1]
    if n_out % num_tasks:
        raise ValueError(f"{n_out} outputs cannot be divided into {num_tasks} equal heads")
    heads = torch.arange(n_out, device=model.layer(layers[-1]).weight.device) // (n_out // num_tasks)
    g = greedy_split([model.layer(l).weight for l in layers], heads, num_tasks)
    return dict(zip(layers, g))


def task_masks(assignment: dict[int, torch.Tensor], task: int) -> dict[int, torch.Tensor]:
    """Masks that keep ``task``'s neurons (1) and disable every other task's (0)."""
    return {l: (g == task).float() for l, g in assignment.items()}
