"""Transport cost ``T = sum_ij |W_ij| * ||p_out[i] - p_in[j]||`` and its public entry point."""
from __future__ import annotations

import torch

from .. import _ops
from .._backends import resolve_backend
from .._validate import BadArgument, check_scale, check_transport_args
from .reference import transport_cost_reference


def fused_transport_cost(W: torch.Tensor, p_in: torch.Tensor, p_out: torch.Tensor, *,
                         scale: float = 1.0, backend: str = "auto") -> torch.Tensor:
    """``scale * sum_ij |W[i, j]| * ||p_out[i] - p_in[j]||_2`` as a 0-dim tensor, with gradients
    (for a conv weight ``|W[i, j]|`` is the sum over the taps).

    Args:
        W: ``(n_out, n_in)`` weights, as ``nn.Linear.weight``, or a convolution's weight
            ``(n_out, n_in, *kernel)`` (groups = 1), whose pair ``(i, j)`` weighs the sum of
            ``|W[i, j, ...]|`` over the kernel taps; ``dW`` has W's shape.
        p_in: ``(n_in, D)`` positions of the layer feeding W, D in 1..3.
        p_out: ``(n_out, D)`` positions of the layer W feeds.
        scale: a constant weight on the cost (a real number). The fused backends store ``dW``
            already weighted, so ``fused_transport_cost(W, p_in, p_out, scale=c)`` added to a loss
            costs one W-sized pass less in backward than ``c * fused_transport_cost(W, p_in, p_out)``
            (the same value and gradients otherwise).
        backend: ``"auto"``, ``"reference"``, ``"numba"`` or ``"triton"``.

    A raw sum: any normalisation (the paper's 1/N_l) belongs to the caller. No
    ``(n_out, n_in)`` temporary is made by the fused backends; ``dW`` is their only W-sized
    output. The fused backends run as the operator ``torch.ops.spatial_kernels.transport``, so
    ``torch.compile(fullgraph=True)`` traces through this function.
    """
    bad = check_transport_args(W, p_in, p_out) or check_scale(scale)
    name = bad or resolve_backend(backend, W.device, p_in.dtype, W.dtype)
    if isinstance(name, BadArgument):
        return _ops.raise_bad_argument(name)
    scale = float(scale)
    if name == "reference" or W.numel() == 0:
        cost = transport_cost_reference(W, p_in, p_out)
        return cost if scale == 1.0 else cost * scale
    need_W = _ops.needs_grad(W)
    # the fast path: W's gradient added into W.grad in the kernel's pass (_ops.accumulate_path)
    defer = need_W and _ops.accumulate_path(W) is None
    value, _, _, _ = _ops.transport(W, p_in, p_out, scale, name, need_W and not defer, _ops.needs_grad(p_in),
                                    _ops.needs_grad(p_out), defer)
    return value
