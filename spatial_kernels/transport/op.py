"""The transport cost as a PyTorch operator, its autograd, and the public function.

``torch.ops.spatial_kernels.transport`` is registered with ``torch.library.custom_op``, so that
``torch.compile(fullgraph=True)`` traces through it (FakeTensor shapes from ``register_fake``) and
``torch.library.opcheck`` checks it. ``backend`` (an argument, so that the traced graph keeps it)
picks the kernels: ``numba_cpu`` on CPU tensors, ``triton_gpu`` on CUDA tensors (or on CPU tensors
under ``TRITON_INTERPRET=1``). ``backend="reference"`` stays plain autograd and never comes here.

A call computes the value and the gradients asked for in one pass, already times ``scale``; the
backward scales the saved gradients by the upstream gradient. W's gradient can instead be
deferred to the end of the backward and added into ``W.grad`` in the kernel's pass
(``_accumulate.py``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .. import _accumulate
from .._backends import resolve_backend
from .._op_common import (
    needs_grad,
    or_empty,
    raise_bad_argument,
    refuse_double_backward,
    upstream,
    upstream_all,
)
from .._validate import BadArgument, check_scale, check_transport_args
from .reference import transport_cost_reference


def kernels(backend: str):
    """The module of ``backend``'s transport kernels and launchers."""
    if backend == "numba":
        from . import numba_cpu
        return numba_cpu
    if backend == "triton":
        from . import triton_gpu
        return triton_gpu
    raise ValueError(f"backend {backend!r} has no fused transport kernel; use 'numba' or 'triton'")


@torch.library.custom_op("spatial_kernels::transport", mutates_args=(), device_types=("cpu", "cuda"))
def transport(W: Tensor, p_in: Tensor, p_out: Tensor, scale: float, backend: str,
              need_W: bool, need_p_in: bool, need_p_out: bool, defer_W: bool = False, groups: int = 1,
              W_into_grad: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(scale * T, scale * dT/dW, scale * dT/dp_in, scale * dT/dp_out)``, empty where not needed.
    W is ``(len(p_out), len(p_in) / groups, *kernel)``: row i reads the input neurons of its group.

    ``defer_W``: dT/dW is not made here (``need_W`` is then False) but in the backward, in one
    pass over W that reads the upstream gradient on the device: added into ``W.grad`` itself,
    after the task gradient has reached it (``W_into_grad``, ``_accumulate.deferred_W_grad``), or
    returned to autograd (``transport_dW``)."""
    impl = kernels(backend)
    if not (need_W or need_p_in or need_p_out):
        value = impl.transport_value(W, p_in, p_out, groups=groups, scale=scale)
        return value, W.new_empty(0), p_in.new_empty(0), p_out.new_empty(0)
    value, dW, g_in, g_out = impl.transport_fwd(W, p_in, p_out, needs_grad=(need_W, need_p_in, need_p_out),
                                                scale=scale, groups=groups)
    return value, or_empty(dW, W), or_empty(g_in, p_in), or_empty(g_out, p_out)


@transport.register_fake
def _(W, p_in, p_out, scale, backend, need_W, need_p_in, need_p_out, defer_W=False, groups=1, W_into_grad=True):
    # dW: numba writes a contiguous array, triton one in W's memory layout (empty_like)
    dW = (torch.empty_like(W) if backend == "triton" else W.new_empty(W.shape)) if need_W else W.new_empty(0)
    return (p_in.new_empty(()), dW, p_in.new_empty(p_in.shape) if need_p_in else p_in.new_empty(0),
            p_out.new_empty(p_out.shape) if need_p_out else p_out.new_empty(0))


@torch.library.custom_op("spatial_kernels::transport_dW", mutates_args=(), device_types=("cpu", "cuda"))
def transport_dW(W: Tensor, p_in: Tensor, p_out: Tensor, scale: float, upstream: Tensor, backend: str,
                 groups: int = 1) -> Tensor:
    """``upstream * scale * dT/dW`` as a new tensor in W's layout, in one pass over W: W's part of
    the gradient made in the backward, for autograd to sum."""
    return kernels(backend).transport_accumulate_dW(W, p_in, p_out, scale, upstream, None, groups=groups)


@transport_dW.register_fake
def _(W, p_in, p_out, scale, upstream, backend, groups=1):
    # triton keeps a Linear weight's layout (empty_like) and makes a conv weight's contiguous
    return torch.empty_like(W) if backend == "triton" and W.dim() == 2 else W.new_empty(W.shape)


def _setup(ctx, inputs, output):
    W, p_in, p_out, scale, backend = inputs[:5]
    ctx.defer = len(inputs) > 8 and bool(inputs[8])
    ctx.into_grad = len(inputs) <= 10 or bool(inputs[10])
    ctx.backend, ctx.scale, ctx.kernel_args = backend, scale, {"groups": inputs[9] if len(inputs) > 9 else 1}
    if ctx.defer:  # W's part of the gradient is made in backward: keep what it needs
        ctx.save_for_backward(*output[1:], W, p_in, p_out)
        # the leaf itself, whose .grad the backward adds into: a saved tensor can come back as
        # another tensor (saved-tensor hooks, save_on_cpu, non-reentrant checkpointing)
        ctx.W_leaf, ctx.W_version = W, W._version
    else:
        ctx.save_for_backward(*output[1:])
    ctx.mark_non_differentiable(*output[1:])
    # The gradient outputs never receive a gradient: without this, autograd would fill a
    # W-sized zero tensor for dW on every backward (measured: 2 fresh 268 MB fills at 8192^2).
    ctx.set_materialize_grads(False)


def _backward(ctx, grad, _dW, _g_in, _g_out):
    if grad is None:  # grads are not materialised (see _setup)
        return None, None, None, None, None, None, None, None, None, None, None
    refuse_double_backward(ctx.backend)
    need = ctx.needs_input_grad
    if ctx.defer:
        dW, g_in, g_out, W, p_in, p_out = ctx.saved_tensors
        if not need[0]:
            grad_W = None
        elif ctx.into_grad:
            grad_W = _accumulate.deferred_W_grad(ctx, kernels(ctx.backend), W, p_in, p_out, grad)
        else:
            grad_W = transport_dW(W, p_in, p_out, ctx.scale, grad, ctx.backend, ctx.kernel_args["groups"])
    else:
        dW, g_in, g_out = ctx.saved_tensors
        grad_W = upstream(dW, grad, ctx.backend) if need[0] else None
    g_in, g_out = upstream_all(ctx.backend, grad, g_in if need[1] else None, g_out if need[2] else None)
    return grad_W, g_in, g_out, None, None, None, None, None, None, None, None


transport.register_autograd(_backward, setup_context=_setup)


def fused_transport_cost(W: Tensor, p_in: Tensor, p_out: Tensor, *, scale: float = 1.0, backend: str = "auto",
                         groups: int = 1, transposed: bool = False) -> Tensor:
    """``scale * sum_ij |W[i, j]| * ||p_out[i] - p_in[j]||_2`` as a 0-dim tensor, with gradients
    (for a conv weight ``|W[i, j]|`` is the sum over the taps).

    Args:
        W: ``(n_out, n_in)`` weights, as ``nn.Linear.weight``, or a convolution's weight
            ``(n_out, n_in / groups, *kernel)``, whose pair ``(i, j)`` weighs the sum of
            ``|W[i, j, ...]|`` over the kernel taps; ``dW`` has W's shape and layout.
        p_in: ``(n_in, D)`` positions of the layer feeding W, D in 1..3.
        p_out: ``(n_out, D)`` positions of the layer W feeds.
        scale: a constant weight on the cost (a real number). The fused backends store ``dW``
            already weighted, so ``fused_transport_cost(W, p_in, p_out, scale=c)`` added to a loss
            costs one W-sized pass less in backward than ``c * fused_transport_cost(W, p_in, p_out)``
            (the same value and gradients otherwise).
        backend: ``"auto"``, ``"reference"``, ``"numba"`` or ``"triton"``.
        groups: a grouped convolution's groups (``nn.Conv2d(groups=G)``; depthwise: G = channels):
            output i reads the ``n_in / G`` inputs from ``(i // (n_out / G)) * n_in / G`` on.
        transposed: W's first dimension indexes the inputs: ``(n_in, n_out)`` (transformers'
            ``Conv1D``) or ``(n_in, n_out / groups, *kernel)`` (``nn.ConvTranspose1d/2d``); W is
            read as it lies, not copied, and its gradient keeps its layout.

    A raw sum: any normalisation (the paper's 1/N_l) belongs to the caller. No
    ``(n_out, n_in)`` temporary is made by the fused backends; ``dW`` is their only W-sized
    output. The fused backends run as the operator ``torch.ops.spatial_kernels.transport``, so
    ``torch.compile(fullgraph=True)`` traces through this function.
    """
    bad = check_transport_args(W, p_in, p_out, groups, transposed) or check_scale(scale)
    name = bad or resolve_backend(backend, W.device, p_in.dtype, W.dtype)
    if isinstance(name, BadArgument):
        return raise_bad_argument(name)
    scale = float(scale)
    # the distance is symmetric: a weight stored (inputs, outputs) is the transport with the
    # sheets' roles swapped, its rows the inputs
    rows, cols = (p_in, p_out) if transposed else (p_out, p_in)
    if name == "reference" or W.numel() == 0:
        cost = transport_cost_reference(W, cols, rows, groups)
        return cost if scale == 1.0 else cost * scale
    need_W = needs_grad(W)
    # the fast path: W's gradient added into W.grad in the kernel's pass (_accumulate.accumulate_path).
    # Elsewhere triton makes it in the backward too (one pass over W, where a dW stored in the
    # forward and multiplied by the upstream gradient in the backward took three); numba stores
    # it in the forward's pass, which reads W anyway, and skips the multiply when upstream is 1.
    into_grad = need_W and _accumulate.accumulate_path(W) is None
    defer = into_grad or (need_W and name == "triton")
    value, _, _, _ = transport(W, cols, rows, scale, name, need_W and not defer, needs_grad(cols), needs_grad(rows),
                               defer, groups, into_grad)
    return value
