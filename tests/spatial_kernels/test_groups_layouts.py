"""Grouped and depthwise convolutions, and weights stored inputs first (transformers' Conv1D,
nn.ConvTranspose), in every fused backend against the reference, which groups the plain way; the
reference against a dense block-diagonal weight, its own truth; the deferred W.grad path, opcheck
and torch.compile with groups."""
from __future__ import annotations

import pytest
import torch

from spatial_kernels import fused_transport_cost, transport_cost_reference

from ..helpers import FUSED_CASES, assert_close_scaled, device_for

# (groups, out channels, in channels, kernel): 1, 2, 3 groups, depthwise (G = C), odd sizes, and
# a group of more rows than a triton tile holds (65 rows per group)
CASES = [(1, 5, 7, (3, 3)), (2, 6, 10, (1, 1)), (3, 9, 6, (3, 3)), (3, 15, 9, ()), (7, 7, 7, (7, 7)),
         (5, 5, 5, (3,)), (2, 130, 6, (3, 3)), (1, 3, 4, ())]


def _dense(W: torch.Tensor, groups: int) -> torch.Tensor:
    """A grouped weight (n_out, n_in / G, *k) as the dense one it means: zeros across groups."""
    n_out, local = W.shape[:2]
    dense = W.new_zeros(n_out, local * groups, *W.shape[2:])
    per = n_out // groups
    for g in range(groups):
        dense[g * per:(g + 1) * per, g * local:(g + 1) * local] = W[g * per:(g + 1) * per]
    return dense


def _inputs(groups, n_out, n_in, kernel, D, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n_out, n_in // groups, *kernel, generator=g, dtype=torch.float64)
    W[torch.rand(W.shape, generator=g) < 0.2] = 0.0
    p_in = torch.randn(n_in, D, generator=g, dtype=torch.float64)
    p_out = torch.randn(n_out, D, generator=g, dtype=torch.float64)
    p_out[0] = p_in[0]  # a zero distance: a zero gradient, not NaN
    return [t.to(device=device, dtype=dtype) for t in (W, p_in, p_out)]


def _grads(fn, inputs):
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    value = fn(*leaves)
    value.backward()
    return value.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"G{c[0]}-{c[1]}x{c[2]}-k{'x'.join(map(str, c[3])) or '1'}")
def test_the_reference_groups_as_the_dense_weight_does(case):
    G = case[0]
    W, p_in, p_out = _inputs(*case, 2, torch.float64, "cpu")
    grouped, grads = _grads(lambda w, a, b: transport_cost_reference(w, a, b, G), [W, p_in, p_out])
    dense, dense_grads = _grads(lambda w, a, b: transport_cost_reference(_dense(w, G), a, b), [W, p_in, p_out])
    torch.testing.assert_close(grouped, dense, rtol=1e-12, atol=0)
    for a, b in zip(grads, dense_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
@pytest.mark.parametrize("D", [1, 2, 3])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"G{c[0]}-{c[1]}x{c[2]}-k{'x'.join(map(str, c[3])) or '1'}")
def test_grouped_value_and_grads(backend, dtype, D, case):
    G = case[0]
    inputs = _inputs(*case, D, dtype, device_for(backend))
    value, grads = _grads(lambda *t: fused_transport_cost(*t, groups=G, scale=0.7, backend=backend), inputs)
    ref, ref_grads = _grads(lambda *t: 0.7 * transport_cost_reference(*t, G), [t.double().cpu() for t in inputs])
    assert_close_scaled(value, ref, dtype, "value")
    for name, g, r in zip(("W", "p_in", "p_out"), grads, ref_grads):
        assert_close_scaled(g, r, dtype, f"grad {name}")
    with torch.no_grad():  # the value-only pass
        assert_close_scaled(fused_transport_cost(*inputs, groups=G, backend=backend), ref / 0.7, dtype, "value only")


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
@pytest.mark.parametrize("case", [(1, 6, 4, ()), (2, 6, 4, (3, 3)), (4, 8, 8, (5,))],
                         ids=["conv1d-gpt2", "convT2d-G2", "convT1d-depthwise"])
def test_weights_stored_inputs_first(backend, dtype, case):
    """transformers' Conv1D (in, out) and nn.ConvTranspose (C_in, C_out / G, *k): read as they lie,
    against the reference on the same weight laid out (out, in / G, *k), and W's gradient in W's
    layout."""
    G, n_out, n_in, k = case
    g = torch.Generator().manual_seed(1)
    Wt = torch.randn(n_in, n_out // G, *k, generator=g, dtype=dtype).to(device_for(backend))
    p_in = torch.randn(n_in, 2, generator=g, dtype=dtype).to(device_for(backend))
    p_out = torch.randn(n_out, 2, generator=g, dtype=dtype).to(device_for(backend))
    value, grads = _grads(lambda *t: fused_transport_cost(*t, groups=G, transposed=True, backend=backend),
                          [Wt, p_in, p_out])
    ipg = n_in // G

    def laid_out(w):  # group by group: (ipg, opg, *k) -> (opg, ipg, *k)
        return torch.cat([w[i * ipg:(i + 1) * ipg].transpose(0, 1) for i in range(G)])

    ref, ref_grads = _grads(lambda w, a, b: transport_cost_reference(laid_out(w), a, b, G),
                            [t.double().cpu() for t in (Wt, p_in, p_out)])
    assert_close_scaled(value, ref, dtype, "value")
    assert grads[0].shape == Wt.shape
    for name, a, b in zip(("W", "p_in", "p_out"), grads, ref_grads):
        assert_close_scaled(a, b, dtype, f"grad {name}")


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
def test_grouped_W_grad_lands_in_W_grad_on_either_path(backend, dtype):
    import spatial_kernels
    inputs = _inputs(3, 9, 6, (3, 3), 2, dtype, device_for(backend))
    got = {}
    for fast in (True, False):
        spatial_kernels.set_accumulate(fast)
        try:
            W, p_in, p_out = (t.detach().clone().requires_grad_(True) for t in inputs)
            ((W ** 2).sum() + fused_transport_cost(W, p_in, p_out, groups=3, scale=0.3, backend=backend)).backward()
            got[fast] = (W.grad, p_in.grad, p_out.grad)
        finally:
            spatial_kernels.set_accumulate(True)
    for name, a, b in zip(("W", "p_in", "p_out"), got[True], got[False]):
        assert_close_scaled(a, b, dtype, name)


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
def test_opcheck_and_compile_with_groups(backend, dtype):
    W, p_in, p_out = _inputs(2, 6, 4, (3, 3), 2, dtype, device_for(backend))
    for need in ((True, True, True), (False, False, False)):
        for t, n in zip((W, p_in, p_out), need):
            t.requires_grad_(n)
        torch.library.opcheck(torch.ops.spatial_kernels.transport.default,
                              (W, p_in, p_out, 0.5, backend, *need, False, 2))
    torch._dynamo.reset()
    fn = torch.compile(lambda w, a, b: fused_transport_cost(w, a, b, groups=2, transposed=False, backend=backend),
                       fullgraph=True)
    eager, _ = _grads(lambda *t: fused_transport_cost(*t, groups=2, backend=backend), [W, p_in, p_out])
    compiled, _ = _grads(fn, [W, p_in, p_out])
    assert_close_scaled(compiled, eager, dtype, "compiled value")


def test_float64_gradients_pass_gradcheck_with_groups():
    from torch.autograd import gradcheck
    W, p_in, p_out = (t.requires_grad_(True) for t in _inputs(3, 6, 6, (2,), 2, torch.float64, "cpu", seed=3))
    p_out.data[0] += 0.5  # gradcheck's finite differences need no zero distance
    assert gradcheck(lambda *t: fused_transport_cost(*t, groups=3, backend="numba"), (W, p_in, p_out))


def test_bad_groups_are_clear_errors():
    W, p_in, p_out = torch.randn(6, 2), torch.randn(4, 2), torch.randn(6, 2)
    with pytest.raises(ValueError, match=r"groups=3 must divide both len\(p_in\) and len\(p_out\)"):
        fused_transport_cost(W, p_in, p_out, groups=3)
    with pytest.raises(ValueError, match=r"W must have shape \(n_out, n_in / groups, \*kernel\) with groups=2"):
        fused_transport_cost(torch.randn(6, 3), p_in, p_out, groups=2)
    with pytest.raises(ValueError, match=r"\(n_in, n_out / groups, \*kernel\) with groups=1, transposed"):
        fused_transport_cost(torch.randn(6, 4), p_in, p_out, transposed=True)
    with pytest.raises(ValueError, match="groups must be a positive int"):
        fused_transport_cost(W, p_in, p_out, groups=0)
    with pytest.raises(TypeError, match="transposed must be a bool"):
        fused_transport_cost(W, p_in, p_out, transposed="yes")
