"""Naive PyTorch density cost: ground truth for tests and the baseline for benchmarks.

Materialises the (N, N, D) differences and the (N, N) distances; autograd does the rest. The
diagonal (each neuron with itself, exp(0) = 1) is taken as the constant 1 rather than through
the norm: the norm's second derivative at 0 is NaN, so differentiating twice (a
gradient penalty, ``create_graph=True``) would poison every entry of the Hessian-vector product.
Distinct neurons at exactly one position keep the norm's zero subgradient at 0, the
zero-distance convention of every backend.
"""
import torch


def density_cost_reference(p: torch.Tensor) -> torch.Tensor:
    sq = (p[:, None, :] - p[None, :, :]).square().sum(-1)  # [N, N]
    apart = sq > 0  # False on the diagonal and for distinct neurons at one position: exp(-0) = 1
    # sqrt only where it is twice differentiable; elsewhere a placeholder that where() never reads
    dist = torch.sqrt(torch.where(apart, sq, torch.ones_like(sq)))
    return torch.where(apart, torch.exp(-dist), torch.ones_like(dist)).sum()
