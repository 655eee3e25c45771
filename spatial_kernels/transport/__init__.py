"""Transport cost ``T = sum_ij |W_ij| * ||p_out[i] - p_in[j]||`` and its public entry point."""
from __future__ import annotations

import importlib

import torch

from .._autograd import fused_call
from .._backends import resolve_backend
from .._validate import check_scale, check_transport_args
from .reference import transport_cost_reference

_FUSED = {"numba": ".numba_cpu", "triton": ".triton_gpu"}


def fused_transport_cost(W: torch.Tensor, p_in: torch.Tensor, p_out: torch.Tensor, *,
                         scale: float = 1.0, backend: str = "auto") -> torch.Tensor:
    """``scale * sum_ij |W[i, j]| * ||p_out[i] - p_in[j]||_2`` as a 0-dim tensor, with gradients.

    Args:
        W: ``(n_out, n_in)`` weights, as ``nn.Linear.weight``.
        p_in: ``(n_in, D)`` positions of the layer feeding W, D in 1..3.
        p_out: ``(n_out, D)`` positions of the layer W feeds.
        scale: a constant weight on the cost (a real number). The fused backends store ``dW``
            already weighted, so ``fused_transport_cost(W, p_in, p_out, scale=c)`` added to a loss
            costs one W-sized pass less in backward than ``c * fused_transport_cost(W, p_in, p_out)``
            (the same value and gradients otherwise).
        backend: ``"auto"``, ``"reference"``, ``"numba"`` or ``"triton"``.

    A raw sum: any normalisation (the paper's 1/N_l) belongs to the caller. No
    ``(n_out, n_in)`` temporary is made by the fused backends; ``dW`` is their only W-sized
    output.
    """
    check_transport_args(W, p_in, p_out)
    scale = check_scale(scale)
    name = resolve_backend(backend, W.device, p_in.dtype, W.dtype)
    if name == "reference" or W.numel() == 0:
        cost = transport_cost_reference(W, p_in, p_out)
        return cost if scale == 1.0 else cost * scale
    impl = importlib.import_module(_FUSED[name], __name__)
    return fused_call(impl.transport_fwd, impl.transport_value, W, p_in, p_out, scale=scale)
