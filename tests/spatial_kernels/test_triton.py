"""Triton-specific checks: low-precision W, block boundaries, which kernel runs, big shapes.

The shared backend-parametrised tests (test_costs.py) already run the triton backend at small
float32 shapes. Here: bfloat16/float16 W against the float64 reference on ``W.float()``, sizes
on both sides of the block sizes with every output buffer the launchers allocate filled with
NaN (FLA's trick: a region a kernel never writes fails the test), the value-only path and the
``dW``-free path, determinism, and on CUDA only, a W of more than 2**31 elements and float32
shapes large enough for many programs. Without a GPU the kernels run in Triton's interpreter
(tests/conftest.py), so the shapes here stay tiny.
"""
from __future__ import annotations

import math

import pytest
import torch

from spatial_kernels import (
    available_backends,
    density_cost_reference,
    fused_density_cost,
    fused_transport_cost,
    transport_cost_reference,
)
from spatial_kernels.density import triton_gpu as density_triton
from spatial_kernels.transport import triton_gpu as transport_triton

from ..helpers import assert_close_scaled, device_for

pytestmark = pytest.mark.skipif(
    "triton" not in available_backends(),
    reason="the triton backend cannot run here (no triton, or no CUDA and no TRITON_INTERPRET)",
)

DEVICE = device_for("triton")
ON_CUDA = DEVICE.type == "cuda"
needs_cuda = pytest.mark.skipif(not ON_CUDA, reason="needs a CUDA device (big shapes; the interpreter is too slow)")

TM, TN = transport_triton.BLOCK_M, transport_triton.BLOCK_N
DM, DN = density_triton.BLOCK_M, density_triton.BLOCK_N
# (n_out, n_in): tiny, odd, one past a block in each direction, and several blocks with tails.
TRANSPORT_SHAPES = [(1, 1), (3, 5), (17, 33), (TM + 1, TN + 1), (130, 257)]
DENSITY_SIZES = sorted({1, 3, DN + 1, DM + 1, 2 * DM + 1, 130})

# dW is rounded to W's dtype once, to nearest on a GPU: relative error <= 2**-8 for bfloat16,
# 2**-11 for float16 (plus float32 noise). Triton's interpreter truncates float32 -> bfloat16
# (triton 3.8, interpreter.py cast_impl), an error up to 2**-7. Everything else is computed
# and returned in float32 from exactly the weights W holds.
DW_RTOL = {torch.float32: 2e-5, torch.bfloat16: 2.0**-8 if ON_CUDA else 2.0**-7, torch.float16: 2.0**-10}
W_DTYPES = list(DW_RTOL)


@pytest.fixture
def nan_buffers(monkeypatch):
    """Makes ``torch.empty``/``empty_like`` return NaN-filled float tensors while a test runs."""
    empty, empty_like = torch.empty, torch.empty_like

    def fill(t):
        return t.fill_(math.nan) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", lambda *a, **k: fill(empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: fill(empty_like(*a, **k)))


def _transport_inputs(n_out, n_in, D, w_dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n_out, n_in, generator=g)
    W[torch.rand(n_out, n_in, generator=g) < 0.2] = 0.0  # exact zeros: sign 0, dW 0
    p_in = torch.randn(n_in, D, generator=g)
    p_out = torch.randn(n_out, D, generator=g)
    p_out[0] = p_in[0]  # a zero distance: zero gradient, not NaN
    return W.to(device=DEVICE, dtype=w_dtype), p_in.to(DEVICE), p_out.to(DEVICE)


def _leaves(*ts):
    return [t.detach().clone().requires_grad_(True) for t in ts]


def _transport_truth(W, p_in, p_out, scale=1.0, weight=1.0):
    """float64 reference on the weights W holds (``W.double()`` is exact for every W dtype)."""
    leaves = _leaves(*(t.double() for t in (W, p_in, p_out)))
    value = weight * transport_cost_reference(*leaves)
    (scale * value).backward()
    return value.detach(), [t.grad for t in leaves]


def _density_truth(p):
    (leaf,) = _leaves(p.double())
    value = density_cost_reference(leaf)
    value.backward()
    return value.detach(), leaf.grad


def _check_transport(W, p_in, p_out, scale=1.0, weight=1.0):
    """``weight`` goes into the kernel (``scale=`` of the API), ``scale`` is the upstream gradient."""
    leaves = _leaves(W, p_in, p_out)
    value = fused_transport_cost(*leaves, scale=weight, backend="triton")
    (scale * value).backward()
    ref_value, ref_grads = _transport_truth(W, p_in, p_out, scale, weight)
    assert value.dim() == 0 and value.dtype == torch.float32 and value.device.type == DEVICE.type
    assert_close_scaled(value, ref_value, torch.float32, "value")
    dW = leaves[0].grad
    assert dW.dtype == W.dtype and dW.shape == W.shape
    assert torch.isfinite(dW).all()
    # a scaled upstream gradient rounds dW a second time, in backward's dW * grad_out
    rtol = DW_RTOL[W.dtype] * (1 if scale == 1.0 else 2)
    torch.testing.assert_close(dW.double().cpu(), ref_grads[0], rtol=rtol,
                               atol=1e-6 * ref_grads[0].abs().max().item(), msg=lambda m: f"grad W: {m}")
    for name, leaf, ref in zip(("p_in", "p_out"), leaves[1:], ref_grads[1:]):
        assert leaf.grad.dtype == torch.float32
        assert_close_scaled(leaf.grad, ref, torch.float32, f"grad {name}")


@pytest.mark.parametrize("w_dtype", W_DTYPES, ids=str)
@pytest.mark.parametrize("D", [1, 2, 3])
@pytest.mark.parametrize("shape", TRANSPORT_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_transport_matches_reference(nan_buffers, shape, D, w_dtype):
    _check_transport(*_transport_inputs(*shape, D, w_dtype))


@pytest.mark.parametrize("target,shape", [(1, (130, 257)), (12, (130, 257)), (1, (TM * 33 + 1, 3))],
                         ids=["one-run-of-5-tiles", "runs-of-3-tiles", "32-tile-cap"])
def test_transport_several_row_tiles_per_program(monkeypatch, nan_buffers, target, shape):
    # small shapes get one row tile per program; fewer target programs make programs loop over
    # several tiles, carrying the column sums across them, up to the MAX_ROW_TILES cap
    monkeypatch.setattr(transport_triton, "target_programs", lambda device: target)
    grid, rows_per_program = transport_triton._grid(*shape, target)
    assert rows_per_program > TM and grid[1] == -(-shape[0] // rows_per_program)
    _check_transport(*_transport_inputs(*shape, 3, torch.bfloat16))


@pytest.mark.parametrize("w_dtype", [torch.bfloat16, torch.float16], ids=str)
def test_transport_low_precision_strided_W_and_scaled_upstream(nan_buffers, w_dtype):
    W, p_in, p_out = _transport_inputs(TN + 3, TM + 5, 3, w_dtype)
    W_t = W.t().contiguous().t()  # W's values in a column-major layout: W_t.stride() == (1, n_out)
    assert W_t.stride(0) == 1 and W_t.stride(1) != 1
    _check_transport(W_t, p_in, p_out, scale=-2.5)


@pytest.mark.parametrize("w_dtype", W_DTYPES, ids=str)
def test_transport_weight_is_folded_into_the_dW_store(nan_buffers, w_dtype):
    # dW = weight * sign(W) * d is rounded to W's dtype once, in the kernel: the tolerance of an
    # unweighted dW holds, where an upstream gradient of the same size would round twice
    _check_transport(*_transport_inputs(TN + 3, TM + 5, 2, w_dtype), weight=-0.37)


@pytest.mark.parametrize("D", [1, 2, 3])
@pytest.mark.parametrize("n", DENSITY_SIZES)
def test_density_matches_reference(nan_buffers, n, D):
    g = torch.Generator().manual_seed(n)
    p = torch.randn(n, D, generator=g)
    if n > 2:
        p[2] = p[0]  # coincident neurons
    (leaf,) = _leaves(p.to(DEVICE))
    value = fused_density_cost(leaf, backend="triton")
    value.backward()
    ref_value, ref_grad = _density_truth(p)
    assert value.dim() == 0 and value.dtype == torch.float32
    assert_close_scaled(value, ref_value, torch.float32, "value")
    assert_close_scaled(leaf.grad, ref_grad, torch.float32, "grad p")


class _LaunchSpy:
    """Stands in for a Triton kernel, records each launch's keyword arguments, runs the real one."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.launches = []

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.launches.append(kwargs)
            return self.kernel[grid](*args, **kwargs)

        return launch


@pytest.fixture
def spies(monkeypatch):
    out = {}
    for module, name in [(transport_triton, "_transport_fwd_bwd_kernel"), (transport_triton,
                         "_transport_accumulate_kernel"), (density_triton, "_density_fwd_bwd_kernel")]:
        out[name] = _LaunchSpy(getattr(module, name))
        monkeypatch.setattr(module, name, out[name])
    return out


def _launch_counts(spies):
    """Launches per kernel, the value-only ones (``GRADS``/``GRAD`` False) apart."""
    out = {}
    for name, s in spies.items():
        for launch in s.launches:
            key = name if launch.get("GRADS", launch.get("GRAD", True)) else f"{name} value only"
            out[key] = out.get(key, 0) + 1
    return out


def test_no_grad_runs_only_the_value_kernels(spies):
    W, p_in, p_out = _transport_inputs(17, 33, 2, torch.bfloat16)
    with torch.no_grad():
        t = fused_transport_cost(*_leaves(W, p_in, p_out), backend="triton")
        d = fused_density_cost(*_leaves(p_in), backend="triton")
    t_plain = fused_transport_cost(W, p_in, p_out, backend="triton")  # nothing requires grad
    assert _launch_counts(spies) == {"_transport_fwd_bwd_kernel value only": 2,
                                     "_density_fwd_bwd_kernel value only": 1}
    assert not t.requires_grad and not d.requires_grad and t_plain.grad_fn is None
    assert_close_scaled(t, _transport_truth(W, p_in, p_out)[0], torch.float32, "transport value")
    assert torch.equal(t, t_plain)
    assert_close_scaled(d, _density_truth(p_in)[0], torch.float32, "density value")


def test_dW_is_not_written_when_W_needs_no_grad(spies):
    W, p_in, p_out = _transport_inputs(17, 33, 3, torch.float16)
    pin_leaf, pout_leaf = _leaves(p_in, p_out)
    fused_transport_cost(W, pin_leaf, pout_leaf, backend="triton").backward()
    (launch,) = spies["_transport_fwd_bwd_kernel"].launches
    assert launch["STORE_DW"] is False
    _, ref_grads = _transport_truth(W, p_in, p_out)
    assert_close_scaled(pin_leaf.grad, ref_grads[1], torch.float32, "grad p_in")
    assert_close_scaled(pout_leaf.grad, ref_grads[2], torch.float32, "grad p_out")
    value, dW, _, _ = transport_triton.transport_fwd(W, p_in, p_out, needs_grad=(False, True, True))
    assert dW is None


def test_one_pass_gives_value_and_every_gradient(spies):
    import spatial_kernels
    W, p_in, p_out = _transport_inputs(17, 33, 3, torch.float32)
    # the path where autograd sums W's gradient: the forward's one pass gives the value and the
    # positions' gradients, and W's gradient is made in the backward, in one pass over W (no dW
    # stored in the forward to be multiplied by the upstream gradient later)
    spatial_kernels.set_accumulate(False)
    try:
        leaves = _leaves(W, p_in, p_out)
        fused_transport_cost(*leaves, backend="triton").backward()
    finally:
        spatial_kernels.set_accumulate(True)
    (p,) = _leaves(p_in)
    fused_density_cost(p, backend="triton").backward()
    assert _launch_counts(spies) == {"_transport_fwd_bwd_kernel": 1, "_transport_accumulate_kernel": 1,
                                     "_density_fwd_bwd_kernel": 1}
    assert spies["_transport_fwd_bwd_kernel"].launches[0]["STORE_DW"] is False
    assert spies["_transport_accumulate_kernel"].launches[0]["ACCUMULATE"] is False  # made, for autograd
    _, ref_grads = _transport_truth(W, p_in, p_out)
    assert_close_scaled(leaves[0].grad, ref_grads[0], torch.float32, "dW")
    # the fast path: the forward's pass stores no dW; one pass adds it into W.grad after backward
    leaves = _leaves(W, p_in, p_out)
    fused_transport_cost(*leaves, backend="triton").backward()
    assert spies["_transport_fwd_bwd_kernel"].launches[1]["STORE_DW"] is False
    acc = spies["_transport_accumulate_kernel"].launches[1]
    assert acc["ACCUMULATE"] is False  # W.grad was None: written, not added into
    assert_close_scaled(leaves[0].grad, ref_grads[0], torch.float32, "dW")
    # the operator still stores dW in its pass when asked to (need_W)
    transport_triton.transport_fwd(W, p_in, p_out)
    assert spies["_transport_fwd_bwd_kernel"].launches[2]["STORE_DW"] is True


def test_bitwise_deterministic():
    W, p_in, p_out = _transport_inputs(TM * 2 + 1, TN * 2 + 1, 3, torch.bfloat16)
    first = transport_triton.transport_fwd(W, p_in, p_out)
    second = transport_triton.transport_fwd(W, p_in, p_out)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(density_triton.density_fwd(p_in), density_triton.density_fwd(p_in)))


# ---------------------------------------------------------------------------------------------
# CUDA only


@needs_cuda
def test_bf16_W_beyond_2_pow_31_elements():
    n_out, n_in, D = 65536, 32769, 3  # 2_147_549_184 elements > 2**31
    assert n_out * n_in > 2**31
    g = torch.Generator(device="cuda").manual_seed(0)
    W = torch.randn(n_out, n_in, generator=g, device="cuda", dtype=torch.bfloat16)
    p_in = torch.randn(n_in, D, generator=g, device="cuda")
    p_out = torch.randn(n_out, D, generator=g, device="cuda")
    value, dW, grad_in, grad_out = transport_triton.transport_fwd(W, p_in, p_out)
    value_only = transport_triton.transport_value(W, p_in, p_out)

    # the chunked float64 reference: row blocks through the reference, summed
    pin64 = p_in.double().requires_grad_(True)
    ref_value = torch.zeros((), dtype=torch.float64, device="cuda")
    rows = 2048
    for start in range(0, n_out, rows):
        sl = slice(start, min(start + rows, n_out))
        W_c = W[sl].double().requires_grad_(True)
        pout_c = p_out[sl].double().requires_grad_(True)
        v = transport_cost_reference(W_c, pin64, pout_c)
        v.backward()
        ref_value += v.detach()
        torch.testing.assert_close(dW[sl].double(), W_c.grad, rtol=DW_RTOL[torch.bfloat16],
                                   atol=1e-6 * W_c.grad.abs().max().item(), msg=lambda m: f"dW rows {sl}: {m}")
        assert_close_scaled(grad_out[sl], pout_c.grad, torch.float32, f"grad p_out rows {sl}")
        del W_c, pout_c, v
    # 2e9 float32 terms summed in per-program blocks: 1e-5 still catches one missing W row
    # in a thousand (each row is about 1/65536 of the total)
    torch.testing.assert_close(value.double(), ref_value, rtol=1e-5, atol=0)
    torch.testing.assert_close(value_only.double(), ref_value, rtol=1e-5, atol=0)
    assert_close_scaled(grad_in, pin64.grad, torch.float32, "grad p_in")


@needs_cuda
@pytest.mark.parametrize("shape", [(4096, 8192), (8191, 4097)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_transport_float32_large(shape):
    W, p_in, p_out = _transport_inputs(*shape, 3, torch.float32)
    _check_transport(W, p_in, p_out)


@needs_cuda
@pytest.mark.parametrize("n", [8192, 20001])
def test_density_float32_large(n):
    g = torch.Generator().manual_seed(1)
    p = (torch.randn(n, 3, generator=g) * 10).cuda()
    (leaf,) = _leaves(p)
    value = fused_density_cost(leaf, backend="triton")
    value.backward()
    ref_value, ref_grad = _density_truth_chunked(p)
    assert_close_scaled(value, ref_value, torch.float32, "value")
    assert_close_scaled(leaf.grad, ref_grad, torch.float32, "grad p")


def _density_truth_chunked(p, rows=2048):
    """float64 value and gradient of the density cost, row blocks at a time (dV/dp_k is the
    row-k sum alone, by symmetry)."""
    p64 = p.double()
    value = torch.zeros((), dtype=torch.float64, device=p.device)
    grad = torch.empty_like(p64)
    for start in range(0, p.shape[0], rows):
        rows_p = p64[start:start + rows]
        u = rows_p[:, None, :] - p64[None, :, :]  # [rows, N, D]
        d = torch.linalg.vector_norm(u, dim=-1)
        e = torch.exp(-d)
        value += e.sum()
        s = torch.where(d > 0, e / d.clamp_min(1e-300), torch.zeros_like(d))
        grad[start:start + rows] = -2.0 * (s[..., None] * u).sum(1)
    return value, grad


def test_chunked_density_truth_is_the_reference():
    # the CUDA tests above trust this helper at sizes the reference cannot hold; check it here
    g = torch.Generator().manual_seed(2)
    p = torch.randn(37, 3, generator=g, dtype=torch.float64)
    p[5] = p[3]
    value, grad = _density_truth_chunked(p, rows=8)
    ref_value, ref_grad = _density_truth(p)
    torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)
