"""What both costs' operators share: the upstream-gradient product, the eager/traced test, the
refusal of double backward, and the argument errors raised where a compiled graph runs.

Each cost is one ``torch.library.custom_op`` (``transport/op.py``, ``density/op.py``): a call
computes the value and the gradients of the inputs whose ``need_*`` flag is set, in one pass,
already multiplied by ``scale``; ``register_autograd`` saves those gradients and its backward only
scales them by the upstream gradient (README.md, "How the fused backends are shaped").
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.fx.experimental.proxy_tensor import get_proxy_mode


def eager() -> bool:
    """Not inside a traced graph (torch.compile, AOTAutograd, make_fx)."""
    return not torch.compiler.is_compiling() and get_proxy_mode() is None


def needs_grad(t: Tensor) -> bool:
    return torch.is_grad_enabled() and t.requires_grad


def or_empty(g: Tensor | None, like: Tensor) -> Tensor:
    return like.new_empty(0) if g is None else g


def upstream(g: Tensor, grad: Tensor, backend: str) -> Tensor:
    """``g * grad`` for a saved gradient ``g`` and the cost's upstream gradient ``grad``.

    A cost added to a loss gets an upstream gradient of exactly 1, and then the CPU backend
    returns the saved gradient as it is: no W-sized pass. Reading ``grad`` costs nothing for a
    plain CPU tensor, but would make the host wait for a GPU, so the triton backend always
    multiplies (a bandwidth-bound pass the GPU overlaps; on CPU tensors it runs as it would on
    a GPU), and so does any traced backward (torch.compile, AOTAutograd, make_fx: fake,
    functional or proxied tensors), where the value is unknown and Inductor fuses the multiply
    into the gradient accumulation that follows.
    """
    if (backend != "triton" and type(grad) is torch.Tensor and grad.device.type == "cpu" and eager()
            and bool(grad == 1)):
        return g
    return g * grad.to(g.dtype)


def upstream_all(backend: str, grad: Tensor, *gs: Tensor | None) -> tuple[Tensor | None, ...]:
    """``upstream(g, grad, backend)`` of each saved gradient ``g`` (None passes through). The triton backend
    scales them all in one launch that reads ``grad`` on the device (the host never waits), except
    in a traced backward, where Inductor fuses plain multiplies into what follows."""
    if backend == "triton" and eager() and any(g is not None for g in gs):
        from ._triton_common import times_upstream
        return times_upstream(grad, *gs)
    return tuple(None if g is None else upstream(g, grad, backend) for g in gs)


def refuse_double_backward(backend: str) -> None:
    """The saved gradients are constants to autograd: a graph of this backward would silently miss
    every second-derivative term, so building one is refused."""
    if torch.is_grad_enabled() and eager():
        raise RuntimeError(f"spatial_kernels: the fused {backend!r} kernels give first derivatives only, and this "
                           f"backward was asked to build a graph of them (create_graph=True: a second derivative "
                           f"or a gradient penalty); use backend='reference' to differentiate twice")


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
    names, int_names = list(bad.tensors), list(bad.ints)
    return argument_error([bad.tensors[k] for k in names], ",".join(names), bad.kind, bad.template,
                          [bad.ints[k] for k in int_names], ",".join(int_names))


@torch.library.custom_op("spatial_kernels::argument_error", mutates_args=())
def argument_error(tensors: list[Tensor], names: str, kind: str, template: str, ints: list[int],
                   int_names: str) -> Tensor:
    """Raises ``kind`` (ValueError or TypeError) with ``template`` filled in from the shapes of
    ``tensors``, named by the comma-separated ``names``, and from ``ints``, named by ``int_names``."""
    from ._validate import BadArgument
    ints = dict(zip(int_names.split(","), ints)) if int_names else {}
    tensors = dict(zip(names.split(","), tensors)) if names else {}
    raise BadArgument(kind, template, ints, **tensors).exception()


@argument_error.register_fake
def _(tensors, names, kind, template, ints, int_names):
    return tensors[0].new_empty(()) if tensors else torch.empty(())


argument_error.register_autograd(lambda ctx, grad: (None, None, None, None, None, None))
