"""The costs as PyTorch operators: torch.library.opcheck, torch.compile(fullgraph=True) of a loss
and of a whole SpatialMLP training step against eager, and bad input through compiled code.

Compiled code is checked against eager mode, which tests/spatial_kernels/test_costs.py checks against the float64
reference. On a machine without CUDA the triton backend runs under the interpreter.
"""
from __future__ import annotations

import warnings

import pytest
import torch

from spatial_kernels import fused_density_cost, fused_transport_cost, transport_cost_reference

from ..helpers import FUSED_CASES, device_for

torch._dynamo.config.cache_size_limit = 64  # every case below compiles its own graphs


def _leaves(*ts):
    return [t.detach().clone().requires_grad_(True) for t in ts]


def _inputs(n_out, n_in, D, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n_out, n_in, generator=g, dtype=dtype)
    W[0, 0] = 0.0
    p_in, p_out = torch.randn(n_in, D, generator=g, dtype=dtype), torch.randn(n_out, D, generator=g, dtype=dtype)
    p_out[0] = p_in[0]  # a zero distance
    return [t.to(device) for t in (W, p_in, p_out)]


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
@pytest.mark.parametrize("need", [(True, True, True), (True, False, False), (False, True, True), (False,) * 3],
                         ids=["all", "W", "positions", "none"])
def test_opcheck_transport(backend, dtype, need):
    W, p_in, p_out = _inputs(9, 7, 2, dtype, device_for(backend))
    for t, n in zip((W, p_in, p_out), need):
        t.requires_grad_(n)
    torch.library.opcheck(torch.ops.spatial_kernels.transport.default, (W, p_in, p_out, 0.5, backend, *need))


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
@pytest.mark.parametrize("kernel", [(), (3, 3)], ids=["linear", "conv3x3"])
def test_opcheck_transport_dW_and_its_values(backend, dtype, kernel):
    # W's gradient made in the backward: the operator's fake layout and its value against autograd
    W, p_in, p_out = _inputs(9, 7, 2, dtype, device_for(backend))
    W = W[..., None, None].expand(9, 7, *kernel).contiguous() if kernel else W
    up = torch.tensor(-1.5, dtype=dtype, device=W.device)
    torch.library.opcheck(torch.ops.spatial_kernels.transport_dW.default, (W, p_in, p_out, 0.5, up, backend))
    got = torch.ops.spatial_kernels.transport_dW(W, p_in, p_out, 0.5, up, backend)
    ref = W.double().requires_grad_(True)
    (-1.5 * 0.5 * transport_cost_reference(ref, p_in.double(), p_out.double())).backward()
    torch.testing.assert_close(got.double(), ref.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
@pytest.mark.parametrize("need", [True, False])
def test_opcheck_density(backend, dtype, need):
    p = _inputs(9, 7, 3, dtype, device_for(backend))[2].requires_grad_(need)
    torch.library.opcheck(torch.ops.spatial_kernels.density.default, (p, 3.0, backend, need))


def _loss(W, p_in, p_out, backend):
    # a weighted cost beside other terms, and a non-unit upstream gradient through the sum
    T = fused_transport_cost(W, p_in, p_out, scale=0.25, backend=backend)
    V = fused_density_cost(p_out, scale=3.0, backend=backend)
    return 2.0 * (T + V) + (W ** 2).sum()


@pytest.mark.parametrize("backend,dtype", FUSED_CASES)
def test_compiled_loss_matches_eager(backend, dtype):
    torch._dynamo.reset()
    inputs = _inputs(33, 17, 2, dtype, device_for(backend))
    eager, compiled = _leaves(*inputs), _leaves(*inputs)
    e = _loss(*eager, backend)
    e.backward()
    c = torch.compile(_loss, fullgraph=True)(*compiled, backend)
    c.backward()
    torch.testing.assert_close(c, e, rtol=1e-6, atol=0)
    for name, a, b in zip(("W", "p_in", "p_out"), compiled, eager):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7, msg=lambda m: f"grad {name}: {m}")


def test_compiled_training_step_matches_eager():
    """One SpatialMLP step against the same step in eager mode, twice in a row: the loss (task loss
    + spatial loss, forward and backward) compiled with fullgraph=True, and Adam's step compiled
    too (torch.optim's step keeps a deliberate graph break, so not fullgraph)."""
    from spatialnet.data import task_loss_sum
    from spatialnet.model import SpatialMLP

    torch._dynamo.reset()
    torch.manual_seed(0)
    sizes = [20, 16, 16, 12, 20]
    ref = SpatialMLP(sizes, (2, 3, 4))
    nets = {"eager": ref, "compiled": SpatialMLP(sizes, (2, 3, 4))}
    nets["compiled"].load_state_dict(ref.state_dict())
    opts = {k: torch.optim.Adam(m.parameters(), lr=5e-3) for k, m in nets.items()}

    def loss_fn(model, x, y):
        return task_loss_sum(model(x), y, None) / len(x) + model.spatial_loss(1.0, 3.0)

    step_loss = {"eager": loss_fn, "compiled": torch.compile(loss_fn, fullgraph=True)}
    opt_step = {"eager": opts["eager"].step, "compiled": torch.compile(opts["compiled"].step)}
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        x, y = torch.rand(32, 20, generator=g), torch.randint(0, 10, (32, 2), generator=g)
        losses = {}
        for k, model in nets.items():
            opts[k].zero_grad()
            losses[k] = step_loss[k](model, x, y)
            losses[k].backward()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                opt_step[k]()
        torch.testing.assert_close(losses["compiled"], losses["eager"], rtol=1e-6, atol=0)
        for (name, a), b in zip(nets["compiled"].named_parameters(), nets["eager"].parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=lambda m: f"grad {name}: {m}")
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")


def _bad_calls():
    W, p_in, p_out = torch.randn(6, 4, requires_grad=True), torch.randn(4, 2), torch.randn(6, 2)
    return [
        ((torch.randn(6, 5), p_in, p_out), {}, ValueError, "W must have shape (n_out, n_in / groups, *kernel) with "
                                                          "groups=1: W (6, 5) does not fit p_in (4, 2) and p_out (6, 2)"),
        ((torch.randn(6, 2), p_in, p_out), {"groups": 3}, ValueError, "groups=3 must divide both len(p_in) and "
                                                                      "len(p_out), got p_in (4, 2) and p_out (6, 2)"),
        ((W, torch.randn(4, 5), p_out), {}, ValueError, "p_in must have D = 1, 2 or 3 coordinates per neuron "
                                                        "(shape (num_neurons, D)), got shape (4, 5)"),
        ((W, p_in.double(), p_out), {}, TypeError, "p_in and p_out must share a dtype"),
        ((3, p_in, p_out), {}, TypeError, "W must be a torch.Tensor, got int"),
        ((W, p_in, p_out), {"scale": float("nan")}, ValueError, "scale must be finite, got nan"),
        ((W, p_in, p_out), {"backend": "fastest"}, ValueError, "backend='fastest' is not a backend"),
        ((W.bfloat16(), p_in, p_out), {"backend": "numba"}, TypeError, "W of dtype torch.bfloat16 is supported on"),
    ]


def _cost(W, p_in, p_out, scale=1.0, backend="auto", groups=1):
    return fused_transport_cost(W, p_in, p_out, scale=scale, backend=backend, groups=groups) + fused_density_cost(p_out)


@pytest.mark.parametrize("fullgraph", [True, False], ids=["fullgraph", "graph-breaks"])
def test_bad_input_raises_the_eager_error_in_compiled_code(fullgraph):
    torch._dynamo.reset()
    compiled = torch.compile(_cost, fullgraph=fullgraph, backend="aot_eager")
    good = (torch.randn(6, 4, requires_grad=True), torch.randn(4, 2), torch.randn(6, 2))
    torch.testing.assert_close(compiled(*good), _cost(*good))  # compiled first: the bad calls recompile
    for args, kw, exc, msg in _bad_calls():
        with pytest.raises(exc) as eager:
            _cost(*args, **kw)
        assert msg in str(eager.value)
        with pytest.raises(exc) as err:
            compiled(*args, **kw)
        assert str(err.value) == str(eager.value)


def test_dynamic_shapes_and_scales_compile_once_each():
    # after a few calls dynamo makes sizes and the scale symbolic: the checks must still trace
    torch._dynamo.reset()
    compiled = torch.compile(_cost, fullgraph=True, backend="aot_eager")
    for n_out, n_in, scale in ((6, 4, 1.0), (9, 5, 0.5), (11, 3, 0.25), (13, 7, 2.0)):
        args = _inputs(n_out, n_in, 2, torch.float32, torch.device("cpu"))
        torch.testing.assert_close(compiled(*args, scale=scale), _cost(*args, scale=scale))
    with pytest.raises(ValueError, match=r"W \(8, 7\) does not fit p_in \(5, 2\)"):
        compiled(torch.randn(8, 7), torch.randn(5, 2), torch.randn(8, 2), scale=3.0)
