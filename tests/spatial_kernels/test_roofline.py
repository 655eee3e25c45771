"""benchmarks/roofline.py, the H100 model gpu_check.sh measures against: its arithmetic against sums done by hand."""
from __future__ import annotations

import pytest

pytest.importorskip("triton")

from benchmarks import roofline  # noqa: E402


def test_transport_bytes_follow_the_launch_plan():
    # 8192^2 float32 on 132 SMs: 1056 programs aimed at, 32 row tiles (1024 rows) each, so
    # 128 column blocks x 8 row runs; partials 4 B x D x (128 x 8192 + 8 x 8192)
    n, D = 8192, 3
    fused, finish, upstream, w_grad = roofline.transport(n, n, 4, D)
    partials = 4 * D * (128 * n + 8 * n)
    positions = 4 * D * 2 * n
    assert fused["bytes"] == 4 * n * n + partials + positions
    assert finish["bytes"] == partials + positions
    assert w_grad["bytes"] == 2 * 4 * n * n + positions  # W read, W.grad written
    assert roofline.transport(n, n, 4, D, accumulate=True)[-1]["bytes"] == 3 * 4 * n * n + positions
    assert fused["bound"] == "HBM" and fused["seconds"] == pytest.approx(fused["bytes"] / 3.35e12 + 4e-6)


def test_density_is_issue_bound_at_its_sassed_rate():
    (fused, _, _) = roofline.density(65536)
    # 0.68 warp instructions a pair at 132 x 4 x 1.98e9 a second
    assert fused["bound"] == "issue"
    assert fused["seconds"] == pytest.approx(65536**2 * 0.68 / (132 * 4 * 1.98e9) + 4e-6)
    assert roofline.model_seconds("density", 65536) == pytest.approx(sum(x["seconds"] for x in roofline.density(65536)))
