"""The transport's fast path for W's gradient: added into ``W.grad`` in the kernel's one pass after
the whole backward, instead of made as a W-sized dW and summed by autograd.

:func:`accumulate_path` says, per call, why the fast path cannot run (None: it can); the present
path serves every case it names: W's gradient returned to autograd, which sums it (made in the
backward's one pass over W on triton, stored in the forward's pass on numba).
:func:`deferred_W_grad` is the backward's part: it queues the kernel's pass for the end of the
backward, or makes the gradient at once where autograd, not ``W.grad``, must receive it.
"""
from __future__ import annotations

import os

import torch
from torch import Tensor

from ._op_common import eager

_accumulate = os.environ.get("SPATIAL_KERNELS_ACCUMULATE", "1") not in ("0", "false", "False", "")


def set_accumulate(enabled: bool) -> None:
    """Turns the fast path for W's gradient on (the default) or off (the transport then always
    returns its dW to autograd, which sums it with the task gradient)."""
    global _accumulate
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    _accumulate = enabled


def accumulate_path(W: Tensor) -> str | None:
    """Why W's transport gradient cannot be added into ``W.grad`` in the kernel's pass (None: it
    can, the fast path runs). The present path (W's gradient returned to autograd, which sums
    it) serves every case named here."""
    if not _accumulate:
        return "turned off (set_accumulate(False) or SPATIAL_KERNELS_ACCUMULATE=0)"
    if not (torch.is_grad_enabled() and W.requires_grad):
        return "W needs no gradient"
    if not W.is_leaf:
        return "W is not a leaf tensor (a view or a computed weight has no .grad of its own)"
    if not eager():
        return "inside a traced graph (torch.compile, AOTAutograd, make_fx): autograd's order is the compiler's"
    if torch._C._autograd._top_saved_tensors_default_hooks(False) is not None:
        return ("saved-tensor hooks are active (saved_tensors_hooks, save_on_cpu, checkpointing): the backward's "
                "W is then a copy, not the parameter")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return ("torch.distributed is initialised: DDP's bucketed all-reduce must see the whole gradient when "
                "W's accumulation hook fires")
    if _has_hooks(W):
        return "W has gradient hooks, which must see the whole gradient"
    if W.is_cuda and torch.cuda.current_stream(W.device) != torch.cuda.default_stream(W.device):
        return "W is used on a side CUDA stream: the callback after backward runs on the caller's stream"
    return None


def deferred_W_grad(ctx, impl, W, p_in, p_out, grad) -> Tensor | None:
    """W's part of the gradient of a deferred transport (``defer_W``), ``impl`` its backend module.

    When this backward will run W's AccumulateGrad (``loss.backward()``), the part goes straight
    into ``W.grad`` in the kernel's one pass, once the whole backward is done: the engine then
    has summed every other gradient of W (the task's, and any earlier micro-batch's) there, so
    the kernel reads W and read-modify-writes W.grad, and no W-sized dW is made or summed. The
    callback runs before ``backward()`` returns, so an optimiser, a clip or a scaler that follows
    sees the whole gradient. Otherwise (``torch.autograd.grad``, or ``backward(inputs=...)``
    without W), the gradient is made here and returned, as in the present path."""
    leaf = ctx.W_leaf
    kw = ctx.kernel_args
    # a hook on W registered after the forward must see the whole gradient: return it to autograd
    if not _accumulates_into(leaf) or _has_hooks(leaf):
        return impl.transport_accumulate_dW(W, p_in, p_out, ctx.scale, grad.detach(), None, **kw)
    up = grad.detach()

    def accumulate():
        if leaf._version != ctx.W_version:
            raise RuntimeError("spatial_kernels: W was modified in place between the transport's forward and its "
                               "backward; its gradient would be of the new weights (as autograd refuses for a saved "
                               "tensor)")
        with torch.no_grad():
            G = leaf.grad
            if G is None:
                leaf.grad = impl.transport_accumulate_dW(leaf, p_in, p_out, ctx.scale, up, None, **kw)
            elif _writable_like(G, leaf, ctx.backend):
                impl.transport_accumulate_dW(leaf, p_in, p_out, ctx.scale, up, G, **kw)
            else:  # a gradient of another layout or dtype: made apart, then summed
                G.add_(impl.transport_accumulate_dW(leaf, p_in, p_out, ctx.scale, up, None, **kw).to(G))

    torch.autograd.Variable._execution_engine.queue_callback(accumulate)
    return None


def _has_hooks(W: Tensor) -> bool:
    return bool(W._backward_hooks or getattr(W, "_post_accumulate_grad_hooks", None))


def _accumulates_into(W: Tensor) -> bool:
    """This backward runs W's AccumulateGrad (it will add into W.grad)."""
    with torch.enable_grad():  # the saved W is the leaf itself: its AccumulateGrad node
        accumulator = torch.autograd.graph.get_gradient_edge(W).node
    try:
        return torch._C._will_engine_execute_node(accumulator)
    except RuntimeError:  # "... currently running autograd.grad()": it never writes .grad
        return False


def _writable_like(G: Tensor, W: Tensor, backend: str) -> bool:
    """The kernel can add into G in place: W's shape, dtype, device and strides, dense (and
    contiguous for numba, which reads W through a contiguous numpy view, and for a conv weight,
    whose taps the triton kernel reads as one flat dimension)."""
    return (G.layout == torch.strided and G.shape == W.shape and G.dtype == W.dtype and G.device == W.device
            and G.stride() == W.stride() and not G.requires_grad
            and ((backend != "numba" and W.dim() == 2) or G.is_contiguous()))
