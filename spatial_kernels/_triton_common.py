"""Pieces shared by the Triton kernels of every cost."""
from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl


@triton.jit
def load_coords(p_ptr, offs, mask, D: tl.constexpr):
    # Rows of a contiguous (n, D) array; missing coordinates are zeros, which add nothing to a
    # distance and fold away at compile time.
    x = tl.load(p_ptr + offs * D, mask=mask, other=0.0)
    if D >= 2:
        y = tl.load(p_ptr + offs * D + 1, mask=mask, other=0.0)
    else:
        y = tl.zeros_like(x)
    if D >= 3:
        z = tl.load(p_ptr + offs * D + 2, mask=mask, other=0.0)
    else:
        z = tl.zeros_like(x)
    return x, y, z


def on_device(device: torch.device):
    """Triton launches on the current CUDA device: make it the inputs' one. CPU tensors (under
    TRITON_INTERPRET=1) need nothing."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
