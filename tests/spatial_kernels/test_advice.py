"""Errors whose advice works where they are raised: following it succeeds."""
import pytest
import torch

from spatial_kernels import fused_transport_cost


def test_the_low_precision_advice_on_cpu_names_a_backend_that_runs_there():
    W, p_in, p_out = torch.randn(6, 5).half(), torch.randn(5, 2), torch.randn(6, 2)
    with pytest.raises(TypeError, match=r"use backend='reference' \(triton needs CUDA\)") as err:
        fused_transport_cost(W, p_in, p_out, backend="numba")
    assert "'triton'" not in str(err.value).split(";")[-1].replace("(triton needs CUDA)", "")
    got = fused_transport_cost(W, p_in, p_out, backend="reference")  # the advice, taken
    want = (W.double().abs() * torch.cdist(p_out.double(), p_in.double())).sum()
    torch.testing.assert_close(got.double(), want, rtol=2e-3, atol=0)
