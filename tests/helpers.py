"""Shared test helpers: the backends under test, their dtypes, and float64 ground truth."""
from __future__ import annotations

import torch

from spatial_kernels import available_backends

# (backend, dtype) pairs each fused backend supports; the reference is the truth, not a subject.
_DTYPES = {"numba": (torch.float32, torch.float64), "triton": (torch.float32,)}
FUSED_CASES = [(b, dt) for b in available_backends() if b != "reference" for dt in _DTYPES[b]]


def needs(module: str):
    """``module``, imported: under CI (.ci/run installs every dependency) a missing one is an
    error, elsewhere (the GPU image, which has no optuna or pgserver and cannot install them) the
    test is skipped and says which package it lacks."""
    import importlib
    import os

    import pytest
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"{module} is not installed here (the GPU image has none)")


def device_for(backend: str) -> torch.device:
    if backend == "triton" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str):
    """Compares in float64 with a tolerance fitting ``dtype``: relative per element, plus an
    absolute floor relative to the largest magnitude (gradient entries can cancel to ~0)."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    rtol = 1e-9 if dtype == torch.float64 else 2e-5
    scale = expected.abs().max().item() if expected.numel() else 0.0
    atol = max(scale, 1.0) * (1e-11 if dtype == torch.float64 else 2e-6)
    torch.testing.assert_close(actual.detach().double().cpu(), expected.detach().double().cpu(),
                               rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")
