"""The density cost as a PyTorch operator, its autograd, and the public function.

``torch.ops.spatial_kernels.density``, registered as the transport is (``transport/op.py``): one
pass gives the value and, when asked, the gradient times ``scale``; the backward scales it by the
upstream gradient.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .._backends import resolve_backend
from .._op_common import needs_grad, raise_bad_argument, refuse_double_backward, upstream_all
from .._validate import BadArgument, check_density_args, check_scale
from .reference import density_cost_reference


def kernels(backend: str):
    """The module of ``backend``'s density kernels and launchers."""
    if backend == "numba":
        from . import numba_cpu
        return numba_cpu
    if backend == "triton":
        from . import triton_gpu
        return triton_gpu
    raise ValueError(f"backend {backend!r} has no fused density kernel; use 'numba' or 'triton'")


@torch.library.custom_op("spatial_kernels::density", mutates_args=(), device_types=("cpu", "cuda"))
def density(p: Tensor, scale: float, backend: str, need_p: bool) -> tuple[Tensor, Tensor]:
    """``(scale * V, scale * dV/dp)``, the gradient empty when not needed."""
    impl = kernels(backend)
    if not need_p:
        return impl.density_value(p, scale=scale), p.new_empty(0)
    return impl.density_fwd(p, needs_grad=(True,), scale=scale)


@density.register_fake
def _(p, scale, backend, need_p):
    return p.new_empty(()), p.new_empty(p.shape) if need_p else p.new_empty(0)


def _setup(ctx, inputs, output):
    ctx.backend = inputs[2]
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)


def _backward(ctx, grad, _g):
    if grad is None:
        return None, None, None, None
    refuse_double_backward(ctx.backend)
    (g,) = ctx.saved_tensors
    (g,) = upstream_all(ctx.backend, grad, g if ctx.needs_input_grad[0] else None)
    return g, None, None, None


density.register_autograd(_backward, setup_context=_setup)


def fused_density_cost(p: Tensor, *, scale: float = 1.0, backend: str = "auto") -> Tensor:
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
        return raise_bad_argument(name)
    scale = float(scale)
    if name == "reference" or p.shape[0] == 0:
        cost = density_cost_reference(p)
        return cost if scale == 1.0 else cost * scale
    value, _ = density(p, scale, name, needs_grad(p))
    return value
