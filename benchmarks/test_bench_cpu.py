"""CPU forward+backward benchmarks (pytest-benchmark): numba and pykeops against reference.

    pytest benchmarks/test_bench_cpu.py --benchmark-only --benchmark-group-by=group

Timing only; for peak memory, the full size sweep and the committed markdown table run
``python -m benchmarks.report_cpu``, which measures each point in a fresh process.
"""
from __future__ import annotations

import importlib.util

import pytest

from .cases import make_case

SIZES = [1024, 4096]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("backend", ["reference", "numba", "pykeops"])
def test_density_fwd_bwd(benchmark, backend, n):
    if backend == "pykeops" and importlib.util.find_spec("pykeops") is None:
        pytest.skip("pykeops is not installed (pip install -e .[dev])")
    benchmark.group = f"density fwd+bwd N={n}"
    run, pairs = make_case("density", backend, n)
    run()  # compile / warm up outside the timing
    benchmark.extra_info["pairs"] = pairs
    benchmark(run)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_transport_fwd_bwd(benchmark, backend, n):
    benchmark.group = f"transport fwd+bwd {n}x{n}"
    run, pairs = make_case("transport", backend, n)
    run()
    benchmark.extra_info["pairs"] = pairs
    benchmark(run)
