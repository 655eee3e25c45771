"""Bad input raises ValueError/TypeError naming the argument and the shapes, on every backend."""
from __future__ import annotations

import pytest
import torch

from spatial_kernels import available_backends, fused_density_cost, fused_transport_cost

BACKENDS = ["auto", *available_backends()]


def _ok(n_out=3, n_in=4, D=2, dtype=torch.float32):
    return torch.randn(n_out, n_in, dtype=dtype), torch.randn(n_in, D, dtype=dtype), torch.randn(n_out, D, dtype=dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("W,p_in,p_out,exc,words", [
    (torch.randn(12), torch.randn(4, 2), torch.randn(3, 2), ValueError, ["W", "(12)"]),
    (torch.randn(3, 4), torch.randn(4, 2, 1), torch.randn(3, 2), ValueError, ["p_in", "(4, 2, 1)"]),
    (torch.randn(3, 4), torch.randn(4, 4), torch.randn(3, 4), ValueError, ["p_in", "(4, 4)", "D"]),
    (torch.randn(3, 4), torch.randn(4, 0), torch.randn(3, 0), ValueError, ["p_in", "(4, 0)"]),
    (torch.randn(3, 4), torch.randn(5, 2), torch.randn(3, 2), ValueError, ["W", "(3, 4)", "(5, 2)"]),
    (torch.randn(3, 4), torch.randn(4, 2), torch.randn(2, 2), ValueError, ["W", "(3, 4)", "(2, 2)"]),
    (torch.randn(4, 3), torch.randn(4, 2), torch.randn(3, 2), ValueError, ["W", "(4, 3)"]),
    (torch.randn(3, 4), torch.randn(4, 2), torch.randn(3, 3), ValueError, ["p_in", "p_out", "(4, 2)", "(3, 3)"]),
    (torch.randn(3, 4), torch.randn(4, 2).int(), torch.randn(3, 2), TypeError, ["p_in", "int32"]),
    (torch.randn(3, 4), torch.randn(4, 2).half(), torch.randn(3, 2).half(), TypeError, ["p_in", "float16"]),
    (torch.randn(3, 4), torch.randn(4, 2), torch.randn(3, 2).double(), TypeError, ["p_in", "p_out", "float64"]),
    (torch.randn(3, 4).int(), torch.randn(4, 2), torch.randn(3, 2), TypeError, ["W", "int32"]),
    (torch.randn(3, 4).double(), torch.randn(4, 2), torch.randn(3, 2), TypeError, ["W", "float64"]),
    ([[1.0] * 4] * 3, torch.randn(4, 2), torch.randn(3, 2), TypeError, ["W", "list"]),
    (torch.randn(3, 4), None, torch.randn(3, 2), TypeError, ["p_in", "NoneType"]),
    (torch.randn(3, 5, 3, 3), torch.randn(4, 2), torch.randn(3, 2), ValueError, ["W", "(3, 5, 3, 3)", "*kernel"]),
], ids=["W-1d", "p_in-3d", "D-4", "D-0", "n_in-mismatch", "n_out-mismatch", "W-transposed",
        "D-mismatch", "int-positions", "half-positions", "mixed-position-dtypes", "int-W",
        "W-float64-positions-float32", "W-list", "p_in-None", "conv-in-mismatch"])
def test_transport_bad_input(backend, W, p_in, p_out, exc, words):
    with pytest.raises(exc) as err:
        fused_transport_cost(W, p_in, p_out, backend=backend)
    for word in words:
        assert word in str(err.value), f"{word!r} missing from: {err.value}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("p,exc,words", [
    (torch.randn(5), ValueError, ["p", "(5)"]),
    (torch.randn(5, 4), ValueError, ["p", "(5, 4)"]),
    (torch.randn(2, 5, 2), ValueError, ["p", "(2, 5, 2)"]),
    (torch.randn(5, 2).long(), TypeError, ["p", "int64"]),
    (torch.randn(5, 2).bfloat16(), TypeError, ["p", "bfloat16"]),
    ("positions", TypeError, ["p", "str"]),
], ids=["1d", "D-4", "3d", "int", "bf16", "str"])
def test_density_bad_input(backend, p, exc, words):
    with pytest.raises(exc) as err:
        fused_density_cost(p, backend=backend)
    for word in words:
        assert word in str(err.value), f"{word!r} missing from: {err.value}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale,exc,words", [
    (True, TypeError, ["scale", "bool"]),
    ("2", TypeError, ["scale", "str"]),
    (torch.tensor(2.0), TypeError, ["scale", "Tensor"]),
    (float("nan"), ValueError, ["scale", "nan"]),
    (float("inf"), ValueError, ["scale", "inf"]),
], ids=["bool", "str", "tensor", "nan", "inf"])
def test_bad_scale(backend, scale, exc, words):
    for call in (lambda: fused_transport_cost(*_ok(), scale=scale, backend=backend),
                 lambda: fused_density_cost(torch.randn(5, 2), scale=scale, backend=backend)):
        with pytest.raises(exc) as err:
            call()
        for word in words:
            assert word in str(err.value), f"{word!r} missing from: {err.value}"


def test_tensors_on_different_devices():
    W, p_in, p_out = _ok()
    with pytest.raises(ValueError, match=r"one device.*p_in on meta"):
        fused_transport_cost(W, p_in.to("meta"), p_out)


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend='cuda'.*reference"):
        fused_transport_cost(*_ok(), backend="cuda")
    with pytest.raises(TypeError, match="backend must be a str"):
        fused_density_cost(torch.randn(3, 2), backend=None)


def test_env_backend_must_be_known(monkeypatch):
    monkeypatch.setenv("SPATIAL_KERNELS_BACKEND", "fastest")
    with pytest.raises(ValueError, match="SPATIAL_KERNELS_BACKEND='fastest'"):
        fused_density_cost(torch.randn(3, 2))


def test_numba_refuses_other_devices():
    with pytest.raises(ValueError, match="numba.*CPU tensors only.*meta"):
        fused_density_cost(torch.randn(3, 2, device="meta"), backend="numba")


def test_numba_refuses_low_precision_weights():
    W, p_in, p_out = _ok()
    with pytest.raises(TypeError, match="bfloat16.*triton"):
        fused_transport_cost(W.bfloat16(), p_in, p_out, backend="numba")


def test_triton_refuses_cpu_tensors_without_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert ("triton" in available_backends()) == torch.cuda.is_available()
    with pytest.raises(ValueError, match="triton.*CUDA tensors.*TRITON_INTERPRET.*cpu"):
        fused_density_cost(torch.randn(3, 2), backend="triton")


def test_triton_refuses_float64():
    with pytest.raises(TypeError, match="float64.*triton"):
        fused_density_cost(torch.randn(3, 2, dtype=torch.float64), backend="triton")


def test_reference_is_always_available():
    assert "reference" in available_backends()
    assert "numba" in available_backends()
