"""Transport cost on CPU: fused Numba kernels, zero-copy through numpy.

Positions travel as structure-of-arrays ``(3, n)`` padded with zero coordinates (a padded
coordinate adds nothing to a distance), so one kernel serves D = 1, 2 and 3 and its inner loop
over ``j`` runs on unit-stride arrays that LLVM vectorises.

Work is split into ``num_chunks`` contiguous row blocks fixed by the shape alone, never by the
thread count: each chunk owns its rows of ``dW`` and ``grad p_out`` and a private partial of
``grad p_in`` (a column reduction), and the partials are summed in chunk order afterwards. The
result is therefore the same bit for bit whatever the number of threads. Extra memory besides
``dW``: ``num_chunks * 3 * n_in + 4 * n_out`` numbers.

Grouped weights (a grouped or depthwise convolution, ``(n_out, n_in / G, *kernel)``): row i
reads the ``n_in / G`` input neurons from ``(i // (n_out / G)) * n_in / G`` on; the kernels index
the input positions and the partials of ``grad p_in`` at that offset themselves (no loop over
groups, no gathered copy), with the same extra memory.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from .. import _buffers
from .._numba_common import FASTMATH, num_chunks, soa3, to_numpy

# One W row per inner loop: the j loop is unit stride in W, dW and the SoA positions, and its
# sums stay in the input's dtype (``zero``), which lets LLVM vectorise it (float64 row sums
# kept it scalar); rows are then summed in float64.


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _transport_fwd_bwd_kernel(W, opg, pin, pout, rows_per_chunk, row_val, dW, g_out, g_in_part, want_dW, dW_scale,
                              zero):
    # g_out None: the value alone. Numba compiles a None argument's own specialisation and
    # prunes its branches, so that loop is the value's alone (no gradient work).
    n_out, n_in = W.shape
    n_chunks = (n_out + rows_per_chunk - 1) // rows_per_chunk
    for c in prange(n_chunks):
        for i in range(c * rows_per_chunk, min((c + 1) * rows_per_chunk, n_out)):
            off = (i // opg) * n_in
            if g_out is not None:
                gx_in = g_in_part[c, 0, off:off + n_in]
                gy_in = g_in_part[c, 1, off:off + n_in]
                gz_in = g_in_part[c, 2, off:off + n_in]
            ox, oy, oz = pout[0, i], pout[1, i], pout[2, i]
            acc = zero
            gx = zero
            gy = zero
            gz = zero
            for j in range(n_in):
                w = W[i, j]
                dx = ox - pin[0, off + j]
                dy = oy - pin[1, off + j]
                dz = oz - pin[2, off + j]
                d = np.sqrt(dx * dx + dy * dy + dz * dz)
                a = abs(w)
                acc += a * d
                if g_out is not None:
                    # zero distance: zero gradient (coincident neurons never give NaN)
                    s = a / d if d > 0 else zero
                    gx += s * dx
                    gy += s * dy
                    gz += s * dz
                    gx_in[j] -= s * dx
                    gy_in[j] -= s * dy
                    gz_in[j] -= s * dz
                    if want_dW:
                        sd = dW_scale * d
                        dW[i, j] = sd if w > 0 else (-sd if w < 0 else zero)
            row_val[i] = acc
            if g_out is not None:
                g_out[0, i] = gx
                g_out[1, i] = gy
                g_out[2, i] = gz


# Value and both position gradients for planar positions (D <= 2) without dW: the forward of the
# fast path, whose dW goes straight into W.grad after backward (transport_accumulate_dW). Four
# rows share each pass over j: the column sums of grad p_in are read and written once per four
# elements, and the input positions loaded once, instead of per element; the padded third
# coordinate is left out. At 8192^2 on 2 cores this takes 13 ms where the 3-D one-row kernel took
# 23 (reading W alone: 11; benchmarks/README.md).
@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _transport_planar_fwd_kernel(W, pin, pout, rows_per_chunk, row_val, g_out, g_in_part, zero):
    n_out, n_in = W.shape
    n_chunks = (n_out + rows_per_chunk - 1) // rows_per_chunk
    for c in prange(n_chunks):
        gx_in = g_in_part[c, 0]
        gy_in = g_in_part[c, 1]
        lo, hi = c * rows_per_chunk, min((c + 1) * rows_per_chunk, n_out)
        i = lo
        while i + 3 < hi:
            ox0, oy0 = pout[0, i], pout[1, i]
            ox1, oy1 = pout[0, i + 1], pout[1, i + 1]
            ox2, oy2 = pout[0, i + 2], pout[1, i + 2]
            ox3, oy3 = pout[0, i + 3], pout[1, i + 3]
            acc0 = acc1 = acc2 = acc3 = zero
            gx0 = gx1 = gx2 = gx3 = zero
            gy0 = gy1 = gy2 = gy3 = zero
            for j in range(n_in):
                px = pin[0, j]
                py = pin[1, j]
                dx0 = ox0 - px
                dy0 = oy0 - py
                dx1 = ox1 - px
                dy1 = oy1 - py
                dx2 = ox2 - px
                dy2 = oy2 - py
                dx3 = ox3 - px
                dy3 = oy3 - py
                d0 = np.sqrt(dx0 * dx0 + dy0 * dy0)
                d1 = np.sqrt(dx1 * dx1 + dy1 * dy1)
                d2 = np.sqrt(dx2 * dx2 + dy2 * dy2)
                d3 = np.sqrt(dx3 * dx3 + dy3 * dy3)
                a0 = abs(W[i, j])
                a1 = abs(W[i + 1, j])
                a2 = abs(W[i + 2, j])
                a3 = abs(W[i + 3, j])
                acc0 += a0 * d0
                acc1 += a1 * d1
                acc2 += a2 * d2
                acc3 += a3 * d3
                # zero distance: zero gradient (coincident neurons never give NaN)
                s0 = a0 / d0 if d0 > 0 else zero
                s1 = a1 / d1 if d1 > 0 else zero
                s2 = a2 / d2 if d2 > 0 else zero
                s3 = a3 / d3 if d3 > 0 else zero
                gx0 += s0 * dx0
                gy0 += s0 * dy0
                gx1 += s1 * dx1
                gy1 += s1 * dy1
                gx2 += s2 * dx2
                gy2 += s2 * dy2
                gx3 += s3 * dx3
                gy3 += s3 * dy3
                gx_in[j] -= (s0 * dx0 + s1 * dx1) + (s2 * dx2 + s3 * dx3)
                gy_in[j] -= (s0 * dy0 + s1 * dy1) + (s2 * dy2 + s3 * dy3)
            row_val[i], row_val[i + 1], row_val[i + 2], row_val[i + 3] = acc0, acc1, acc2, acc3
            g_out[0, i], g_out[0, i + 1], g_out[0, i + 2], g_out[0, i + 3] = gx0, gx1, gx2, gx3
            g_out[1, i], g_out[1, i + 1], g_out[1, i + 2], g_out[1, i + 3] = gy0, gy1, gy2, gy3
            i += 4
        while i < hi:  # the chunk's last rows, one at a time
            ox, oy = pout[0, i], pout[1, i]
            acc = gx = gy = zero
            for j in range(n_in):
                dx = ox - pin[0, j]
                dy = oy - pin[1, j]
                d = np.sqrt(dx * dx + dy * dy)
                a = abs(W[i, j])
                acc += a * d
                s = a / d if d > 0 else zero
                gx += s * dx
                gy += s * dy
                gx_in[j] -= s * dx
                gy_in[j] -= s * dy
            row_val[i] = acc
            g_out[0, i] = gx
            g_out[1, i] = gy
            i += 1


# Conv weights get kernels of their own rather than a tap loop in the ones above: a runtime
# inner loop over the taps keeps LLVM from vectorising the j loop, which is what the Linear
# kernels' speed rests on.
@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _transport_taps_fwd_bwd_kernel(W, K, opg, pin, pout, rows_per_chunk, row_val, dW, g_out, g_in_part, want_dW,
                                   dW_scale, zero):
    # A conv weight as (n_out, n_in * K): the pair (i, j) weighs sum_k |W[i, j*K + k]|; g_out
    # None: the value alone, as _transport_fwd_bwd_kernel
    n_out = W.shape[0]
    n_in = W.shape[1] // K
    n_chunks = (n_out + rows_per_chunk - 1) // rows_per_chunk
    for c in prange(n_chunks):
        for i in range(c * rows_per_chunk, min((c + 1) * rows_per_chunk, n_out)):
            off = (i // opg) * n_in
            if g_out is not None:
                gx_in = g_in_part[c, 0, off:off + n_in]
                gy_in = g_in_part[c, 1, off:off + n_in]
                gz_in = g_in_part[c, 2, off:off + n_in]
            ox, oy, oz = pout[0, i], pout[1, i], pout[2, i]
            acc = zero
            gx = zero
            gy = zero
            gz = zero
            for j in range(n_in):
                dx = ox - pin[0, off + j]
                dy = oy - pin[1, off + j]
                dz = oz - pin[2, off + j]
                d = np.sqrt(dx * dx + dy * dy + dz * dz)
                a = zero
                for k in range(K):
                    w = W[i, j * K + k]
                    a += abs(w)
                    if g_out is not None and want_dW:
                        sd = dW_scale * d
                        dW[i, j * K + k] = sd if w > 0 else (-sd if w < 0 else zero)
                acc += a * d
                if g_out is not None:
                    s = a / d if d > 0 else zero
                    gx += s * dx
                    gy += s * dy
                    gz += s * dz
                    gx_in[j] -= s * dx
                    gy_in[j] -= s * dy
                    gz_in[j] -= s * dz
            row_val[i] = acc
            if g_out is not None:
                g_out[0, i] = gx
                g_out[1, i] = gy
                g_out[2, i] = gz


# dW straight into a gradient: G[i, j] = (accumulate ? G[i, j] : 0) + up * sign(W[i, j]) * dW_scale * d_ij,
# the transport's part of W.grad added where the task gradient already lies (one read of W, one
# read-modify-write of G); the product is rounded as the saved dW times the upstream gradient
# would be, so that G ends bit for bit as autograd's sum of the two would.
@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _transport_accumulate_kernel(W, opg, pin, pout, rows_per_chunk, G, accumulate, dW_scale, up, zero):
    n_out, n_in = W.shape
    n_chunks = (n_out + rows_per_chunk - 1) // rows_per_chunk
    for c in prange(n_chunks):
        for i in range(c * rows_per_chunk, min((c + 1) * rows_per_chunk, n_out)):
            ox, oy, oz = pout[0, i], pout[1, i], pout[2, i]
            off = (i // opg) * n_in
            for j in range(n_in):
                w = W[i, j]
                dx = ox - pin[0, off + j]
                dy = oy - pin[1, off + j]
                dz = oz - pin[2, off + j]
                sd = dW_scale * np.sqrt(dx * dx + dy * dy + dz * dz)
                v = (sd if w > 0 else (-sd if w < 0 else zero)) * up
                G[i, j] = G[i, j] + v if accumulate else v


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _transport_taps_accumulate_kernel(W, K, opg, pin, pout, rows_per_chunk, G, accumulate, dW_scale, up, zero):
    n_out = W.shape[0]
    n_in = W.shape[1] // K
    n_chunks = (n_out + rows_per_chunk - 1) // rows_per_chunk
    for c in prange(n_chunks):
        for i in range(c * rows_per_chunk, min((c + 1) * rows_per_chunk, n_out)):
            ox, oy, oz = pout[0, i], pout[1, i], pout[2, i]
            off = (i // opg) * n_in
            for j in range(n_in):
                dx = ox - pin[0, off + j]
                dy = oy - pin[1, off + j]
                dz = oz - pin[2, off + j]
                sd = dW_scale * np.sqrt(dx * dx + dy * dy + dz * dz)
                for k in range(K):
                    w = W[i, j * K + k]
                    v = (sd if w > 0 else (-sd if w < 0 else zero)) * up
                    G[i, j * K + k] = G[i, j * K + k] + v if accumulate else v


def _taps(W: torch.Tensor) -> int:
    """Kernel taps per (out, in) pair: 1 for a Linear weight, prod(kernel) for a conv weight."""
    return int(np.prod(W.shape[2:], dtype=np.int64)) if W.dim() > 2 else 1


def transport_value(W: torch.Tensor, p_in: torch.Tensor, p_out: torch.Tensor, groups: int = 1,
                    scale: float = 1.0) -> torch.Tensor:
    n_out, K = W.shape[0], _taps(W)
    W_np = to_numpy(W).reshape(n_out, -1)
    row_val = np.empty(n_out, dtype=W_np.dtype)
    t = W_np.dtype.type
    args = (n_out // groups, soa3(p_in), soa3(p_out), _rows_per_chunk(n_out), row_val, W_np[:1, :1], None, None,
            False, t(1), t(0))
    if K == 1:
        _transport_fwd_bwd_kernel(W_np, *args)
    else:
        _transport_taps_fwd_bwd_kernel(W_np, K, *args)
    value = torch.tensor(row_val.sum(dtype=np.float64), dtype=p_in.dtype)
    return value if scale == 1.0 else value * scale


def transport_fwd(W, p_in, p_out, needs_grad=(True, True, True), scale=1.0, groups: int = 1):
    """``scale`` times the value and the gradients of ``needs_grad = (W, p_in, p_out)``, in one
    pass over W; ``dW`` (W's shape) is stored already scaled. W is ``(n_out, n_in / groups)`` or a
    conv weight ``(n_out, n_in / groups, *kernel)``: row i reads the input neurons of its group."""
    n_out, n_in = W.shape[:2]
    K = _taps(W)
    D = p_in.shape[1]
    dtype = W.dtype
    W_np = to_numpy(W).reshape(n_out, n_in * K)
    rows = _rows_per_chunk(n_out)
    chunks = (n_out + rows - 1) // rows
    np_dtype = W_np.dtype
    row_val = np.empty(n_out, dtype=np_dtype)
    # dW in reused memory (_buffers.py): a fresh 268 MB buffer costs more in page faults than the kernel
    dW = _buffers.empty(tuple(W.shape), dtype) if needs_grad[0] else torch.empty((1, 1), dtype=dtype)
    dW_np = dW.numpy().reshape(n_out, n_in * K) if needs_grad[0] else dW.numpy()
    g_out = np.empty((3, n_out), dtype=np_dtype)
    g_in_part = np.zeros((chunks, 3, n_in * groups), dtype=np_dtype)
    if K == 1 and D <= 2 and not needs_grad[0] and groups == 1:
        g_out[2] = 0
        _transport_planar_fwd_kernel(W_np, soa3(p_in), soa3(p_out), rows, row_val, g_out, g_in_part,
                                     np_dtype.type(0))
    else:
        args = (n_out // groups, soa3(p_in), soa3(p_out), rows, row_val, dW_np, g_out, g_in_part, needs_grad[0],
                np_dtype.type(scale), np_dtype.type(0))
        if K == 1:
            _transport_fwd_bwd_kernel(W_np, *args)
        else:
            _transport_taps_fwd_bwd_kernel(W_np, K, *args)
    value = torch.tensor(scale * row_val.sum(dtype=np.float64), dtype=dtype)
    grad_W = dW if needs_grad[0] else None
    grad_in = _scaled(g_in_part.sum(axis=0)[:D].T, scale) if needs_grad[1] else None
    grad_out = _scaled(g_out[:D].T, scale) if needs_grad[2] else None
    return value, grad_W, grad_in, grad_out


def _scaled(g: np.ndarray, scale: float) -> torch.Tensor:
    # O(n) position gradients: scaled here rather than in the kernel
    g = np.ascontiguousarray(g)
    if scale != 1.0:
        g *= g.dtype.type(scale)
    return torch.from_numpy(g)


def _rows_per_chunk(n_out: int) -> int:
    return max(1, -(-n_out // num_chunks(n_out)))


def transport_accumulate_dW(W, p_in, p_out, scale: float, upstream: torch.Tensor, grad: torch.Tensor | None,
                            groups: int = 1):
    """``upstream * scale * dT/dW`` added into ``grad`` in place (one pass over W and ``grad``),
    or written into a new tensor when ``grad`` is None (returned). ``grad`` must be a contiguous
    CPU tensor of W's shape and dtype."""
    n_out, n_in = W.shape[:2]
    K = _taps(W)
    W_np = to_numpy(W).reshape(n_out, n_in * K)
    out = _buffers.empty(tuple(W.shape), W.dtype) if grad is None else grad
    G_np = out.detach().numpy().reshape(n_out, n_in * K)
    t = W_np.dtype.type
    args = (n_out // groups, soa3(p_in), soa3(p_out), _rows_per_chunk(n_out), G_np, grad is not None, t(scale),
            t(float(upstream)), t(0))
    if K == 1:
        _transport_accumulate_kernel(W_np, *args)
    else:
        _transport_taps_accumulate_kernel(W_np, K, *args)
    return out
