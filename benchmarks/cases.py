"""Benchmark cases shared by the pytest-benchmark modules and the report scripts.

A case is one forward+backward of one cost on one backend at one size; ``make_case`` returns a
closure that runs it (and drops the gradients it made, so that memory measured around a call
starts clean) and the number of pairs it visits.
"""
from __future__ import annotations

from typing import Callable

import torch

from spatial_kernels import fused_density_cost, fused_transport_cost


def _keops_density(p: torch.Tensor) -> torch.Tensor:
    from pykeops.torch import LazyTensor

    x, y = LazyTensor(p[:, None, :]), LazyTensor(p[None, :, :])
    return (-(((x - y) ** 2).sum(-1).sqrt())).exp().sum(1).sum()


def make_case(cost: str, backend: str, n: int, device: str = "cpu", D: int = 2,
              w_dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[Callable[[], None], int]:
    """``cost`` in {"transport", "density", "depthwise"}; ``backend`` a spatial_kernels backend or
    "pykeops". Transport is square, ``n x n``; density has ``n`` neurons (``n * n`` ordered pairs);
    depthwise is a 7x7 depthwise conv of ``n`` channels (``49 n`` weights, counted as the pairs)."""
    g = torch.Generator().manual_seed(seed)
    if cost == "density":
        p = torch.randn(n, D, generator=g).to(device).requires_grad_(True)
        fn = _keops_density if backend == "pykeops" else (lambda t: fused_density_cost(t, backend=backend))

        def run():
            fn(p).backward()
            p.grad = None

        return run, n * n
    if cost == "transport":
        if backend == "pykeops":
            raise ValueError("KeOps cannot express a dense W: no pykeops transport case")
        W = torch.randn(n, n, generator=g).to(device=device, dtype=w_dtype).requires_grad_(True)
        p_in = torch.randn(n, D, generator=g).to(device).requires_grad_(True)
        p_out = torch.randn(n, D, generator=g).to(device).requires_grad_(True)

        def run():
            fused_transport_cost(W, p_in, p_out, backend=backend).backward()
            W.grad = p_in.grad = p_out.grad = None

        return run, n * n
    if cost == "depthwise":  # a depthwise 7x7 conv's weight, (n, 1, 7, 7), groups = n: ConvNeXt's
        W = torch.randn(n, 1, 7, 7, generator=g).to(device=device, dtype=w_dtype).requires_grad_(True)
        p_in = torch.randn(n, D, generator=g).to(device).requires_grad_(True)
        p_out = torch.randn(n, D, generator=g).to(device).requires_grad_(True)

        def run():
            fused_transport_cost(W, p_in, p_out, groups=n, backend=backend).backward()
            W.grad = p_in.grad = p_out.grad = None

        return run, n * 49
    raise ValueError(f"cost must be 'transport', 'density' or 'depthwise', got {cost!r}")
