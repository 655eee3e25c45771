"""Which backend runs a call: discovery, the ``"auto"`` rule and the checks that a backend can run.

- ``reference``: plain PyTorch, any device, always available.
- ``numba``: CPU tensors, needs the ``numba`` package.
- ``triton``: CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1`` (numpy emulation,
  how CI checks the kernels' numerics); needs the ``triton`` package.

``"auto"`` takes ``SPATIAL_KERNELS_BACKEND`` when it is set, else ``triton`` for CUDA tensors and
``numba`` for CPU tensors (``reference`` when that backend's package is missing).
"""
from __future__ import annotations

import importlib.util
import os

import torch

from ._validate import LOW_PRECISION_WEIGHT_DTYPES, BadArgument

BACKENDS = ("reference", "numba", "triton")
ENV_VAR = "SPATIAL_KERNELS_BACKEND"


_INSTALLED: dict[str, bool] = {}


@torch.compiler.assume_constant_result  # torch.compile calls it once, at trace time
def _installed(module: str) -> bool:
    if module not in _INSTALLED:
        _INSTALLED[module] = importlib.util.find_spec(module) is not None
    return _INSTALLED[module]


def triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _why_not(backend: str, device: torch.device | None) -> str | None:
    """Why ``backend`` cannot run on ``device`` here (None: it can); device None means anywhere."""
    if backend == "reference":
        return None
    if backend == "numba":
        if not _installed("numba"):
            return "the numba package is not installed (pip install numba)"
        if device is not None and device.type != "cpu":
            return f"it runs on CPU tensors only, got tensors on {device}"
        return None
    if backend == "triton":
        if not _installed("triton"):
            return "the triton package is not installed"
        on_cuda = torch.cuda.is_available() if device is None else device.type == "cuda"
        if on_cuda or triton_interpret():
            return None
        where = "no CUDA device is available" if device is None else f"got tensors on {device}"
        return f"it needs CUDA tensors, or TRITON_INTERPRET=1 for CPU tensors; {where}"
    return f"unknown backend; choose one of {BACKENDS} or 'auto'"


def available_backends() -> list[str]:
    """The backends that can run on this machine, for some device."""
    return [b for b in BACKENDS if _why_not(b, None) is None]


def resolve_backend(backend: str, device: torch.device, position_dtype: torch.dtype,
                    weight_dtype: torch.dtype | None = None) -> str | BadArgument:
    """The backend that runs a call on ``device``, or a :class:`BadArgument` saying why none can."""
    if not isinstance(backend, str):
        return BadArgument("TypeError", f"backend must be a str, got {type(backend).__name__}")
    if backend == "auto":
        env = os.environ.get(ENV_VAR, "").strip()
        if env:
            if env not in BACKENDS:
                return BadArgument("ValueError", f"{ENV_VAR}={env!r} is not a backend; choose one of {BACKENDS}")
            backend = env
        else:
            preferred = "triton" if device.type == "cuda" else "numba"
            backend = preferred if _why_not(preferred, device) is None else "reference"
    if backend not in BACKENDS:
        return BadArgument("ValueError", f"backend={backend!r} is not a backend; choose one of {BACKENDS} or 'auto'")
    why = _why_not(backend, device)
    if why is not None:
        return BadArgument("ValueError", f"backend {backend!r} cannot run here: {why}")
    if position_dtype == torch.float64 and backend == "triton":
        return BadArgument("TypeError", "float64 is supported on the numba and reference backends, not on 'triton' "
                                      "(float32 positions; W in float32, bfloat16 or float16)")
    if weight_dtype in LOW_PRECISION_WEIGHT_DTYPES and backend == "numba":
        return BadArgument("TypeError", f"W of dtype {weight_dtype} is supported on the triton and reference "
                                      f"backends, not on {backend!r}; pass W.float() or use backend="
                                      + ("'triton'" if device.type == "cuda" else "'reference' (triton needs CUDA)"))
    return backend
