"""Every fused backend against the float64 reference: value and every gradient.

Backends come from ``available_backends()``: numba always, triton on CUDA or, without a GPU,
under Triton's interpreter (tests/conftest.py), at the same small shapes.
"""
from __future__ import annotations

import pytest
import torch

from spatial_kernels import (
    density_cost_reference,
    fused_density_cost,
    fused_transport_cost,
    transport_cost_reference,
)

from ..helpers import FUSED_CASES, assert_close_scaled, device_for

TRANSPORT_SHAPES = [(1, 1), (3, 5), (17, 33), (130, 257)]
DENSITY_SIZES = [1, 7, 129, 300]


def _transport_inputs(n_out, n_in, D, dtype, device, seed=0):
    """Random W and positions with exact zeros in W and coincident input/output neurons."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n_out, n_in, generator=g, dtype=torch.float64)
    W[torch.rand(n_out, n_in, generator=g) < 0.2] = 0.0
    p_in = torch.randn(n_in, D, generator=g, dtype=torch.float64)
    p_out = torch.randn(n_out, D, generator=g, dtype=torch.float64)
    p_out[0] = p_in[0]  # a zero distance, whose gradient must be 0, not NaN
    if n_out > 2:
        p_out[2] = p_out[1]
    return [t.to(device=device, dtype=dtype) for t in (W, p_in, p_out)]


def _density_inputs(n, D, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(n, D, generator=g, dtype=torch.float64)
    if n > 4:
        p[4] = p[1]  # coincident neurons
    return p.to(device=device, dtype=dtype)


def _grads_of(cost_fn, inputs, scale=1.0):
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    value = cost_fn(*leaves)
    (scale * value).backward()
    return value.detach(), [t.grad for t in leaves]


def _truth_transport(W, p_in, p_out, scale=1.0):
    return _grads_of(transport_cost_reference, [t.double().cpu() for t in (W, p_in, p_out)], scale)


def _truth_density(p, scale=1.0):
    return _grads_of(density_cost_reference, [p.double().cpu()], scale)


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
@pytest.mark.parametrize("D", [1, 2, 3])
@pytest.mark.parametrize("shape", TRANSPORT_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_transport_value_and_grads(backend, dtype, D, shape):
    inputs = _transport_inputs(*shape, D, dtype, device_for(backend))
    value, grads = _grads_of(lambda *t: fused_transport_cost(*t, backend=backend), inputs)
    ref_value, ref_grads = _truth_transport(*inputs)
    assert value.dim() == 0 and value.dtype == dtype
    assert_close_scaled(value, ref_value, dtype, "value")
    for name, g, r in zip(("W", "p_in", "p_out"), grads, ref_grads):
        assert g.dtype == dtype
        assert_close_scaled(g, r, dtype, f"grad {name}")


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
@pytest.mark.parametrize("D", [1, 2, 3])
@pytest.mark.parametrize("n", DENSITY_SIZES)
def test_density_value_and_grad(backend, dtype, D, n):
    p = _density_inputs(n, D, dtype, device_for(backend))
    value, (grad,) = _grads_of(lambda t: fused_density_cost(t, backend=backend), [p])
    ref_value, (ref_grad,) = _truth_density(p)
    assert value.dim() == 0 and value.dtype == dtype
    assert_close_scaled(value, ref_value, dtype, "value")
    assert_close_scaled(grad, ref_grad, dtype, "grad p")


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
def test_transport_coincident_all_zero_distance(backend, dtype):
    """Every output neuron on top of every input neuron: cost 0, every gradient exactly 0."""
    device = device_for(backend)
    W = torch.randn(5, 4, dtype=dtype, device=device, requires_grad=True)
    p_in = torch.ones(4, 2, dtype=dtype, device=device, requires_grad=True)
    p_out = torch.ones(5, 2, dtype=dtype, device=device, requires_grad=True)
    cost = fused_transport_cost(W, p_in, p_out, backend=backend)
    cost.backward()
    assert cost.item() == 0.0
    for t in (W, p_in, p_out):
        assert torch.equal(t.grad, torch.zeros_like(t))


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
def test_density_all_coincident(backend, dtype):
    p = torch.zeros(6, 2, dtype=dtype, device=device_for(backend), requires_grad=True)
    cost = fused_density_cost(p, backend=backend)
    cost.backward()
    assert cost.item() == 36.0
    assert torch.equal(p.grad, torch.zeros_like(p))


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
def test_transport_non_contiguous_inputs(backend, dtype):
    device = device_for(backend)
    g = torch.Generator().manual_seed(1)
    W_t = torch.randn(33, 17, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    wide_in = torch.randn(66, 5, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    wide_out = torch.randn(17, 5, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    W = W_t.t()  # a transposed W, as nn.Linear weights often arrive
    p_in, p_out = wide_in[::2, 1:3], wide_out[:, 2:4]  # strided rows, sliced columns
    assert not (W.is_contiguous() or p_in.is_contiguous() or p_out.is_contiguous())
    value, grads = _grads_of(lambda *t: fused_transport_cost(*t, backend=backend), [W, p_in, p_out])
    W_leaf = W.detach().requires_grad_(True)
    value_nc = fused_transport_cost(W_leaf, p_in, p_out, backend=backend)  # leaf itself strided
    value_nc.backward()
    ref_value, ref_grads = _truth_transport(W, p_in, p_out)
    assert_close_scaled(value, ref_value, dtype, "value")
    assert_close_scaled(W_leaf.grad, ref_grads[0], dtype, "grad of a strided W leaf")
    for name, gr, r in zip(("W", "p_in", "p_out"), grads, ref_grads):
        assert_close_scaled(gr, r, dtype, f"grad {name}")


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
def test_density_non_contiguous_input(backend, dtype):
    wide = torch.randn(80, 4, dtype=torch.float64).to(device=device_for(backend), dtype=dtype)
    p = wide[::2, 1:3]
    value, (grad,) = _grads_of(lambda t: fused_density_cost(t, backend=backend), [p])
    ref_value, (ref_grad,) = _truth_density(p)
    assert_close_scaled(value, ref_value, dtype, "value")
    assert_close_scaled(grad, ref_grad, dtype, "grad p")


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
@pytest.mark.parametrize("scale", [3.0, -0.5])
def test_upstream_gradient_scales(backend, dtype, scale):
    inputs = _transport_inputs(9, 11, 2, dtype, device_for(backend))
    _, grads = _grads_of(lambda *t: fused_transport_cost(*t, backend=backend), inputs, scale)
    _, ref_grads = _truth_transport(*inputs, scale=scale)
    for name, g, r in zip(("W", "p_in", "p_out"), grads, ref_grads):
        assert_close_scaled(g, r, dtype, f"grad {name} x {scale}")
    p = _density_inputs(20, 2, dtype, device_for(backend))
    _, (grad,) = _grads_of(lambda t: fused_density_cost(t, backend=backend), [p], scale)
    _, (ref_grad,) = _truth_density(p, scale=scale)
    assert_close_scaled(grad, ref_grad, dtype, f"density grad x {scale}")


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
@pytest.mark.parametrize("weight,upstream", [(0.37, 1.0), (-2.0, 1.0), (0.0, 1.0), (0.37, -3.0)])
def test_scale_weights_value_and_every_gradient(backend, dtype, weight, upstream):
    # scale= is applied inside the fused forward; the truth applies it outside the reference
    inputs = _transport_inputs(17, 33, 2, dtype, device_for(backend))
    value, grads = _grads_of(lambda *t: fused_transport_cost(*t, scale=weight, backend=backend), inputs, upstream)
    ref_value, ref_grads = _grads_of(lambda *t: weight * transport_cost_reference(*t),
                                     [t.double().cpu() for t in inputs], upstream)
    assert_close_scaled(value, ref_value, dtype, f"transport value x {weight}")
    for name, g, r in zip(("W", "p_in", "p_out"), grads, ref_grads):
        assert_close_scaled(g, r, dtype, f"grad {name} x {weight} x {upstream}")
    p = _density_inputs(40, 3, dtype, device_for(backend))
    value, (grad,) = _grads_of(lambda t: fused_density_cost(t, scale=weight, backend=backend), [p], upstream)
    ref_value, (ref_grad,) = _grads_of(lambda t: weight * density_cost_reference(t), [p.double().cpu()], upstream)
    assert_close_scaled(value, ref_value, dtype, f"density value x {weight}")
    assert_close_scaled(grad, ref_grad, dtype, f"density grad x {weight} x {upstream}")
    with torch.no_grad():  # the value-only kernels
        t_cost = fused_transport_cost(*inputs, scale=weight, backend=backend)
        d_cost = fused_density_cost(p, scale=weight, backend=backend)
    assert_close_scaled(t_cost, _truth_transport(*inputs)[0] * weight, dtype, "transport value, no grad")
    assert_close_scaled(d_cost, _truth_density(p)[0] * weight, dtype, "density value, no grad")


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
@pytest.mark.parametrize("which", [(True, False, False), (False, True, False), (False, False, True),
                                   (False, True, True)])
def test_gradients_only_for_inputs_that_require_them(backend, dtype, which):
    inputs = _transport_inputs(6, 7, 2, dtype, device_for(backend))
    leaves = [t.detach().clone().requires_grad_(r) for t, r in zip(inputs, which)]
    fused_transport_cost(*leaves, backend=backend).backward()
    _, ref_grads = _truth_transport(*inputs)
    for name, t, r, wanted in zip(("W", "p_in", "p_out"), leaves, ref_grads, which):
        if wanted:
            assert_close_scaled(t.grad, r, dtype, f"grad {name}")
        else:
            assert t.grad is None, f"{name} does not require grad but got one"


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
def test_no_grad_gives_value_only(backend, dtype):
    inputs = [t.requires_grad_(True) for t in _transport_inputs(17, 33, 2, dtype, device_for(backend))]
    p = _density_inputs(40, 2, dtype, device_for(backend)).requires_grad_(True)
    with torch.no_grad():
        t_cost = fused_transport_cost(*inputs, backend=backend)
        d_cost = fused_density_cost(p, backend=backend)
    assert t_cost.grad_fn is None and not t_cost.requires_grad
    assert d_cost.grad_fn is None and not d_cost.requires_grad
    assert_close_scaled(t_cost, _truth_transport(*inputs)[0], dtype, "transport value")
    assert_close_scaled(d_cost, _truth_density(p)[0], dtype, "density value")


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
def test_backward_twice_through_retained_graph(backend, dtype):
    inputs = [t.requires_grad_(True) for t in _transport_inputs(5, 6, 2, dtype, device_for(backend))]
    cost = fused_transport_cost(*inputs, backend=backend)
    (2.0 * cost).backward(retain_graph=True)
    first = [t.grad.clone() for t in inputs]
    (2.0 * cost).backward()
    for f, t in zip(first, inputs):
        torch.testing.assert_close(t.grad, 2 * f)


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_gradcheck_float64(backend):
    g = torch.Generator().manual_seed(3)
    W = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    p_in = torch.randn(5, 2, generator=g, dtype=torch.float64, requires_grad=True)
    p_out = torch.randn(4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: fused_transport_cost(*t, backend=backend), (W, p_in, p_out))
    assert torch.autograd.gradcheck(lambda t: fused_density_cost(t, backend=backend), (p,))


@pytest.mark.parametrize("backend", ["reference", *dict.fromkeys(b for b, _ in FUSED_CASES)])
@pytest.mark.parametrize("n_out,n_in,n", [(0, 5, 0), (5, 0, 0), (0, 0, 0)])
def test_empty_inputs_give_zero(backend, n_out, n_in, n):
    device = device_for(backend)
    W = torch.randn(n_out, n_in, device=device, requires_grad=True)
    p_in = torch.randn(n_in, 2, device=device, requires_grad=True)
    p_out = torch.randn(n_out, 2, device=device, requires_grad=True)
    p = torch.randn(n, 2, device=device, requires_grad=True)
    t_cost = fused_transport_cost(W, p_in, p_out, backend=backend)
    d_cost = fused_density_cost(p, backend=backend)
    (t_cost + d_cost).backward()
    assert t_cost.item() == 0.0 and d_cost.item() == 0.0
    assert t_cost.dtype == d_cost.dtype == torch.float32
    for t in (W, p_in, p_out, p):
        assert t.grad is not None and t.grad.shape == t.shape and not t.grad.any()


def test_numba_deterministic_across_thread_counts():
    numba = pytest.importorskip("numba")
    inputs = _transport_inputs(300, 200, 2, torch.float32, "cpu")
    p = _density_inputs(500, 2, torch.float32, "cpu")

    def run():
        value, grads = _grads_of(lambda *t: fused_transport_cost(*t, backend="numba"), inputs)
        d_value, d_grads = _grads_of(lambda t: fused_density_cost(t, backend="numba"), [p])
        return [value, *grads, d_value, *d_grads]

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run()
        numba.set_num_threads(before)
        many = run()
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one, many):
        assert torch.equal(a, b), "numba results depend on the thread count"


def test_auto_picks_numba_on_cpu_and_env_overrides(monkeypatch):
    import spatial_kernels.transport.numba_cpu as numba_impl

    calls = []
    original = numba_impl.transport_value
    monkeypatch.setattr(numba_impl, "transport_value", lambda *a, **k: calls.append(1) or original(*a, **k))
    W, p_in, p_out = _transport_inputs(3, 4, 2, torch.float32, "cpu")
    monkeypatch.delenv("SPATIAL_KERNELS_BACKEND", raising=False)
    fused_transport_cost(W, p_in, p_out)
    assert calls == [1], "auto did not pick numba for CPU tensors"
    monkeypatch.setenv("SPATIAL_KERNELS_BACKEND", "reference")
    fused_transport_cost(W, p_in, p_out)
    assert calls == [1], "SPATIAL_KERNELS_BACKEND=reference did not override auto"


# ---------------------------------------------------------------------------------------------
# conv weights: (n_out, n_in, *kernel), a pair's weight is the sum of |W| over its taps

def _conv_truth(W, p_in, p_out, scale=1.0):
    """Hand-written float64 truth: the taps' |W| summed into an (n_out, n_in) weight."""
    leaves = [t.detach().double().cpu().requires_grad_(True) for t in (W, p_in, p_out)]
    a = leaves[0].abs().flatten(2).sum(-1)
    d = torch.linalg.vector_norm(leaves[2][:, None, :] - leaves[1][None, :, :], dim=-1)  # 0 subgradient at 0
    value = (a * d).sum()
    (scale * value).backward()
    return value.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
@pytest.mark.parametrize("kernel", [(3,), (2, 3), (1, 1)], ids=lambda k: "x".join(map(str, k)))
@pytest.mark.parametrize("D", [1, 2])
def test_transport_conv_weight_value_and_grads(backend, dtype, kernel, D):
    device = device_for(backend)
    W2, p_in, p_out = _transport_inputs(17, 33, D, torch.float64, "cpu")
    g = torch.Generator().manual_seed(1)
    W = torch.randn(17, 33, *kernel, generator=g, dtype=torch.float64)
    W[torch.rand(W.shape, generator=g) < 0.2] = 0.0  # exact zeros: sign 0
    W, p_in, p_out = (t.to(device=device, dtype=dtype) for t in (W, p_in, p_out))
    value, grads = _grads_of(lambda *t: fused_transport_cost(*t, scale=0.7, backend=backend), [W, p_in, p_out])
    ref_value, ref_grads = _conv_truth(W, p_in, p_out, scale=0.7)
    assert_close_scaled(value, 0.7 * ref_value, dtype, "value")
    for name, gr, r in zip(("W", "p_in", "p_out"), grads, ref_grads):
        assert gr.shape == r.shape and gr.dtype == dtype
        assert_close_scaled(gr, r, dtype, f"grad {name}")
    with torch.no_grad():  # the value-only kernel
        assert_close_scaled(fused_transport_cost(W, p_in, p_out, backend=backend), ref_value, dtype, "value only")


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
def test_transport_conv_weight_non_contiguous(backend, dtype):
    device = device_for(backend)
    g = torch.Generator().manual_seed(2)
    # a channels-last conv weight: (out, in, kh, kw) with the input channel innermost
    W = torch.randn(9, 3, 3, 5, generator=g, dtype=torch.float64).permute(0, 3, 1, 2)
    p_in = torch.randn(5, 2, generator=g, dtype=torch.float64)
    p_out = torch.randn(9, 2, generator=g, dtype=torch.float64)
    W, p_in, p_out = (t.to(device=device, dtype=dtype) for t in (W, p_in, p_out))
    assert not W.is_contiguous()
    value, grads = _grads_of(lambda *t: fused_transport_cost(*t, backend=backend), [W, p_in, p_out])
    ref_value, ref_grads = _conv_truth(W, p_in, p_out)
    assert_close_scaled(value, ref_value, dtype, "value")
    for name, gr, r in zip(("W", "p_in", "p_out"), grads, ref_grads):
        assert_close_scaled(gr, r, dtype, f"grad {name}")


def test_transport_conv_reference_matches_the_hand_written_sum():
    g = torch.Generator().manual_seed(3)
    W = torch.randn(4, 6, 3, 3, generator=g, dtype=torch.float64)
    p_in, p_out = torch.randn(6, 2, generator=g, dtype=torch.float64), torch.randn(4, 2, generator=g, dtype=torch.float64)
    expected = sum(W[i, j].abs().sum() * (p_out[i] - p_in[j]).norm() for i in range(4) for j in range(6))
    torch.testing.assert_close(transport_cost_reference(W, p_in, p_out), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
def test_double_backward_is_a_clear_error(backend, dtype):
    W, p_in, p_out = (t.requires_grad_(True) for t in _transport_inputs(5, 7, 2, dtype, device_for(backend)))
    for cost, inputs in ((lambda: fused_transport_cost(W, p_in, p_out, backend=backend), (W, p_in, p_out)),
                         (lambda: fused_density_cost(p_out, backend=backend), (p_out,))):
        with pytest.raises(RuntimeError, match=f"fused '{backend}' kernels give first derivatives only.*"
                                               "backend='reference'"):
            torch.autograd.grad(cost(), inputs, create_graph=True)
        grads = torch.autograd.grad(cost(), inputs)  # first order still works
        assert all(torch.isfinite(g).all() for g in grads)


def test_the_reference_backend_the_error_names_differentiates_twice():
    """The double-backward error sends users to backend='reference': its second derivatives are
    finite (the norm's at 0 is NaN: the density's diagonal must not go through it) and match
    finite differences of the first (gradgradcheck), for both costs and a conv weight."""
    g = torch.Generator().manual_seed(5)
    p = torch.randn(7, 2, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    Wc = torch.randn(5, 7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    q = torch.randn(5, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda p: fused_density_cost(p, backend="reference"), (p,))
    assert torch.autograd.gradgradcheck(lambda W, p, q: fused_transport_cost(W, p, q, backend="reference"), (W, p, q))
    assert torch.autograd.gradgradcheck(lambda W, p, q: fused_transport_cost(W, p, q, backend="reference"), (Wc, p, q))
    # a gradient penalty: finite everywhere, and the value still the plain sum with the diagonal's 1s
    (gp,) = torch.autograd.grad(fused_density_cost(p, backend="reference"), p, create_graph=True)
    (h,) = torch.autograd.grad(gp.square().sum(), p)
    assert torch.isfinite(h).all()
    torch.testing.assert_close(density_cost_reference(p), torch.exp(-torch.cdist(p, p)).sum(), rtol=1e-12, atol=0)
