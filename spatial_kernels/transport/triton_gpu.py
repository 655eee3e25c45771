"""Transport cost on GPU: tiled Triton kernels that stream W once.

With ``u_ij = p_out[i] - p_in[j]``, ``d_ij = ||u_ij||`` and ``s_ij = |W_ij| / d_ij`` (0 where
``d_ij = 0``, so coincident neurons give a zero gradient, never NaN)::

    T             =  sum_ij |W_ij| d_ij
    dT/dW_ij      =  sign(W_ij) d_ij
    dT/dp_out[i]  =  sum_j s_ij u_ij      a row reduction
    dT/dp_in[j]   = -sum_i s_ij u_ij      a column reduction

A program owns a block of ``BLOCK_N`` columns and a run of ``rows_per_program`` rows, and walks
the rows in tiles of ``BLOCK_M``, reading each element of W once; distances are recomputed in
registers from the positions, so the only W-sized array ever written is ``dW``. Both
reductions are two-pass, so that they are deterministic: programs write partial sums to their
own slices of small buffers and torch sums the slices afterwards in a fixed order, instead of
racing float atomics.

- Columns: the column sums (value, ``grad p_in``) of a program stay element-wise in registers
  across its row tiles and are reduced once at the end, into ``grad_in_part[pid_r, k, j]``.
- Rows: each row tile's sums go to ``grad_out_part[pid_n, k, i]``. Triton lays a tile's rows
  out within single warps, so these per-tile reductions are shuffles only. (Looping over
  columns instead, with rows held, puts the per-tile reduction across warps, through shared
  memory: 2.5 instead of 1.1 instructions per warp and pair in the SASS for sm_90.)

``rows_per_program`` depends on the shape alone (so do the partial buffers and the order of
every sum: results are the same bit for bit from run to run). Extra memory besides ``dW``:
``(cdiv(n_in, BLOCK_N) * n_out + cdiv(n_out, rows_per_program) * n_in) * D`` float32, at most
``3 / BLOCK_N`` float32 per W element.

``1 / d`` comes from one ``rsqrt`` per pair (``d = d2 * rsqrt(d2)``, ``s = |w| * rsqrt(d2)``)
rather than a ``sqrt`` and a division. Squared distances below the smallest normal float32
(``d < 1.1e-19``) count as zero distance: the approximate ``rsqrt`` flushes subnormals, and the
error this makes in the value is below ``|W_ij| * 1.1e-19``.

A constant weight on the cost (``scale``) is applied to ``dW`` as it is stored (``dW_scale``),
so a weighted cost needs no second W-sized pass; the O(n) sums are scaled by torch.

A conv weight ``(n_out, n_in, *kernel)`` is read as ``(n_out, n_in, taps)``: a pair's weight is
the sum of ``|W|`` over its taps (``TAPS``, a compile-time constant, 1 for a Linear weight,
where the code is the plain 2-D kernel's), and each tap's ``dW`` is ``sign(W) * d``; the
other taps are read again from cache for their signs when ``dW`` is stored.

Grouped weights (a grouped or depthwise convolution, ``(n_out, n_in / G, *kernel)``) have kernels
of their own (``_grouped_*``): row i reads the ``n_in / G`` input positions from
``(i // (n_out / G)) * n_in / G`` on, gathered per pair from the positions, never copied. Where a
group holds at least ``BLOCK_M`` rows (``ONE_GROUP``), a program's rows lie in one group and its
column sums stay in registers, as above, into ``grad_in_part[run, k, j]`` (run: the program's
place within its group); with fewer rows per group (depthwise: one), a tile's rows span groups and
each pair's contribution to ``grad p_in`` is stored per row, ``grad_in_rows[k, i, j_local]``,
which torch sums over each group's rows: at most ``BLOCK_M * D * n_in`` floats, O(n_in).

W is read in its own dtype (float32, bfloat16 or float16) with any strides, through a
``NUM_STAGES``-deep ``cp.async`` pipeline (``tl.range(num_stages=...)``), and the math runs in
float32; ``dW`` is written in W's dtype and memory layout. Positions are float32 and made
contiguous ``(n, D)`` by the launcher (O(n) copies at most). A transposed W is correct but
read with a column stride, i.e. uncoalesced.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._triton_common import load_coords, on_device, store_coords

# NOTE: none of this is timed on a GPU yet (none was available); benchmarks/bench_gpu.py is
# where to time it. Chosen from the compiled code alone (python -m spatial_kernels.aot and the
# SASS, sm_90, bf16 W, D=3, dW stored, sizes divisible by 16): 32x64 tiles with 8 warps take
# 128 registers (2 programs per SM), no spills, and 1.23 instructions per warp and pair, within
# the issue rate needed for the HBM roofline in bf16 (~0.8e12 pairs/s at 3.35 TB/s). Without
# the cp.async pipeline, 1.11, but a program has one tile of W in flight instead of two.
BLOCK_M = 32
BLOCK_N = 64
NUM_WARPS = 8
NUM_STAGES = 3
# rows_per_program: enough programs to fill a GPU (~2048) but at most 32 row tiles each, so that
# the grad p_in partials stay small (cdiv(n_out, 1024) slices at large n_out)
TARGET_PROGRAMS = 2048
MAX_ROW_TILES = 32
# A conv weight's tap loads in a cp.async pipeline would take 145-280 KB of shared memory
# (ptxas, 3x3 taps, float32: over the 228 KB an SM has), so conv weights are not pipelined.
CONV_NUM_STAGES = 1


def _stages(taps: int) -> int:
    return NUM_STAGES if taps == 1 else CONV_NUM_STAGES


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
def _transport_fwd_kernel(
    W_ptr, p_in_ptr, p_out_ptr, value_part_ptr,
    n_out, n_in, stride_wm, stride_wn, stride_wk,
    rows_per_program,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, NUM_STAGES: tl.constexpr,
    TAPS: tl.constexpr,
):
    """Value only: ``value_part[pid_r, pid_n]`` = the sum of ``|W_ij| d_ij`` over this
    program's ``BLOCK_N`` columns and ``rows_per_program`` rows."""
    pid_n, pid_r, offs_n, mask_n, ix, iy, iz, row_start, row_end = _program_block(
        p_in_ptr, n_out, n_in, rows_per_program, D, BLOCK_N)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for start_m in tl.range(row_start, row_end, BLOCK_M, num_stages=NUM_STAGES):
        offs_m, mask_m, mask, ox, oy, oz, b_w, b_a, offs_w = _row_tile(
            W_ptr, p_out_ptr, start_m, row_end, offs_n, mask_n, stride_wm, stride_wn, stride_wk, D, BLOCK_M, TAPS)
        _, _, _, d, _ = _pair_geometry(ox, oy, oz, ix, iy, iz)
        acc += b_a * d
    tl.store(value_part_ptr + pid_r * tl.num_programs(0) + pid_n, tl.sum(tl.sum(acc, axis=1), axis=0))


@triton.jit
def _transport_fwd_bwd_kernel(
    W_ptr, p_in_ptr, p_out_ptr, value_part_ptr, dW_ptr, grad_out_part_ptr, grad_in_part_ptr,
    n_out, n_in, stride_wm, stride_wn, stride_wk, stride_dwm, stride_dwn, stride_dwk,
    rows_per_program, dW_scale,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, NUM_STAGES: tl.constexpr,
    STORE_DW: tl.constexpr, TAPS: tl.constexpr,
):
    """Value, ``dW_scale * dW`` (when ``STORE_DW``) and the partial sums of both position gradients over
    this program's ``BLOCK_N`` columns and ``rows_per_program`` rows, in one pass over them:
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
        if STORE_DW:
            sd = dW_scale * d
            offs_dw = offs_m[:, None] * stride_dwm + offs_n[None, :] * stride_dwn
            b_dw = tl.where(b_w > 0, sd, tl.where(b_w < 0, -sd, 0.0))
            tl.store(dW_ptr + offs_dw, b_dw.to(dW_ptr.dtype.element_ty), mask=mask)
            for k in tl.static_range(1, TAPS):  # a conv weight's other taps: read again, from cache
                b_wk = tl.load(W_ptr + offs_w + k * stride_wk, mask=mask, other=0.0).to(tl.float32)
                b_dw = tl.where(b_wk > 0, sd, tl.where(b_wk < 0, -sd, 0.0))
                tl.store(dW_ptr + offs_dw + k * stride_dwk, b_dw.to(dW_ptr.dtype.element_ty), mask=mask)
    tl.store(value_part_ptr + pid_r * tl.num_programs(0) + pid_n, tl.sum(tl.sum(acc, axis=1), axis=0))
    store_coords(grad_in_part_ptr + pid_r * (D * n_in), n_in, offs_n, -tl.sum(hx, axis=0), -tl.sum(hy, axis=0),
                 -tl.sum(hz, axis=0), mask_n, D)


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


@triton.jit
def _grouped_tile(W_ptr, p_in_ptr, p_out_ptr, start_m, row_end, offs_n, mask_n, n_in_local, opg,
                  stride_wm, stride_wn, stride_wk, D: tl.constexpr, BLOCK_M: tl.constexpr, TAPS: tl.constexpr):
    # One row tile of a grouped weight: as _row_tile, with each pair's input position gathered
    # from its row's group, (i // opg) * n_in_local + j.
    offs_m = start_m + tl.arange(0, BLOCK_M)
    mask_m = offs_m < row_end
    ox, oy, oz = load_coords(p_out_ptr, offs_m, mask_m, D)
    mask = mask_m[:, None] & mask_n[None, :]
    offs_in = (offs_m // opg)[:, None] * n_in_local + offs_n[None, :]  # [BLOCK_M, BLOCK_N]
    ix, iy, iz = load_coords(p_in_ptr, offs_in, mask, D)
    offs_w = offs_m[:, None] * stride_wm + offs_n[None, :] * stride_wn
    b_w = tl.load(W_ptr + offs_w, mask=mask, other=0.0).to(tl.float32)
    b_a = tl.abs(b_w)
    for k in tl.static_range(1, TAPS):
        b_a += tl.abs(tl.load(W_ptr + offs_w + k * stride_wk, mask=mask, other=0.0).to(tl.float32))
    ux = ox[:, None] - ix
    uy = oy[:, None] - iy
    uz = oz[:, None] - iz
    d2 = ux * ux + uy * uy + uz * uz
    nonzero = d2 >= 1.1754943508222875e-38  # smallest normal float32, as _pair_geometry
    inv_d = tl.where(nonzero, tl.math.rsqrt(tl.where(nonzero, d2, 1.0)), 0.0)
    return offs_m, mask_m, mask, b_w, b_a, offs_w, ux, uy, uz, d2 * inv_d, inv_d


@triton.jit
def _grouped_rows(n_out, opg, rows_per_program, runs_per_group, ONE_GROUP: tl.constexpr):
    # This program's run of rows: within one group (ONE_GROUP: runs_per_group runs per group),
    # or a plain run of rows_per_program rows.
    pid_r = tl.program_id(1).to(tl.int64)
    if ONE_GROUP:
        group = pid_r // runs_per_group
        run = pid_r % runs_per_group
        row_start = group * opg + run * rows_per_program
        row_end = tl.minimum(row_start + rows_per_program, (group + 1) * opg)
    else:
        group = pid_r * 0
        run = pid_r
        row_start = pid_r * rows_per_program
        row_end = tl.minimum(row_start + rows_per_program, n_out)
    return pid_r, group, run, row_start, row_end


@triton.jit
def _grouped_fwd_bwd_kernel(
    W_ptr, p_in_ptr, p_out_ptr, value_part_ptr, dW_ptr, grad_out_part_ptr, grad_in_ptr,
    n_out, n_in_local, opg, stride_wm, stride_wn, stride_wk, stride_dwm, stride_dwn, stride_dwk,
    rows_per_program, runs_per_group, dW_scale,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, STORE_DW: tl.constexpr,
    TAPS: tl.constexpr, GRADS: tl.constexpr, ONE_GROUP: tl.constexpr,
):
    """A grouped weight's value and (``GRADS``) ``dW_scale * dW`` (when ``STORE_DW``) and both
    position gradients' partial sums: ``grad_out_part[pid_n, k, i]`` and, with ``ONE_GROUP``,
    ``grad_in[run, k, j]`` (column sums of the program's group), else ``grad_in[k, i, j_local]``
    (one row's share)."""
    pid_n = tl.program_id(0).to(tl.int64)
    pid_r, group, run, row_start, row_end = _grouped_rows(n_out, opg, rows_per_program, runs_per_group, ONE_GROUP)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < n_in_local
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    hx = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    hy = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    hz = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    out_part_ptr = grad_out_part_ptr + pid_n * (D * n_out)
    for start_m in tl.range(row_start, row_end, BLOCK_M):
        offs_m, mask_m, mask, b_w, b_a, offs_w, ux, uy, uz, d, inv_d = _grouped_tile(
            W_ptr, p_in_ptr, p_out_ptr, start_m, row_end, offs_n, mask_n, n_in_local, opg,
            stride_wm, stride_wn, stride_wk, D, BLOCK_M, TAPS)
        acc += b_a * d
        if GRADS:
            s = b_a * inv_d
            sx = s * ux
            sy = s * uy
            sz = s * uz
            store_coords(out_part_ptr, n_out, offs_m, tl.sum(sx, axis=1), tl.sum(sy, axis=1), tl.sum(sz, axis=1),
                         mask_m, D)
            if ONE_GROUP:
                hx += sx
                hy += sy
                hz += sz
            else:  # this tile's rows span groups: each row's share, summed per group by torch
                store_coords(grad_in_ptr, n_out * n_in_local, offs_m[:, None] * n_in_local + offs_n[None, :],
                             -sx, -sy, -sz, mask, D)
            if STORE_DW:
                sd = dW_scale * d
                offs_dw = offs_m[:, None] * stride_dwm + offs_n[None, :] * stride_dwn
                for k in tl.static_range(0, TAPS):
                    if k == 0:
                        b_wk = b_w
                    else:
                        b_wk = tl.load(W_ptr + offs_w + k * stride_wk, mask=mask, other=0.0).to(tl.float32)
                    b_dw = tl.where(b_wk > 0, sd, tl.where(b_wk < 0, -sd, 0.0))
                    tl.store(dW_ptr + offs_dw + k * stride_dwk, b_dw.to(dW_ptr.dtype.element_ty), mask=mask)
    tl.store(value_part_ptr + pid_r * tl.num_programs(0) + pid_n, tl.sum(tl.sum(acc, axis=1), axis=0))
    if GRADS and ONE_GROUP:
        n_in = n_in_local * (n_out // opg)
        store_coords(grad_in_ptr + run * (D * n_in) + group * n_in_local, n_in, offs_n, -tl.sum(hx, axis=0),
                     -tl.sum(hy, axis=0), -tl.sum(hz, axis=0), mask_n, D)


@triton.jit
def _grouped_accumulate_kernel(
    W_ptr, p_in_ptr, p_out_ptr, G_ptr, up_ptr,
    n_out, n_in_local, opg, stride_wm, stride_wn, stride_wk, stride_gm, stride_gn, stride_gk,
    rows_per_program, runs_per_group, dW_scale,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, TAPS: tl.constexpr,
    ACCUMULATE: tl.constexpr, ONE_GROUP: tl.constexpr,
):
    """``G (+)= up * dW_scale * dT/dW`` of a grouped weight, as ``_transport_accumulate_kernel``."""
    pid_n = tl.program_id(0).to(tl.int64)
    pid_r, group, run, row_start, row_end = _grouped_rows(n_out, opg, rows_per_program, runs_per_group, ONE_GROUP)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < n_in_local
    up = tl.load(up_ptr).to(tl.float32)
    for start_m in tl.range(row_start, row_end, BLOCK_M):
        offs_m, mask_m, mask, b_w, b_a, offs_w, ux, uy, uz, d, inv_d = _grouped_tile(
            W_ptr, p_in_ptr, p_out_ptr, start_m, row_end, offs_n, mask_n, n_in_local, opg,
            stride_wm, stride_wn, stride_wk, D, BLOCK_M, TAPS)
        sd = dW_scale * d
        offs_g = offs_m[:, None] * stride_gm + offs_n[None, :] * stride_gn
        for k in tl.static_range(0, TAPS):
            if k == 0:
                b_wk = b_w
            else:
                b_wk = tl.load(W_ptr + offs_w + k * stride_wk, mask=mask, other=0.0).to(tl.float32)
            v = tl.where(b_wk > 0, sd, tl.where(b_wk < 0, -sd, 0.0)) * up
            if ACCUMULATE:
                v += tl.load(G_ptr + offs_g + k * stride_gk, mask=mask, other=0.0).to(tl.float32)
            tl.store(G_ptr + offs_g + k * stride_gk, v.to(G_ptr.dtype.element_ty), mask=mask)


# grouped weights: a tile's shape follows the columns a group has (depthwise: one). NOTE: 8 warps
# where a program keeps its group's column sums (64x16 tiles, 3x3 taps, bf16: 4 warps spill, 8 do
# not); the accumulating pass keeps no sums, and spills with 8 (float32, 3x3), not with 4
GROUPED_BLOCK_M = 64
GROUPED_MAX_BLOCK_N = 64
GROUPED_ACCUMULATE_WARPS = 4


def grouped_warps(one_group: bool) -> int:
    return 8 if one_group else 4


def _grouped_plan(n_out: int, n_in_local: int, groups: int):
    """``(grid, rows_per_program, runs_per_group, one_group, block_n)`` of a grouped weight, from
    its shape alone."""
    opg = n_out // groups
    block_n = min(GROUPED_MAX_BLOCK_N, max(1, triton.next_power_of_2(n_in_local)))
    col_blocks = triton.cdiv(n_in_local, block_n)
    one_group = opg >= GROUPED_BLOCK_M
    if one_group:
        tiles = max(1, min(MAX_ROW_TILES, triton.cdiv(triton.cdiv(opg, GROUPED_BLOCK_M) * col_blocks * groups,
                                                      TARGET_PROGRAMS)))
        rows_per_program = tiles * GROUPED_BLOCK_M
        runs = triton.cdiv(opg, rows_per_program)
        return (col_blocks, groups * runs), rows_per_program, runs, True, block_n
    rows_per_program = GROUPED_BLOCK_M * max(1, min(MAX_ROW_TILES, triton.cdiv(
        triton.cdiv(n_out, GROUPED_BLOCK_M) * col_blocks, TARGET_PROGRAMS)))
    return (col_blocks, triton.cdiv(n_out, rows_per_program)), rows_per_program, 1, False, block_n


def _launch_grouped(W, p_in, p_out, groups: int, grads: bool, store_dW: bool, dW_scale: float = 1.0):
    shape = W.shape
    W = _as_taps(W)
    n_out, n_in_local, taps = W.shape
    D, device = p_in.shape[1], W.device
    grid, rows_per_program, runs, one_group, block_n = _grouped_plan(n_out, n_in_local, groups)
    value_part = torch.empty(grid[1], grid[0], dtype=torch.float32, device=device)
    dW = torch.empty_like(W) if store_dW else torch.empty((0, 0, 0), dtype=W.dtype, device=device)
    dW_strides = dW.stride() if store_dW else (0, 0, 0)
    grad_out_part = torch.empty((grid[0], D, n_out) if grads else (0,), dtype=torch.float32, device=device)
    n_in = n_in_local * groups
    grad_in = torch.empty(((runs, D, n_in) if one_group else (D, n_out, n_in_local)) if grads else (0,),
                          dtype=torch.float32, device=device)
    with on_device(device):
        _grouped_fwd_bwd_kernel[grid](
            W, _positions(p_in), _positions(p_out), value_part, dW, grad_out_part, grad_in,
            n_out, n_in_local, n_out // groups, W.stride(0), W.stride(1), W.stride(2),
            dW_strides[0], dW_strides[1], dW_strides[2], rows_per_program, runs, float(dW_scale),
            D=D, BLOCK_M=GROUPED_BLOCK_M, BLOCK_N=block_n, STORE_DW=store_dW, TAPS=taps, GRADS=grads,
            ONE_GROUP=one_group, num_warps=grouped_warps(one_group),
        )
    if grads and not one_group:  # each row's share, summed over its group's rows
        grad_in = grad_in.view(D, groups, n_out // groups, n_in_local).sum(2).reshape(1, D, n_in)
    return value_part, (dW.view(shape) if store_dW else None), grad_in, grad_out_part


def _positions(p: torch.Tensor) -> torch.Tensor:
    return p.detach().contiguous()


def _grid(n_out: int, n_in: int) -> tuple[tuple[int, int], int]:
    """The grid (column blocks, row runs) and rows_per_program, from the shape alone."""
    col_blocks, row_tiles = triton.cdiv(n_in, BLOCK_N), triton.cdiv(n_out, BLOCK_M)
    tiles = max(1, min(MAX_ROW_TILES, triton.cdiv(row_tiles * col_blocks, TARGET_PROGRAMS)))
    rows_per_program = tiles * BLOCK_M
    return (col_blocks, triton.cdiv(n_out, rows_per_program)), rows_per_program


def _as_taps(W: torch.Tensor) -> torch.Tensor:
    """W as ``(n_out, n_in, taps)``: a view for a Linear weight (one tap) and, where strides
    allow, for a conv weight ``(n_out, n_in, *kernel)``."""
    W = W.detach()
    return W.unsqueeze(2) if W.dim() == 2 else W.flatten(2)


def _launch_value(W, p_in, p_out) -> torch.Tensor:
    W = _as_taps(W)
    n_out, n_in, taps = W.shape
    grid, rows_per_program = _grid(n_out, n_in)
    value_part = torch.empty(grid[1], grid[0], dtype=torch.float32, device=W.device)
    with on_device(W.device):
        _transport_fwd_kernel[grid](
            W, _positions(p_in), _positions(p_out), value_part,
            n_out, n_in, W.stride(0), W.stride(1), W.stride(2), rows_per_program,
            D=p_in.shape[1], BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, NUM_STAGES=_stages(taps), TAPS=taps,
            num_warps=NUM_WARPS,
        )
    return value_part


def _launch_fwd_bwd(W, p_in, p_out, store_dW: bool, dW_scale: float = 1.0):
    shape = W.shape
    W = _as_taps(W)
    n_out, n_in, taps = W.shape
    D = p_in.shape[1]
    device = W.device
    grid, rows_per_program = _grid(n_out, n_in)
    value_part = torch.empty(grid[1], grid[0], dtype=torch.float32, device=device)
    # empty_like keeps W's layout (for a dense W), so dW is written as W is read
    dW = torch.empty_like(W) if store_dW else torch.empty((0, 0, 0), dtype=W.dtype, device=device)
    dW_strides = dW.stride() if store_dW else (0, 0, 0)
    grad_out_part = torch.empty((grid[0], D, n_out), dtype=torch.float32, device=device)
    grad_in_part = torch.empty((grid[1], D, n_in), dtype=torch.float32, device=device)
    with on_device(device):
        _transport_fwd_bwd_kernel[grid](
            W, _positions(p_in), _positions(p_out), value_part, dW, grad_out_part, grad_in_part,
            n_out, n_in, W.stride(0), W.stride(1), W.stride(2), dW_strides[0], dW_strides[1], dW_strides[2],
            rows_per_program, float(dW_scale), D=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, NUM_STAGES=_stages(taps),
            STORE_DW=store_dW, TAPS=taps, num_warps=NUM_WARPS,
        )
    return value_part, (dW.view(shape) if store_dW else None), grad_in_part, grad_out_part


def _total(value_part: torch.Tensor) -> torch.Tensor:
    # per-program partials summed in float64: deterministic, and exact enough at any size
    return value_part.sum(dtype=torch.float64).to(torch.float32)


def transport_value(W: torch.Tensor, p_in: torch.Tensor, p_out: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """``sum_ij |W_ij| ||p_out[i] - p_in[j]||`` as a 0-dim float32 tensor; writes no ``dW``."""
    if groups > 1:
        return _total(_launch_grouped(W, p_in, p_out, groups, grads=False, store_dW=False)[0])
    return _total(_launch_value(W, p_in, p_out))


def transport_fwd(W: torch.Tensor, p_in: torch.Tensor, p_out: torch.Tensor,
                  needs_grad=(True, True, True), scale=1.0, groups: int = 1):
    """``scale`` times the value and the gradients of ``needs_grad = (W, p_in, p_out)``, in one
    pass over W.

    Returns ``(value, dW | None, grad p_in | None, grad p_out | None)``; ``dW`` has W's dtype,
    is stored already scaled and is written only when W needs it; the position gradients are
    float32.
    """
    if groups > 1:
        value_part, dW, grad_in_part, grad_out_part = _launch_grouped(W, p_in, p_out, groups, True,
                                                                      bool(needs_grad[0]), scale)
    else:
        value_part, dW, grad_in_part, grad_out_part = _launch_fwd_bwd(W, p_in, p_out, bool(needs_grad[0]), scale)
    grad_in = _scaled_sum(grad_in_part, scale) if needs_grad[1] else None
    grad_out = _scaled_sum(grad_out_part, scale) if needs_grad[2] else None
    value = _total(value_part)
    return (value if scale == 1.0 else value * scale), dW, grad_in, grad_out


def _scaled_sum(part: torch.Tensor, scale: float) -> torch.Tensor:
    g = part.sum(dim=0).t().contiguous()
    return g if scale == 1.0 else g.mul_(scale)


def transport_accumulate_dW(W, p_in, p_out, scale: float, upstream: torch.Tensor, grad: torch.Tensor | None,
                            groups: int = 1):
    """``upstream * scale * dT/dW`` added into ``grad`` in place (one pass over W and ``grad``,
    any strides), or written into a new tensor in W's layout when ``grad`` is None (returned).
    ``upstream`` is a device scalar, read by the kernel."""
    shape = W.shape
    Wt = _as_taps(W)
    n_out, n_in, taps = Wt.shape
    # a conv weight's taps are read as one flat dimension: a fresh G is made contiguous, and a
    # given one must be (view raises rather than copy, which would lose the writes)
    out = (torch.empty_like(W) if W.dim() == 2 else W.new_empty(shape)) if grad is None else grad
    G = out.detach()
    G = G.unsqueeze(2) if G.dim() == 2 else G.view(n_out, n_in, taps)
    up = upstream.detach().reshape(1).to(device=W.device, dtype=torch.float32)
    if groups > 1:
        grid, rows_per_program, runs, one_group, block_n = _grouped_plan(n_out, n_in, groups)
        with on_device(W.device):
            _grouped_accumulate_kernel[grid](
                Wt, _positions(p_in), _positions(p_out), G, up,
                n_out, n_in, n_out // groups, Wt.stride(0), Wt.stride(1), Wt.stride(2), G.stride(0), G.stride(1),
                G.stride(2), rows_per_program, runs, float(scale), D=p_in.shape[1], BLOCK_M=GROUPED_BLOCK_M,
                BLOCK_N=block_n, TAPS=taps, ACCUMULATE=grad is not None, ONE_GROUP=one_group,
                num_warps=GROUPED_ACCUMULATE_WARPS,
            )
        return out
    grid, rows_per_program = _grid(n_out, n_in)
    with on_device(W.device):
        _transport_accumulate_kernel[grid](
            Wt, _positions(p_in), _positions(p_out), G, up,
            n_out, n_in, Wt.stride(0), Wt.stride(1), Wt.stride(2), G.stride(0), G.stride(1), G.stride(2),
            rows_per_program, float(scale), D=p_in.shape[1], BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N,
            NUM_STAGES=_stages(taps), TAPS=taps, ACCUMULATE=grad is not None, num_warps=NUM_WARPS,
        )
    return out
