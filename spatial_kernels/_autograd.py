"""The one autograd Function behind every fused backend.

A fused backend computes the cost's value and the gradients of every input that needs one in
a single pass in forward (as fused cross-entropy kernels do); backward only scales those saved
gradients by the upstream gradient. When nothing needs a gradient the value-only kernel runs
and no Function is recorded.

A constant weight on the cost (``scale``) goes into the forward kernels, which store the
gradients already weighted: a cost added to a loss with a weight then reaches backward with a
unit upstream gradient and costs no W-sized pass there.
"""
from __future__ import annotations

from typing import Callable

import torch


class _FusedScalarCost(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fwd: Callable, scale: float, *inputs: torch.Tensor) -> torch.Tensor:
        value, *grads = fwd(*inputs, needs_grad=tuple(ctx.needs_input_grad[2:]), scale=scale)
        ctx.save_for_backward(*grads)
        return value

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grads = ctx.saved_tensors
        # The gradients are ours (no input aliases them), but scaling them in place would
        # corrupt a second backward through a retained graph; a unit upstream gradient, the
        # common case of a cost added to a loss, needs no W-sized copy at all.
        if bool(grad_out == 1):
            return (None, None, *grads)
        return (None, None, *(None if g is None else g * grad_out.to(g.dtype) for g in grads))


def fused_call(fwd: Callable, value_fwd: Callable, *inputs: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``scale`` times the cost, with gradients.

    Runs ``fwd(*inputs, needs_grad=..., scale=scale) -> (scale * value, *(scale * grads))``
    under autograd, or ``scale * value_fwd(*inputs)`` alone when no input needs a gradient."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return _FusedScalarCost.apply(fwd, scale, *inputs)
    value = value_fwd(*inputs)
    return value if scale == 1.0 else value * scale
