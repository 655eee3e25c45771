"""The fused costs as PyTorch operators: ``torch.ops.spatial_kernels.transport`` and ``.density``.

Registered with ``torch.library.custom_op``, so that ``torch.compile(fullgraph=True)`` traces
through them (FakeTensor shapes from ``register_fake``) and ``torch.library.opcheck`` checks
them. One operator per cost, with a CPU and a CUDA implementation: ``backend`` (an argument, so
that the traced graph keeps it) picks the module, ``numba`` on CPU tensors, ``triton`` on CUDA
tensors (or on CPU tensors under ``TRITON_INTERPRET=1``).

A call computes the value and the gradients of the inputs whose ``need_*`` flag is set, in one
pass (the value-only kernel when none is), all already multiplied by ``scale``; gradients not
asked for come back as empty tensors. ``register_autograd`` saves those gradients and its
backward only scales them by the upstream gradient: the single-pass forward of
``README.md``'s "How the fused backends are shaped". The public functions in
``transport/__init__.py`` and ``density/__init__.py`` check the arguments, choose the backend and
call these operators; ``backend="reference"`` stays plain autograd and never comes here.
"""
from __future__ import annotations

import importlib
import os

import torch
from torch import Tensor
from torch.fx.experimental.proxy_tensor import get_proxy_mode

_MODULES = {("transport", "numba"): "spatial_kernels.transport.numba_cpu",
            ("transport", "triton"): "spatial_kernels.transport.triton_gpu",
            ("density", "numba"): "spatial_kernels.density.numba_cpu",
            ("density", "triton"): "spatial_kernels.density.triton_gpu"}


def _module(cost: str, backend: str):
    try:
        return importlib.import_module(_MODULES[cost, backend])
    except KeyError:
        raise ValueError(f"backend {backend!r} has no fused {cost} kernel; use 'numba' or 'triton'") from None


def _or_empty(g: Tensor | None, like: Tensor) -> Tensor:
    return like.new_empty(0) if g is None else g


def _upstream(g: Tensor, grad: Tensor) -> Tensor:
    """``g * grad`` for a saved gradient ``g`` and the cost's upstream gradient ``grad``.

    A cost added to a loss gets an upstream gradient of exactly 1, and then the saved gradient
    is returned as it is: no W-sized pass. Reading ``grad`` costs nothing for a plain CPU tensor,
    but would make the host wait for a GPU, so CUDA tensors are always multiplied (a
    bandwidth-bound pass the GPU overlaps), and so is any traced backward (torch.compile,
    AOTAutograd, make_fx: fake, functional or proxied tensors), where the value is unknown and
    Inductor fuses the multiply into the gradient accumulation that follows.
    """
    if type(grad) is torch.Tensor and grad.device.type == "cpu" and _eager() and bool(grad == 1):
        return g
    return g * grad.to(g.dtype)


# ---------------------------------------------------------------------------------------------
# transport

@torch.library.custom_op("spatial_kernels::transport", mutates_args=(), device_types=("cpu", "cuda"))
def transport(W: Tensor, p_in: Tensor, p_out: Tensor, scale: float, backend: str,
              need_W: bool, need_p_in: bool, need_p_out: bool,
              defer_W: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(scale * T, scale * dT/dW, scale * dT/dp_in, scale * dT/dp_out)``, empty where not needed.

    ``defer_W``: dT/dW is not made here (``need_W`` is then False); the backward adds it into
    ``W.grad`` itself, after the task gradient has reached it (see :func:`_transport_backward`)."""
    impl = _module("transport", backend)
    if not (need_W or need_p_in or need_p_out):
        value = impl.transport_value(W, p_in, p_out)
        return value if scale == 1.0 else value * scale, W.new_empty(0), p_in.new_empty(0), p_out.new_empty(0)
    value, dW, g_in, g_out = impl.transport_fwd(W, p_in, p_out, needs_grad=(need_W, need_p_in, need_p_out),
                                                scale=scale)
    return value, _or_empty(dW, W), _or_empty(g_in, p_in), _or_empty(g_out, p_out)


@transport.register_fake
def _(W, p_in, p_out, scale, backend, need_W, need_p_in, need_p_out, defer_W=False):
    # dW: numba writes a contiguous array, triton one in W's memory layout (empty_like)
    dW = (torch.empty_like(W) if backend == "triton" else W.new_empty(W.shape)) if need_W else W.new_empty(0)
    return (p_in.new_empty(()), dW, p_in.new_empty(p_in.shape) if need_p_in else p_in.new_empty(0),
            p_out.new_empty(p_out.shape) if need_p_out else p_out.new_empty(0))


def _eager() -> bool:
    """Not inside a traced graph (torch.compile, AOTAutograd, make_fx)."""
    return not torch.compiler.is_compiling() and get_proxy_mode() is None


def _refuse_double_backward(backend: str) -> None:
    # The saved gradients are constants to autograd: a graph of this backward would silently
    # miss every second-derivative term, so building one is refused.
    if torch.is_grad_enabled() and _eager():
        raise RuntimeError(f"spatial_kernels: the fused {backend!r} kernels give first derivatives only, and this "
                           f"backward was asked to build a graph of them (create_graph=True: a second derivative "
                           f"or a gradient penalty); use backend='reference' to differentiate twice")


def _transport_setup(ctx, inputs, output):
    W, p_in, p_out, scale, backend = inputs[:5]
    ctx.backend, ctx.scale = backend, scale
    ctx.defer = len(inputs) > 8 and bool(inputs[8])
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


def _transport_backward(ctx, grad, _dW, _g_in, _g_out):
    if grad is None:  # grads are not materialised (see _transport_setup)
        return None, None, None, None, None, None, None, None, None
    _refuse_double_backward(ctx.backend)
    need = ctx.needs_input_grad
    if ctx.defer:
        dW, g_in, g_out, W, p_in, p_out = ctx.saved_tensors
        grad_W = _deferred_W_grad(ctx, W, p_in, p_out, grad) if need[0] else None
    else:
        dW, g_in, g_out = ctx.saved_tensors
        grad_W = _upstream(dW, grad) if need[0] else None
    return (grad_W, _upstream(g_in, grad) if need[1] else None,
            _upstream(g_out, grad) if need[2] else None, None, None, None, None, None, None)


def _deferred_W_grad(ctx, W, p_in, p_out, grad) -> Tensor | None:
    """W's part of the gradient of a deferred transport (``defer_W``).

    When this backward will run W's AccumulateGrad (``loss.backward()``), the part goes straight
    into ``W.grad`` in the kernel's one pass, once the whole backward is done: the engine then
    has summed every other gradient of W (the task's, and any earlier micro-batch's) there, so
    the kernel reads W and read-modify-writes W.grad, and no W-sized dW is made or summed. The
    callback runs before ``backward()`` returns, so an optimiser, a clip or a scaler that follows
    sees the whole gradient. Otherwise (``torch.autograd.grad``, or ``backward(inputs=...)``
    without W), the gradient is made here and returned, as in the present path."""
    impl = _module("transport", ctx.backend)
    leaf = ctx.W_leaf
    # a hook on W registered after the forward must see the whole gradient: return it to autograd
    if not _accumulates_into(leaf) or _has_hooks(leaf):
        return impl.transport_accumulate_dW(W, p_in, p_out, ctx.scale, grad.detach(), None)
    upstream = grad.detach()

    def accumulate():
        if leaf._version != ctx.W_version:
            raise RuntimeError("spatial_kernels: W was modified in place between the transport's forward and its "
                               "backward; its gradient would be of the new weights (as autograd refuses for a saved "
                               "tensor)")
        with torch.no_grad():
            G = leaf.grad
            if G is None:
                leaf.grad = impl.transport_accumulate_dW(leaf, p_in, p_out, ctx.scale, upstream, None)
            elif _writable_like(G, leaf, ctx.backend):
                impl.transport_accumulate_dW(leaf, p_in, p_out, ctx.scale, upstream, G)
            else:  # a gradient of another layout or dtype: made apart, then summed
                G.add_(impl.transport_accumulate_dW(leaf, p_in, p_out, ctx.scale, upstream, None).to(G))

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


# The transport's fast path: W's gradient added into W.grad in the kernel's pass (``defer_W``).
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
    can, the fast path runs). The present path (dW made in the forward, summed by autograd)
    serves every case named here."""
    if not _accumulate:
        return "turned off (set_accumulate(False) or SPATIAL_KERNELS_ACCUMULATE=0)"
    if not (torch.is_grad_enabled() and W.requires_grad):
        return "W needs no gradient"
    if not W.is_leaf:
        return "W is not a leaf tensor (a view or a computed weight has no .grad of its own)"
    if not _eager():
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


transport.register_autograd(_transport_backward, setup_context=_transport_setup)


# ---------------------------------------------------------------------------------------------
# density

@torch.library.custom_op("spatial_kernels::density", mutates_args=(), device_types=("cpu", "cuda"))
def density(p: Tensor, scale: float, backend: str, need_p: bool) -> tuple[Tensor, Tensor]:
    """``(scale * V, scale * dV/dp)``, the gradient empty when not needed."""
    impl = _module("density", backend)
    if not need_p:
        value = impl.density_value(p)
        return value if scale == 1.0 else value * scale, p.new_empty(0)
    return impl.density_fwd(p, needs_grad=(True,), scale=scale)


@density.register_fake
def _(p, scale, backend, need_p):
    return p.new_empty(()), p.new_empty(p.shape) if need_p else p.new_empty(0)


def _density_setup(ctx, inputs, output):
    ctx.backend = inputs[2]
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)


def _density_backward(ctx, grad, _g):
    if grad is None:
        return None, None, None, None
    _refuse_double_backward(ctx.backend)
    (g,) = ctx.saved_tensors
    return _upstream(g, grad) if ctx.needs_input_grad[0] else None, None, None, None


density.register_autograd(_density_backward, setup_context=_density_setup)


def needs_grad(t: Tensor) -> bool:
    return torch.is_grad_enabled() and t.requires_grad


# ---------------------------------------------------------------------------------------------
# bad arguments

def raise_bad_argument(bad) -> Tensor:
    """Raises a failed check's ValueError/TypeError (``_validate.BadArgument``).

    Under ``torch.compile`` an exception raised while tracing reaches the user as dynamo's own
    error (with ``fullgraph=True``) or costs a graph break, and the message's shapes may be
    symbolic. So there the failed check is recorded as a call to ``argument_error``, which raises
    the same exception, with the same message from the concrete shapes, when the compiled code
    runs: the user sees what eager mode shows.
    """
    if not torch.compiler.is_compiling():
        raise bad.exception()
    names = list(bad.tensors)
    return argument_error([bad.tensors[k] for k in names], ",".join(names), bad.kind, bad.template)


@torch.library.custom_op("spatial_kernels::argument_error", mutates_args=())
def argument_error(tensors: list[Tensor], names: str, kind: str, template: str) -> Tensor:
    """Raises ``kind`` (ValueError or TypeError) with ``template`` filled in from the shapes of
    ``tensors``, named by the comma-separated ``names``."""
    from ._validate import BadArgument
    raise BadArgument(kind, template, **dict(zip(names.split(","), tensors))).exception()


@argument_error.register_fake
def _(tensors, names, kind, template):
    return tensors[0].new_empty(()) if tensors else torch.empty(())


argument_error.register_autograd(lambda ctx, grad: (None, None, None, None))
