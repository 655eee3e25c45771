"""Naive PyTorch density cost: ground truth for tests and the baseline for benchmarks.

Materialises the (N, N, D) differences and the (N, N) distances; autograd does the rest.
"""
import torch


def density_cost_reference(p: torch.Tensor) -> torch.Tensor:
    dist = torch.linalg.vector_norm(p[:, None, :] - p[None, :, :], dim=-1)  # [N, N]
    return torch.exp(-dist).sum()
