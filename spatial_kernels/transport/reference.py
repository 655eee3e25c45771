"""Naive PyTorch transport cost: ground truth for tests and the baseline for benchmarks.

Materialises the (n_out, n_in, D) differences and the (n_out, n_in) distances; autograd does
the rest. ``torch.linalg.vector_norm`` has a zero subgradient at zero, which is the
zero-distance convention of every backend.
"""
import torch


def transport_cost_reference(W: torch.Tensor, p_in: torch.Tensor, p_out: torch.Tensor) -> torch.Tensor:
    """``sum_ij a_ij d_ij`` with ``a_ij = |W_ij|`` for a Linear weight ``(n_out, n_in)`` and the
    sum of ``|W_ij.|`` over the kernel taps for a conv weight ``(n_out, n_in, *kernel)``."""
    dist = torch.linalg.vector_norm(p_out[:, None, :] - p_in[None, :, :], dim=-1)  # [n_out, n_in]
    a = W.abs().to(dist.dtype)
    if W.dim() > 2:
        a = a.flatten(2).sum(-1)  # [n_out, n_in]
    return (a * dist).sum()
