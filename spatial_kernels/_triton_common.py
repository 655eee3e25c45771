"""Pieces shared by the Triton kernels of every cost."""
from __future__ import annotations

import contextlib
import os

import torch
import triton
import triton.language as tl


def _interpreter_squeezes_scalars() -> None:
    """Triton's interpreter before 3.8 turns a loop bound (a 1-element array) into an int with
    ``int(array)``, which numpy 2.4 and later refuse ("only 0-dimensional arrays can be converted
    to Python scalars"): every kernel with a runtime ``tl.range`` then fails under
    ``TRITON_INTERPRET=1``. Triton 3.8 squeezes the array first; this does the same for the
    earlier interpreters (the device image's triton 3.6), and nothing on compiled kernels."""
    try:
        from triton.runtime import interpreter
    except ImportError:
        return
    patch = getattr(interpreter, "_patch_lang_tensor", None)
    if patch is None or getattr(patch, "_squeezes", False):
        return

    def patched(tensor, scope):
        patch(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.squeeze()))

    patched._squeezes = True
    interpreter._patch_lang_tensor = patched


if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0") and tuple(
        int(v) for v in triton.__version__.split(".")[:2]) < (3, 8):
    _interpreter_squeezes_scalars()


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


@triton.jit
def store_coords(p_ptr, stride, offs, x, y, z, mask, D: tl.constexpr):
    # D coordinates into a (D, stride) array: x at p_ptr + offs, y a row further, z two; the
    # rows a D < 3 array does not have are not written.
    tl.store(p_ptr + offs, x, mask=mask)
    if D >= 2:
        tl.store(p_ptr + stride + offs, y, mask=mask)
    if D >= 3:
        tl.store(p_ptr + 2 * stride + offs, z, mask=mask)


def on_device(device: torch.device):
    """Triton launches on the current CUDA device: make it the inputs' one. CPU tensors (under
    TRITON_INTERPRET=1) need nothing."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
