"""Naive PyTorch transport cost: ground truth for tests and the baseline for benchmarks.

Materialises the differences and the distances of every connected pair; autograd does the rest.
``torch.linalg.vector_norm`` has a zero subgradient at zero, which is the zero-distance convention
of every backend. Groups the plain way: the weight's rows and the input neurons cut into
``groups`` blocks, each block's distances made on its own.
"""
import torch


def transport_cost_reference(W: torch.Tensor, p_in: torch.Tensor, p_out: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """``sum_ij a_ij d_ij`` with ``a_ij = |W_ij|`` for a Linear weight ``(n_out, n_in)`` and the
    sum of ``|W_ij.|`` over the kernel taps for a conv weight ``(n_out, n_in / groups, *kernel)``,
    whose row i reads the input neurons of its group, ``(i // (n_out / groups)) * n_in / groups``
    on."""
    a = W.abs()
    if W.dim() > 2:
        a = a.flatten(2).sum(-1)  # [n_out, n_in / groups]
    n_out, local = a.shape
    D = p_out.shape[1]
    po = p_out.reshape(groups, n_out // groups, 1, D)
    pi = p_in.reshape(groups, 1, local, D)
    dist = torch.linalg.vector_norm(po - pi, dim=-1)  # [groups, n_out / groups, n_in / groups]
    return (a.reshape(groups, n_out // groups, local).to(dist.dtype) * dist).sum()
