"""The reused dW buffers of the CPU transport kernel (spatial_kernels/_buffers.py).

A buffer may come back only once no tensor can see it, every reuse must be fully rewritten, and
a training loop must get the same gradients as with fresh buffers.
"""
from __future__ import annotations

import gc

import pytest
import torch

from spatial_kernels import _buffers, fused_transport_cost, transport_cost_reference

# 256 x 1024 float32 is 1 MiB: the smallest pooled size
N_OUT, N_IN = 256, 1024


def _inputs(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(N_OUT, N_IN, generator=g, dtype=dtype).requires_grad_(True)
    p_in = torch.randn(N_IN, 2, generator=g, dtype=dtype).requires_grad_(True)
    p_out = torch.randn(N_OUT, 2, generator=g, dtype=dtype).requires_grad_(True)
    return W, p_in, p_out


def _true_dW(W, p_in, p_out, scale):
    leaves = [t.detach().double().requires_grad_(True) for t in (W, p_in, p_out)]
    (scale * transport_cost_reference(*leaves)).backward()
    return leaves[0].grad


@pytest.fixture(autouse=True)
def _clean_pool():
    _buffers.set_reuse(True)
    _buffers.empty_cache()
    yield
    _buffers.set_reuse(True)
    _buffers.empty_cache()


def test_a_freed_gradient_is_reused_and_fully_rewritten():
    W, p_in, p_out = _inputs()
    fused_transport_cost(W, p_in, p_out, backend="numba").backward()
    first = W.grad.data_ptr()
    W.grad.fill_(float("nan"))  # a region the next call leaves unwritten would stay NaN
    W.grad = None
    gc.collect()
    assert _buffers.idle_bytes() == N_OUT * N_IN * 4
    fused_transport_cost(W, p_in, p_out, scale=0.5, backend="numba").backward()
    assert W.grad.data_ptr() == first, "the freed buffer was not reused"
    assert _buffers.idle_bytes() == 0
    torch.testing.assert_close(W.grad.double(), _true_dW(W, p_in, p_out, 0.5), rtol=2e-5, atol=1e-6)


def test_a_gradient_still_held_is_never_overwritten():
    W, p_in, p_out = _inputs()
    fused_transport_cost(W, p_in, p_out, backend="numba").backward()
    kept = W.grad  # the user keeps the step's gradient
    kept_copy = kept.clone()
    view = kept[3:7]  # and a view of it
    del kept
    W.grad = None
    fused_transport_cost(W, p_in, p_out, scale=-2.0, backend="numba").backward()
    assert W.grad.data_ptr() != view.data_ptr() - 3 * N_IN * 4
    torch.testing.assert_close(view, kept_copy[3:7], rtol=0, atol=0)
    numpy_view = W.grad.numpy()  # a numpy array of the memory also keeps it out of the pool
    W.grad = None
    gc.collect()
    assert _buffers.idle_bytes() == 0
    del numpy_view
    gc.collect()
    assert _buffers.idle_bytes() == N_OUT * N_IN * 4


def test_a_training_loop_matches_fresh_buffers_bit_for_bit():
    def train(reuse: bool):
        _buffers.set_reuse(reuse)
        torch.manual_seed(0)
        lin = torch.nn.Linear(N_IN, N_OUT)
        p_in = torch.nn.Parameter(torch.randn(N_IN, 2))
        p_out = torch.nn.Parameter(torch.randn(N_OUT, 2))
        opt = torch.optim.Adam([lin.weight, lin.bias, p_in, p_out], lr=1e-2)
        x = torch.randn(32, N_IN)
        ptrs = set()
        for _ in range(4):
            opt.zero_grad()
            loss = lin(x).square().mean() + fused_transport_cost(lin.weight, p_in, p_out, scale=1e-4, backend="numba")
            loss.backward()
            ptrs.add(lin.weight.grad.data_ptr())
            opt.step()
        return [t.detach().clone() for t in (lin.weight, p_in, p_out)], ptrs

    fresh, _ = train(False)
    reused, ptrs = train(True)
    for a, b in zip(fresh, reused):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(ptrs) <= 2, f"the loop should cycle over at most two gradient buffers, used {len(ptrs)}"


def test_small_and_float64_buffers():
    assert _buffers.empty((3, 4), torch.float32).shape == (3, 4)
    W, p_in, p_out = _inputs(dtype=torch.float64)
    fused_transport_cost(W, p_in, p_out, backend="numba").backward()
    assert W.grad.dtype == torch.float64
    torch.testing.assert_close(W.grad, _true_dW(W, p_in, p_out, 1.0), rtol=1e-9, atol=1e-12)


def test_reuse_off_gives_fresh_buffers():
    _buffers.set_reuse(False)
    W, p_in, p_out = _inputs()
    fused_transport_cost(W, p_in, p_out, backend="numba").backward()
    W.grad = None
    gc.collect()
    assert _buffers.idle_bytes() == 0
    with pytest.raises(TypeError, match="enabled must be a bool"):
        _buffers.set_reuse(1)


def test_backward_fills_no_zero_gradients_for_the_kernel_outputs(monkeypatch):
    # autograd used to materialise zeros for the op's non-differentiable gradient outputs: a
    # W-sized fill per backward. Count W-sized allocations made during backward.
    W, p_in, p_out = _inputs()
    cost = fused_transport_cost(W, p_in, p_out, backend="numba")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        cost.backward()
    big = [e for e in prof.events() if e.cpu_memory_usage >= N_OUT * N_IN * 4]
    assert not big, f"backward allocated W-sized memory: {[e.name for e in big]}"
    assert torch.isfinite(W.grad).all()
