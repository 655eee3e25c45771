"""Depthwise 7x7 transport forward+backward (pytest-benchmark): the fused kernel with its groups,
the reference, and a per-group loop of the ungrouped kernel (``groups.py``).

    pytest benchmarks/test_bench_groups.py --benchmark-only --benchmark-group-by=group
"""
from __future__ import annotations

import pytest

from .groups import depthwise_case, runners


@pytest.mark.parametrize("C", [96, 768])
@pytest.mark.parametrize("how", ["fused (groups in the kernel)", "reference", "per-group loop"])
def test_depthwise_fwd_bwd(benchmark, how, C):
    benchmark.group = f"depthwise 7x7 C={C}"
    run = runners(*depthwise_case(C), groups=C)[how]
    run()
    benchmark(run)
