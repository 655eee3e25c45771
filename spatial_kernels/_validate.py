"""Argument checks shared by every backend.

One layer, run before any backend is chosen, so that every backend sees the same, already
checked arguments and every user sees the same messages.
"""
from __future__ import annotations

import math
import numbers

import torch

POSITION_DTYPES = (torch.float32, torch.float64)
# Low-precision weights are read as-is and accumulated in float32; only the triton backend
# streams them natively, the others would silently upcast a W-sized copy.
LOW_PRECISION_WEIGHT_DTYPES = (torch.bfloat16, torch.float16)
MAX_DIM = 3


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def _require_tensor(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


def _check_positions(name: str, p: torch.Tensor) -> None:
    _require_tensor(name, p)
    if p.dim() != 2:
        raise ValueError(
            f"{name} must be 2-D (num_neurons, D) with D in 1..{MAX_DIM}, got shape {_shape(p)}"
        )
    if not 1 <= p.shape[1] <= MAX_DIM:
        raise ValueError(
            f"{name} must have D = 1, 2 or 3 coordinates per neuron (shape (num_neurons, D)), "
            f"got shape {_shape(p)}"
        )
    if p.dtype not in POSITION_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {p.dtype} with shape {_shape(p)}")


def check_transport_args(W, p_in, p_out) -> None:
    """Checks W (n_out, n_in), p_in (n_in, D), p_out (n_out, D) for every backend."""
    _require_tensor("W", W)
    _check_positions("p_in", p_in)
    _check_positions("p_out", p_out)
    if W.dim() != 2:
        raise ValueError(f"W must be 2-D (n_out, n_in) like nn.Linear.weight, got shape {_shape(W)}")
    if p_in.shape[1] != p_out.shape[1]:
        raise ValueError(
            f"p_in and p_out must have the same number of coordinates D, got p_in {_shape(p_in)} "
            f"and p_out {_shape(p_out)}"
        )
    if W.shape[0] != p_out.shape[0] or W.shape[1] != p_in.shape[0]:
        raise ValueError(
            f"W must have shape (n_out, n_in) = (len(p_out), len(p_in)) = "
            f"({p_out.shape[0]}, {p_in.shape[0]}), got W {_shape(W)}, p_in {_shape(p_in)}, "
            f"p_out {_shape(p_out)}"
        )
    devices = {W.device, p_in.device, p_out.device}
    if len(devices) != 1:
        raise ValueError(
            f"W, p_in and p_out must be on one device, got W on {W.device}, p_in on {p_in.device}, "
            f"p_out on {p_out.device}"
        )
    if p_in.dtype != p_out.dtype:
        raise TypeError(
            f"p_in and p_out must share a dtype, got p_in {p_in.dtype} and p_out {p_out.dtype}"
        )
    if W.dtype == p_in.dtype:
        return
    if W.dtype in LOW_PRECISION_WEIGHT_DTYPES and p_in.dtype == torch.float32:
        return  # allowed on triton only; the dispatcher checks the backend
    raise TypeError(
        f"W must have the positions' dtype ({p_in.dtype}), or be bfloat16/float16 with float32 "
        f"positions, got W {W.dtype} with shape {_shape(W)}"
    )


def check_density_args(p) -> None:
    _check_positions("p", p)


def check_scale(scale) -> float:
    """``scale`` as a float: a finite real number (a constant weight, not a tensor)."""
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(
            f"scale must be a real number (a constant weight on the cost), got {type(scale).__name__}"
            + ("; multiply the returned cost by a tensor weight instead" if isinstance(scale, torch.Tensor) else "")
        )
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale}")
    return scale
