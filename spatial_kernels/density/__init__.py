"""Density cost ``V = sum_ij exp(-||p[i] - p[j]||)`` and its public entry point."""
from __future__ import annotations

import torch

from .. import _ops
from .._backends import resolve_backend
from .._validate import BadArgument, check_density_args, check_scale
from .reference import density_cost_reference


def fused_density_cost(p: torch.Tensor, *, scale: float = 1.0, backend: str = "auto") -> torch.Tensor:
    """``scale * sum_ij exp(-||p[i] - p[j]||_2)`` over all ordered pairs (i = j included), 0-dim.

    Args:
        p: ``(N, D)`` positions, D in 1..3.
        scale: a constant weight on the cost (a real number), applied to the value and the
            gradient in forward, as in :func:`fused_transport_cost`.
        backend: ``"auto"``, ``"reference"``, ``"numba"`` or ``"triton"``.

    A raw sum: the paper's 1/N_l^2 belongs to the caller. The fused backends keep O(N) extra
    memory: no ``(N, N)`` temporary. They run as the operator ``torch.ops.spatial_kernels.density``.
    """
    bad = check_density_args(p) or check_scale(scale)
    name = bad or resolve_backend(backend, p.device, p.dtype)
    if isinstance(name, BadArgument):
        return _ops.raise_bad_argument(name)
    scale = float(scale)
    if name == "reference" or p.shape[0] == 0:
        cost = density_cost_reference(p)
        return cost if scale == 1.0 else cost * scale
    value, _ = _ops.density(p, scale, name, _ops.needs_grad(p))
    return value
