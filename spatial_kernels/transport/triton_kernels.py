"""The transport's Triton kernels for a dense weight (``triton_gpu.py`` says what they compute
and how the work is laid out): one pass that gives the value and, with ``GRADS``, the position
gradients' partial sums and ``dW``; and the pass that adds W's gradient into ``W.grad``."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._triton_common import load_coords, sm_count, store_coords


@triton.jit
def _pair_geometry(ox, oy, oz, ix, iy, iz):
    # Differences, distances and inverse distances (0 at zero distance) of a tile of pairs.
    ux = ox[:, None] - ix[None, :]  # [BLOCK_M, BLOCK_N]
    uy = oy[:, None] - iy[None, :]  # [BLOCK_M, BLOCK_N]
    uz = oz[:, None] - iz[None, :]  # [BLOCK_M, BLOCK_N]
    d2 = ux * ux + uy * uy + uz * uz
    nonzero = d2 >= 1.1754943508222875e-38  # smallest normal float32, see the docstring
    inv_d = tl.where(nonzero, tl.math.rsqrt(tl.where(nonzero, d2, 1.0)), 0.0)
    return ux, uy, uz, d2 * inv_d, inv_d


@triton.jit
def _program_block(p_in_ptr, n_out, n_in, rows_per_program, D: tl.constexpr, BLOCK_N: tl.constexpr):
    # This program's BLOCK_N columns (with their input positions) and its run of rows.
    pid_n = tl.program_id(0).to(tl.int64)
    pid_r = tl.program_id(1).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < n_in
    ix, iy, iz = load_coords(p_in_ptr, offs_n, mask_n, D)
    row_start = pid_r * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, n_out)
    return pid_n, pid_r, offs_n, mask_n, ix, iy, iz, row_start, row_end


@triton.jit
def _row_tile(W_ptr, p_out_ptr, start_m, row_end, offs_n, mask_n, stride_wm, stride_wn, stride_wk,
              D: tl.constexpr, BLOCK_M: tl.constexpr, TAPS: tl.constexpr):
    # One row tile: its rows, output positions, the first tap's W block and the pairs' weights
    # |W| (summed over the taps of a conv weight) in float32. Masked entries read as 0 and so
    # add nothing to any sum, whatever their distance.
    offs_m = start_m + tl.arange(0, BLOCK_M)
    mask_m = offs_m < row_end
    ox, oy, oz = load_coords(p_out_ptr, offs_m, mask_m, D)
    mask = mask_m[:, None] & mask_n[None, :]
    offs_w = offs_m[:, None] * stride_wm + offs_n[None, :] * stride_wn
    b_w = tl.load(W_ptr + offs_w, mask=mask, other=0.0).to(tl.float32)  # [BLOCK_M, BLOCK_N]
    b_a = tl.abs(b_w)
    for k in tl.static_range(1, TAPS):
        b_a += tl.abs(tl.load(W_ptr + offs_w + k * stride_wk, mask=mask, other=0.0).to(tl.float32))
    return offs_m, mask_m, mask, ox, oy, oz, b_w, b_a, offs_w


@triton.jit
def _store_dW(dW_ptr, offs_m, offs_n, mask, b_w, d, dW_scale, stride_dwm, stride_dwn):
    # dW_scale * sign(W) * d of a row tile of a Linear weight (b_w: its W block)
    sd = dW_scale * d
    b_dw = tl.where(b_w > 0, sd, tl.where(b_w < 0, -sd, 0.0))
    tl.store(dW_ptr + offs_m[:, None] * stride_dwm + offs_n[None, :] * stride_dwn, b_dw.to(dW_ptr.dtype.element_ty),
             mask=mask)


@triton.jit
def _transport_fwd_bwd_kernel(
    W_ptr, p_in_ptr, p_out_ptr, value_part_ptr, dW_ptr, grad_out_part_ptr, grad_in_part_ptr,
    n_out, n_in, stride_wm, stride_wn, stride_wk, stride_dwm, stride_dwn,
    rows_per_program, dW_scale,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, NUM_STAGES: tl.constexpr,
    STORE_DW: tl.constexpr, TAPS: tl.constexpr, GRADS: tl.constexpr,
):
    """``value_part[pid_r, pid_n]``, the sum of ``|W_ij| d_ij`` over this program's ``BLOCK_N``
    columns and ``rows_per_program`` rows, and (``GRADS``) in the same pass ``dW_scale * dW``
    (when ``STORE_DW``, a Linear weight's only: ``TAPS == 1``) and the partial sums of both
    position gradients:
    ``grad_out_part[pid_n, k, i]`` (row sums) and ``grad_in_part[pid_r, k, j]`` (column sums)."""
    pid_n, pid_r, offs_n, mask_n, ix, iy, iz, row_start, row_end = _program_block(
        p_in_ptr, n_out, n_in, rows_per_program, D, BLOCK_N)
    # column sums stay element-wise in registers and are reduced once, after the loop
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    hx = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    hy = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    hz = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    out_part_ptr = grad_out_part_ptr + pid_n * (D * n_out)
    for start_m in tl.range(row_start, row_end, BLOCK_M, num_stages=NUM_STAGES):
        offs_m, mask_m, mask, ox, oy, oz, b_w, b_a, offs_w = _row_tile(
            W_ptr, p_out_ptr, start_m, row_end, offs_n, mask_n, stride_wm, stride_wn, stride_wk, D, BLOCK_M, TAPS)
        ux, uy, uz, d, inv_d = _pair_geometry(ox, oy, oz, ix, iy, iz)
        acc += b_a * d
        if GRADS:
            s = b_a * inv_d  # [BLOCK_M, BLOCK_N]
            sx = s * ux
            sy = s * uy
            sz = s * uz
            hx += sx
            hy += sy
            hz += sz
            # a row lies within one warp: these sums need no shared memory
            store_coords(out_part_ptr, n_out, offs_m, tl.sum(sx, axis=1), tl.sum(sy, axis=1), tl.sum(sz, axis=1),
                         mask_m, D)
        if GRADS and STORE_DW:
            _store_dW(dW_ptr, offs_m, offs_n, mask, b_w, d, dW_scale, stride_dwm, stride_dwn)
    tl.store(value_part_ptr + pid_r * tl.num_programs(0) + pid_n, tl.sum(tl.sum(acc, axis=1), axis=0))
    if GRADS:
        store_coords(grad_in_part_ptr + pid_r * (D * n_in), n_in, offs_n, -tl.sum(hx, axis=0),
                     -tl.sum(hy, axis=0), -tl.sum(hz, axis=0), mask_n, D)


@triton.jit
def _transport_accumulate_kernel(
    W_ptr, p_in_ptr, p_out_ptr, G_ptr, up_ptr,
    n_out, n_in, stride_wm, stride_wn, stride_wk, stride_gm, stride_gn, stride_gk,
    rows_per_program, dW_scale,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, NUM_STAGES: tl.constexpr,
    TAPS: tl.constexpr, ACCUMULATE: tl.constexpr,
):
    """``G (+)= up * dW_scale * dT/dW`` over this program's block: W's part of the gradient added
    where the task gradient already lies (``ACCUMULATE``: one read of W and one read-modify-write
    of G), or written into a fresh G. ``up`` (the upstream gradient, a device scalar) is read
    here, so the host never waits for the GPU."""
    pid_n, pid_r, offs_n, mask_n, ix, iy, iz, row_start, row_end = _program_block(
        p_in_ptr, n_out, n_in, rows_per_program, D, BLOCK_N)
    up = tl.load(up_ptr).to(tl.float32)
    for start_m in tl.range(row_start, row_end, BLOCK_M, num_stages=NUM_STAGES):
        offs_m, mask_m, mask, ox, oy, oz, b_w, b_a, offs_w = _row_tile(
            W_ptr, p_out_ptr, start_m, row_end, offs_n, mask_n, stride_wm, stride_wn, stride_wk, D, BLOCK_M, TAPS)
        _, _, _, d, _ = _pair_geometry(ox, oy, oz, ix, iy, iz)
        sd = dW_scale * d
        offs_g = offs_m[:, None] * stride_gm + offs_n[None, :] * stride_gn
        for k in tl.static_range(0, TAPS):
            if k == 0:
                b_wk = b_w
            else:  # a conv weight's other taps: read again, from cache
                b_wk = tl.load(W_ptr + offs_w + k * stride_wk, mask=mask, other=0.0).to(tl.float32)
            v = tl.where(b_wk > 0, sd, tl.where(b_wk < 0, -sd, 0.0)) * up
            if ACCUMULATE:
                v += tl.load(G_ptr + offs_g + k * stride_gk, mask=mask, other=0.0).to(tl.float32)
            tl.store(G_ptr + offs_g + k * stride_gk, v.to(G_ptr.dtype.element_ty), mask=mask)


# The host side the dense and grouped launchers share.

# NOTE: from the compiled code only (python -m spatial_kernels.aot; not yet timed on a GPU): the
# dense passes take at most 128 registers x 256 threads, so 2 programs fit an SM; a grid of 4
# such waves leaves the tail wave a quarter of the work.
PROGRAMS_PER_SM = 2
WAVES = 4
# at most 32 row tiles per program, so that the grad p_in partials stay small
MAX_ROW_TILES = 32


def tiles_per_program(row_tiles: int, col_blocks: int, target: int) -> int:
    """How many row tiles a program walks: about ``target`` programs in all (``target_programs``),
    at least two tiles each where that still leaves a program for every slot of a wave (so the
    ``cp.async`` pipeline has a next tile to load while one is computed), at most MAX_ROW_TILES."""
    total = row_tiles * col_blocks
    tiles = triton.cdiv(total, max(1, target))
    if total >= 2 * (target // WAVES):
        tiles = max(tiles, 2)
    return max(1, min(tiles, MAX_ROW_TILES, row_tiles))


def target_programs(device) -> int:
    """Programs a pass's grid aims at on ``device``: WAVES waves of PROGRAMS_PER_SM per SM."""
    return sm_count(device) * PROGRAMS_PER_SM * WAVES


def as_taps(W: torch.Tensor) -> torch.Tensor:
    """W as ``(n_out, n_in, taps)``: a view for a Linear weight (one tap) and, where strides
    allow, for a conv weight ``(n_out, n_in, *kernel)``."""
    W = W.detach()
    return W.unsqueeze(2) if W.dim() == 2 else W.flatten(2)


def positions(p: torch.Tensor) -> torch.Tensor:
    return p.detach().contiguous()
