"""The one autograd Function behind every fused backend.

A fused backend computes the cost's value and the gradients of every input that needs one in
a single pass in forward (as fused cross-entropy kernels do); backward only scales those saved
gradients by the upstream gradient. When nothing needs a gradient the value-only kernel runs
and no Function is recorded.
"""
from __future__ import annotations

from typing import Callable

import torch


class _FusedScalarCost(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fwd: Callable, *inputs: torch.Tensor) -> torch.Tensor:
        value, *grads = fwd(*inputs, needs_grad=tuple(ctx.needs_input_grad[1:]))
        ctx.save_for_backward(*grads)
        return value

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grads = ctx.saved_tensors
        # The gradients are ours (no input aliases them), but scaling them in place would
        # corrupt a second backward through a retained graph; a unit upstream gradient, the
        # common case of a cost added to a loss, needs no W-sized copy at all.
        if bool(grad_out == 1):
            return (None, *grads)
        return (None, *(None if g is None else g * grad_out.to(g.dtype) for g in grads))


def fused_call(fwd: Callable, value_fwd: Callable, *inputs: torch.Tensor) -> torch.Tensor:
    """Runs ``fwd(*inputs, needs_grad=...) -> (value, *grads)`` under autograd, or
    ``value_fwd(*inputs)`` alone when no input needs a gradient."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return _FusedScalarCost.apply(fwd, *inputs)
    return value_fwd(*inputs)
