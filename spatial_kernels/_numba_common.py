"""Helpers shared by the Numba kernels of every cost."""
from __future__ import annotations

import numpy as np
import torch
from llvmlite import ir as llvm_ir
from numba import types
from numba.extending import intrinsic, overload

# Reassociation lets LLVM vectorise the reductions; no-NaN/no-Inf flags are left out on purpose:
# the zero-distance branch divides by zero speculatively and selects the result away.
FASTMATH = {"reassoc", "contract", "arcp", "nsz", "afn"}

# Upper bound on the row chunks a kernel's work is split into. The split depends on the shape
# only, so results do not depend on the thread count; 64 keeps every core of a large CPU busy.
MAX_CHUNKS = 64


def num_chunks(n_rows: int, max_chunks: int = MAX_CHUNKS) -> int:
    return max(1, min(n_rows, max_chunks))


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """Zero-copy numpy view of a CPU tensor (a copy only when it is not contiguous)."""
    return t.detach().contiguous().numpy()


def soa3(p: torch.Tensor) -> np.ndarray:
    """``(n, D)`` positions as a ``(3, n)`` structure of arrays, zero-padded to three coordinates."""
    n, D = p.shape
    out = np.zeros((3, n), dtype=to_numpy(p[:0]).dtype)
    out[:D] = to_numpy(p).T
    return out


# exp(-d) for d >= 0, vectorisable. libm's exp is a scalar call that stops LLVM from
# vectorising the loop around it; this one is plain arithmetic: k = round(d log2 e),
# r = k ln2 - d (Cody-Waite, |r| <= ln2 / 2), exp(r) by its degree-6 Taylor polynomial
# (relative error < 2.5e-7, float32's own rounding) and 2^-k written into the exponent bits.
# d is clamped at 87, where float32 underflows. float64 keeps libm's exp for full precision.
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # ln 2 = _LN2_HI + _LN2_LO; _LN2_HI is exact in 9 bits
_LN2_LO = np.float32(-2.12194440e-4)
_D_MAX = np.float32(87.0)  # exp(-87) ~ 1.6e-38, the smallest normal float32


@intrinsic
def _int32_bits_as_float32(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_ir.FloatType())

    return types.float32(types.int32), codegen


def exp_neg(d):
    """``exp(-d)`` inside Numba kernels: vectorisable in float32, libm's in float64."""
    return np.exp(-d)


@overload(exp_neg, inline="always", jit_options={"fastmath": FASTMATH})
def _exp_neg_overload(d):
    if d == types.float32:
        def exp_neg_f32(d):
            d = min(d, _D_MAX)
            k = np.floor(d * _LOG2E + np.float32(0.5))
            r = k * _LN2_HI - d + k * _LN2_LO
            q = np.float32(1.0 / 720.0)
            q = q * r + np.float32(1.0 / 120.0)
            q = q * r + np.float32(1.0 / 24.0)
            q = q * r + np.float32(1.0 / 6.0)
            q = q * r + np.float32(0.5)
            q = q * r + np.float32(1.0)
            q = q * r + np.float32(1.0)
            return q * _int32_bits_as_float32((np.int32(127) - np.int32(k)) << 23)

        return exp_neg_f32
    return lambda d: np.exp(-d)
