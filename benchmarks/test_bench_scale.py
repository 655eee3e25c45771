"""Scale benchmark as a pytest-benchmark group: one training step at small widths.

    pytest benchmarks/test_bench_scale.py --benchmark-only

The full sweep, with peak memory per point in fresh processes and the committed tables and
plot, is ``python -m benchmarks.scale``.
"""
from __future__ import annotations

import pytest

from .scale import build_step


@pytest.mark.parametrize("width", [256, 1024])
@pytest.mark.parametrize("backend", ["regular", "reference", "numba"])
def test_training_step(benchmark, backend, width):
    benchmark.group = f"training step, spatial width {width}"
    step, _, _ = build_step(width, None if backend == "regular" else backend, "cpu")
    step()
    benchmark(step)
