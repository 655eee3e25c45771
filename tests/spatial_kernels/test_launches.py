"""Kernel launches of one forward and backward on the triton backend, counted as Liger counts them
for its fused cross-entropy: every Triton kernel launched and every torch op that would launch a
kernel on a GPU (views, empty allocations and detaches launch none), leaving out the autograd
seed, which the caller makes. On a GPU each launch costs microseconds, more than the kernels
themselves at the paper's layer sizes; so a transport call's forward and backward may launch at
most 5, the density's 3, and neither may read a value back on the host (``.item()``, ``bool()``).

Without a CUDA device the kernels run in Triton's interpreter (tests/conftest.py), which copies
tensors with torch ops of its own: those are not launches, so torch ops are not counted while
a Triton kernel runs.
"""
from __future__ import annotations

import contextlib

import pytest
import torch
import torch.utils._pytree as pytree
from torch._library.custom_ops import _maybe_get_opdef
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

import spatial_kernels
from spatial_kernels import available_backends, fused_density_cost, fused_transport_cost

from ..helpers import device_for

pytestmark = pytest.mark.skipif(
    "triton" not in available_backends(),
    reason="the triton backend cannot run here (no triton, or no CUDA and no TRITON_INTERPRET)",
)

DEVICE = device_for("triton")
aten = torch.ops.aten
# ops that launch no kernel: allocations without a fill, and metadata
NO_LAUNCH = {aten.empty.memory_format, aten.empty_strided.default, aten.empty_like.default, aten.new_empty.default,
             aten.new_empty_strided.default, aten.detach.default, aten.alias.default, aten.lift_fresh.default}
# ops that make the host wait for the device
HOST_READS = {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.item.default}


class Launches(TorchDispatchMode):
    """Records ``("triton", kernel name)`` for each Triton launch and ``("torch", op)`` for each
    torch op that launches a kernel, in order; ``host_reads`` lists the ops that read a value
    back on the host."""

    def __init__(self):
        super().__init__()
        self.launches: list[tuple[str, str]] = []
        self.host_reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "spatial_kernels":
            # the package's own operators are wrappers: count the ops and kernels their Python
            # bodies run (a mode is off while its handler runs: it is entered again around them)
            with self:
                return _maybe_get_opdef(func)._init_fn(*args, **(kwargs or {}))
        out = func(*args, **(kwargs or {}))
        if func in HOST_READS:
            self.host_reads.append(str(func))
        elif func not in NO_LAUNCH and (not func.is_view or _copies(args, out)):
            self.launches.append(("torch", str(func)))
        return out

    def count(self) -> int:
        return len(self.launches)


def _copies(args, out) -> bool:
    """An op that may return a view (``contiguous``, ``to``, ``reshape``) made a new tensor."""
    storages = {a.untyped_storage().data_ptr() for a in pytree.tree_leaves(args) if isinstance(a, torch.Tensor)}
    return any(o.untyped_storage().data_ptr() not in storages
               for o in pytree.tree_leaves(out) if isinstance(o, torch.Tensor))


@contextlib.contextmanager
def counting(monkeypatch):
    from triton.runtime.jit import KernelInterface

    mode = Launches()
    getitem = KernelInterface.__getitem__

    def counted_getitem(self, grid):
        launch = getitem(self, grid)

        def run(*args, **kwargs):
            mode.launches.append(("triton", self.fn.__name__))
            with _disable_current_modes():  # the interpreter's own tensor copies are no launches
                return launch(*args, **kwargs)

        return run

    monkeypatch.setattr(KernelInterface, "__getitem__", counted_getitem)
    with mode:
        yield mode
    monkeypatch.setattr(KernelInterface, "__getitem__", getitem)


def _leaves(*shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g).to(DEVICE).requires_grad_(True) for s in shapes]


def _check(mode, limit):
    names = [name for _, name in mode.launches]
    assert mode.count() <= limit, f"{mode.count()} launches (at most {limit}): {names}"
    assert not mode.host_reads, f"the host waited for a value: {mode.host_reads}"


@pytest.mark.parametrize("accumulate", [True, False], ids=["W.grad-where-it-lands", "dW-to-autograd"])
@pytest.mark.parametrize("scale,upstream", [(1.0, 1.0), (0.3, -2.0)], ids=["plain", "weighted"])
def test_transport_forward_and_backward_launch_at_most_5(monkeypatch, accumulate, scale, upstream):
    W, p_in, p_out = _leaves((37, 19), (19, 2), (37, 2))
    monkeypatch.setattr(spatial_kernels._accumulate, "_accumulate", accumulate)
    seed = torch.full((), upstream, device=DEVICE)  # the autograd seed: the caller's, not counted
    with counting(monkeypatch) as mode:
        value = fused_transport_cost(W, p_in, p_out, scale=scale, backend="triton")
        forward = mode.count()
        value.backward(seed)
    _check(mode, 5)
    assert forward <= 2, mode.launches  # the pass over W and the finishing sums
    ref = [t.detach().clone().requires_grad_(True) for t in (W, p_in, p_out)]
    (upstream * scale * spatial_kernels.transport_cost_reference(*ref)).backward()
    for got, want in zip((W, p_in, p_out), ref):
        torch.testing.assert_close(got.grad, want.grad.to(got.grad), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scale,upstream", [(1.0, 1.0), (0.3, -2.0)], ids=["plain", "weighted"])
def test_density_forward_and_backward_launch_at_most_3(monkeypatch, scale, upstream):
    (p,) = _leaves((45, 3))
    seed = torch.full((), upstream, device=DEVICE)
    with counting(monkeypatch) as mode:
        value = fused_density_cost(p, scale=scale, backend="triton")
        value.backward(seed)
    _check(mode, 3)
    ref = p.detach().clone().requires_grad_(True)
    (upstream * scale * spatial_kernels.density_cost_reference(ref)).backward()
    torch.testing.assert_close(p.grad, ref.grad, rtol=1e-4, atol=1e-5)


def test_values_alone_launch_two_each(monkeypatch):
    W, p_in, p_out = _leaves((37, 19), (19, 2), (37, 2))
    with torch.no_grad(), counting(monkeypatch) as mode:
        fused_transport_cost(W, p_in, p_out, scale=0.5, backend="triton")
        fused_density_cost(p_in, scale=0.5, backend="triton")
    _check(mode, 4)


def test_the_count_sees_torch_ops_and_host_reads(monkeypatch):
    # the counter itself: a multiply is a launch, a view and an allocation are not, .item() is a read
    x = torch.randn(8, device=DEVICE)
    with counting(monkeypatch) as mode:
        y = torch.empty_like(x)
        z = (x * 2).view(2, 4).t()
        z.contiguous().contiguous().sum().item()
    assert [op for _, op in mode.launches] == ["aten.mul.Tensor", "aten.clone.default", "aten.sum.default"], \
        mode.launches
    assert mode.host_reads == ["aten._local_scalar_dense.default"]
    del y
