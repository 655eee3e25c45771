"""The transport's gradient added into W.grad in the kernel's pass (``spatial_kernels.accumulate_path``),
against the present path (dW made in the forward and summed by autograd) and against the
reference, under autograd's rules: a plain step, micro-batch accumulation, zero_grad without
freeing, a W used twice in one graph, retain_graph, torch.autograd.grad, a W only the transport
reaches, conv weights, hooks, torch.compile and DDP (the last two take the present path)."""
import pytest
import torch

import spatial_kernels
from spatial_kernels import available_backends, fused_transport_cost

from ..helpers import FUSED_CASES, assert_close_scaled, device_for

CASES = list(FUSED_CASES)


def _setup(backend, dtype, shape=(37, 29), seed=0):
    dev = device_for(backend)
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(*shape, generator=g, dtype=dtype).to(dev).requires_grad_(True)
    p_in = torch.randn(shape[1], 2, generator=g, dtype=dtype).to(dev).requires_grad_(True)
    p_out = torch.randn(shape[0], 2, generator=g, dtype=dtype).to(dev).requires_grad_(True)
    x = torch.randn(8, shape[1] if W.dim() == 2 else shape[1], generator=g, dtype=dtype).to(dev)
    return W, p_in, p_out, x


def _task(W, x):
    # a task gradient that reaches W.grad through autograd: x @ W^T
    Wm = W if W.dim() == 2 else W.sum(dim=tuple(range(2, W.dim())))
    return (x @ Wm.T).tanh().square().mean()


def _grads(*ts):
    return [t.grad.clone() for t in ts]


def _run(fast: bool, fn, *leaves):
    spatial_kernels.set_accumulate(fast)
    try:
        for t in leaves:
            t.grad = None
        fn()
        return _grads(*leaves)
    finally:
        spatial_kernels.set_accumulate(True)


@pytest.fixture(autouse=True)
def _restore():
    yield
    spatial_kernels.set_accumulate(True)


@pytest.mark.parametrize("shape", [(37, 29), (300, 50)])
@pytest.mark.parametrize("backend,dtype", CASES)
def test_a_step_is_bit_for_bit_the_present_path(backend, dtype, shape):
    W, p_in, p_out, x = _setup(backend, dtype, shape)

    def step():
        (_task(W, x) + fused_transport_cost(W, p_in, p_out, scale=0.37, backend=backend)).backward()

    assert spatial_kernels.accumulate_path(W) is None
    fast, slow = _run(True, step, W, p_in, p_out), _run(False, step, W, p_in, p_out)
    assert torch.equal(fast[0], slow[0])
    # the positions' gradients come from another kernel on each path (numba's planar one on the
    # fast path, four rows per pass), whose sums LLVM may contract into FMAs differently on each
    # CPU: equal to rounding, not to the bit
    for a, b, what in zip(fast[1:], slow[1:], ("p_in", "p_out")):
        assert_close_scaled(a, b, dtype, what)
    # and the reference's autograd agrees
    ref = _run(True, lambda: (_task(W, x) + fused_transport_cost(W, p_in, p_out, scale=0.37,
                                                                   backend="reference")).backward(), W, p_in, p_out)
    for a, b, what in zip(fast, ref, ("W", "p_in", "p_out")):
        assert_close_scaled(a, b, dtype, what)


@pytest.mark.parametrize("backend,dtype", CASES)
def test_an_upstream_gradient_scales_it_as_autograd_would(backend, dtype):
    W, p_in, p_out, x = _setup(backend, dtype)

    def step():
        (_task(W, x) + 3.5 * fused_transport_cost(W, p_in, p_out, scale=0.2, backend=backend)).backward()

    fast, slow = _run(True, step, W, p_in, p_out), _run(False, step, W, p_in, p_out)
    # the kernel may fuse the upstream product into the addition (one rounding, not two), so
    # an upstream gradient other than 1 agrees to rounding, not bit for bit
    for a, b, what in zip(fast, slow, ("W", "p_in", "p_out")):
        assert_close_scaled(a, b, dtype, what)


@pytest.mark.parametrize("backend,dtype", CASES)
def test_micro_batches_zero_grad_kept_and_retain_graph(backend, dtype):
    W, p_in, p_out, x = _setup(backend, dtype)
    xs = [x, x.flip(0) * 0.5, x + 1.0]

    def accumulate():  # three micro-batches into one gradient, no zero_grad between them
        for xb in xs:
            (_task(W, xb) + fused_transport_cost(W, p_in, p_out, scale=0.1, backend=backend)).backward()

    fast, slow = _run(True, accumulate, W, p_in, p_out), _run(False, accumulate, W, p_in, p_out)
    for a, b, what in zip(fast, slow, ("W", "p_in", "p_out")):
        assert_close_scaled(a, b, dtype, what)  # the order of the additions differs: (G + task) + T

    def zero_kept():  # zero_grad(set_to_none=False): W.grad is a zeroed buffer, added into
        for t in (W, p_in, p_out):
            t.grad = torch.zeros_like(t)
        (_task(W, x) + fused_transport_cost(W, p_in, p_out, scale=0.1, backend=backend)).backward()

    fast = _run(True, zero_kept, W, p_in, p_out)
    slow = _run(False, zero_kept, W, p_in, p_out)
    assert torch.equal(fast[0], slow[0])  # 0 + task + T: the same sum either way
    for a, b, what in zip(fast[1:], slow[1:], ("p_in", "p_out")):  # another kernel on each path (see above)
        assert_close_scaled(a, b, dtype, what)
    # the gradient was added into the buffer W.grad already was, not replaced
    spatial_kernels.set_accumulate(True)
    W.grad = buf = torch.zeros_like(W)
    (_task(W, x) + fused_transport_cost(W, p_in, p_out, scale=0.1, backend=backend)).backward()
    assert W.grad is buf and torch.equal(buf, fast[0])

    def twice():  # retain_graph: a second backward adds the same gradient again
        loss = _task(W, x) + fused_transport_cost(W, p_in, p_out, scale=0.1, backend=backend)
        loss.backward(retain_graph=True)
        loss.backward()

    fast, slow = _run(True, twice, W, p_in, p_out), _run(False, twice, W, p_in, p_out)
    for a, b, what in zip(fast, slow, ("W", "p_in", "p_out")):
        assert_close_scaled(a, b, dtype, what)


@pytest.mark.parametrize("backend,dtype", CASES)
def test_a_W_used_twice_and_a_W_only_the_transport_reaches(backend, dtype):
    W, p_in, p_out, x = _setup(backend, dtype)
    q_out = (p_out.detach() + 1.0).requires_grad_(True)

    def two_costs():  # W in the task and in two transport terms
        (_task(W, x) + fused_transport_cost(W, p_in, p_out, scale=0.1, backend=backend)
         + fused_transport_cost(W, p_in, q_out, scale=0.3, backend=backend)).backward()

    fast, slow = _run(True, two_costs, W, p_in, p_out, q_out), _run(False, two_costs, W, p_in, p_out, q_out)
    for a, b, what in zip(fast, slow, ("W", "p_in", "p_out", "q_out")):
        assert_close_scaled(a, b, dtype, what)

    def transport_only():
        fused_transport_cost(W, p_in, p_out, scale=0.1, backend=backend).backward()

    fast, slow = _run(True, transport_only, W, p_in, p_out), _run(False, transport_only, W, p_in, p_out)
    assert torch.equal(fast[0], slow[0])
    for a, b, what in zip(fast[1:], slow[1:], ("p_in", "p_out")):  # another kernel on each path (see above)
        assert_close_scaled(a, b, dtype, what)


@pytest.mark.parametrize("backend,dtype", CASES)
def test_autograd_grad_returns_it_and_leaves_W_grad_alone(backend, dtype):
    W, p_in, p_out, x = _setup(backend, dtype)
    W.grad = None
    loss = _task(W, x) + fused_transport_cost(W, p_in, p_out, scale=0.1, backend=backend)
    (g,) = torch.autograd.grad(loss, W)
    assert W.grad is None
    (g_ref,) = torch.autograd.grad(_task(W, x) + fused_transport_cost(W, p_in, p_out, scale=0.1,
                                                                       backend="reference"), W)
    assert_close_scaled(g, g_ref, dtype, "W")
    # backward(inputs=...) without W: W.grad stays None, the positions get theirs
    fused_transport_cost(W, p_in, p_out, backend=backend).backward(inputs=[p_in])
    assert W.grad is None and p_in.grad is not None


@pytest.mark.skipif("triton" not in available_backends(), reason="the triton backend cannot run here")
def test_bf16_W_on_triton_agrees_to_its_rounding():
    # the fast path adds in float32 and rounds once; the present path rounds dW to bfloat16 first
    W, p_in, p_out, x = _setup("triton", torch.float32)
    Wb = W.detach().to(torch.bfloat16).requires_grad_(True)

    def step():
        (_task(Wb.float(), x) + fused_transport_cost(Wb, p_in, p_out, scale=0.5, backend="triton")).backward()

    fast, slow = _run(True, step, Wb, p_in, p_out), _run(False, step, Wb, p_in, p_out)
    assert fast[0].dtype == torch.bfloat16
    torch.testing.assert_close(fast[0].float(), slow[0].float(), rtol=2 ** -7, atol=2 ** -7 * slow[0].abs().max().item())
    for a, b, what in zip(fast[1:], slow[1:], ("p_in", "p_out")):
        assert_close_scaled(a, b, torch.float32, what)


@pytest.mark.parametrize("backend,dtype", CASES)
def test_conv_weights(backend, dtype):
    W, p_in, p_out, x = _setup(backend, dtype, shape=(11, 7, 3, 3))

    def step():
        (_task(W, x) + fused_transport_cost(W, p_in, p_out, scale=0.5, backend=backend)).backward()

    fast, slow = _run(True, step, W, p_in, p_out), _run(False, step, W, p_in, p_out)
    for a, b in zip(fast, slow):
        assert torch.equal(a, b)


def test_where_the_present_path_serves_it_says_why():
    W = torch.randn(5, 4, requires_grad=True)
    assert spatial_kernels.accumulate_path(W) is None
    assert "no gradient" in spatial_kernels.accumulate_path(torch.randn(5, 4))
    assert "not a leaf" in spatial_kernels.accumulate_path(W * 2)
    with torch.no_grad():
        assert "no gradient" in spatial_kernels.accumulate_path(W)
    h = W.register_hook(lambda g: g)
    assert "hooks" in spatial_kernels.accumulate_path(W)
    h.remove()
    W.register_post_accumulate_grad_hook(lambda p: None)
    assert "hooks" in spatial_kernels.accumulate_path(W)
    spatial_kernels.set_accumulate(False)
    assert "turned off" in spatial_kernels.accumulate_path(torch.randn(2, 2, requires_grad=True))
    with pytest.raises(TypeError, match="enabled must be a bool"):
        spatial_kernels.set_accumulate(1)


def test_saved_tensor_hooks_and_checkpointing_keep_the_whole_gradient():
    # under saved-tensor hooks the backward's W would be a copy: the present path serves
    from torch.utils.checkpoint import checkpoint
    W, p_in, p_out, x = _setup("numba", torch.float32)

    def loss():
        return _task(W, x) + fused_transport_cost(W, p_in, p_out, scale=0.3, backend="numba")

    want = _run(False, lambda: loss().backward(), W, p_in, p_out)
    contexts = {"saved_tensors_hooks": lambda: torch.autograd.graph.saved_tensors_hooks(lambda t: t.clone(),
                                                                                          lambda t: t),
                "save_on_cpu": torch.autograd.graph.save_on_cpu}
    for name, ctx in contexts.items():
        def step():
            with ctx():
                assert "saved-tensor hooks" in spatial_kernels.accumulate_path(W)
                out = loss()
            out.backward()
        for a, b, what in zip(_run(True, step, W, p_in, p_out), want, ("W", "p_in", "p_out")):
            assert torch.equal(a, b), (name, what)
    got = _run(True, lambda: checkpoint(loss, use_reentrant=False).backward(), W, p_in, p_out)
    for a, b, what in zip(got, want, ("W", "p_in", "p_out")):
        assert_close_scaled(a, b, torch.float32, what)


def test_a_hook_registered_after_the_forward_and_W_changed_before_backward():
    W, p_in, p_out, x = _setup("numba", torch.float32)
    want = _run(False, lambda: (_task(W, x) + fused_transport_cost(W, p_in, p_out, backend="numba")).backward(),
                W, p_in, p_out)
    W.grad = None
    loss = _task(W, x) + fused_transport_cost(W, p_in, p_out, backend="numba")  # the fast path, deferred
    seen = []
    h = W.register_hook(lambda g: seen.append(g.clone()))
    loss.backward()
    h.remove()
    assert torch.equal(seen[0], want[0]) and torch.equal(W.grad, want[0])  # the hook saw the whole gradient
    W.grad = None
    loss = fused_transport_cost(W, p_in, p_out, backend="numba")
    with torch.no_grad():
        W.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):  # autograd, from the saved W
        loss.backward()


def test_a_hook_on_W_sees_the_whole_gradient():
    W, p_in, p_out, x = _setup("numba", torch.float32)
    seen = []
    W.register_hook(lambda g: seen.append(g.clone()))
    (_task(W, x) + fused_transport_cost(W, p_in, p_out, backend="numba")).backward()
    assert torch.equal(seen[0], W.grad)  # the present path: the hook got task + transport


def test_torch_compile_takes_the_present_path():
    W, p_in, p_out, x = _setup("numba", torch.float32)

    def loss():
        return _task(W, x) + fused_transport_cost(W, p_in, p_out, scale=0.3, backend="numba")

    eager = _run(True, lambda: loss().backward(), W, p_in, p_out)
    compiled = torch.compile(loss, fullgraph=True)
    got = _run(True, lambda: compiled().backward(), W, p_in, p_out)
    for a, b, what in zip(got, eager, ("W", "p_in", "p_out")):
        assert_close_scaled(a, b, torch.float32, what)


def test_no_W_sized_buffer_besides_W_grad(monkeypatch):
    # the fast path makes no dW: in a step's forward and backward the one W-sized allocation is
    # the task gradient's; the present path also borrows a dW from the pool (_buffers.py)
    n_out, n_in = 512, 768
    W, p_in, p_out, x = _setup("numba", torch.float32, shape=(n_out, n_in))
    from torch.profiler import ProfilerActivity, profile

    from spatial_kernels import _buffers
    lent = []
    real = _buffers.empty
    monkeypatch.setattr(_buffers, "empty", lambda shape, dtype: lent.append(shape) or real(shape, dtype))

    def big(fast):
        spatial_kernels.set_accumulate(fast)
        W.grad = None
        lent.clear()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            (_task(W, x) + fused_transport_cost(W, p_in, p_out, backend="numba")).backward()
        return sorted(e.name for e in prof.events() if e.self_cpu_memory_usage >= n_out * n_in * 4), list(lent)

    big(True)
    assert big(True) == (["aten::mm"], [])
    assert big(False) == (["aten::mm"], [(n_out, n_in)])
