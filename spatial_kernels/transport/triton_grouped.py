"""The transport's Triton kernels for a grouped weight (a grouped or depthwise convolution,
``(n_out, n_in / G, *kernel)``), their plan and launchers; ``triton_gpu.py`` says how.

Row i reads the ``n_in / G`` input positions from ``(i // (n_out / G)) * n_in / G`` on. Where a
group holds at least ``BLOCK_M`` rows (``ONE_GROUP``), a program's rows lie in one group and its
column sums stay in registers, into ``grad_in_part[run, k, j]`` (run: the program's place
within its group), and a tile loads one row of its group's input positions. With fewer rows
per group (depthwise: one), a tile's rows span groups: each pair's input position is gathered
from the positions (never copied), and its contribution to ``grad p_in`` is stored per row,
``grad_in_rows[k, i, j_local]``, which torch sums over each group's rows: at most
``BLOCK_M * D * n_in`` floats, O(n_in).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._triton_common import load_coords, on_device, store_coords
from .triton_kernels import as_taps, positions, target_programs, tiles_per_program


@triton.jit
def _grouped_tile(W_ptr, p_in_ptr, p_out_ptr, start_m, row_end, offs_n, mask_n, n_in_local, opg,
                  stride_wm, stride_wn, stride_wk, D: tl.constexpr, BLOCK_M: tl.constexpr, TAPS: tl.constexpr,
                  SHARED_INPUTS: tl.constexpr):
    # One row tile of a grouped weight: as _row_tile, with the input positions of each row's
    # group, (i // opg) * n_in_local + j. With SHARED_INPUTS (the fused pass under ONE_GROUP) the
    # tile's rows share a group and it loads one row of them, [BLOCK_N]; otherwise they are
    # gathered per pair. NOTE: held across the row loop instead of loaded per tile, they made
    # ptxas spill (8 B, bf16 3x3 taps, sm_90), and so does the row load in the W.grad pass
    # (4 B), which keeps the gather.
    offs_m = start_m + tl.arange(0, BLOCK_M)
    mask_m = offs_m < row_end
    ox, oy, oz = load_coords(p_out_ptr, offs_m, mask_m, D)
    mask = mask_m[:, None] & mask_n[None, :]
    if SHARED_INPUTS:  # the tile's rows share one group (ONE_GROUP): one row of its input positions
        jx, jy, jz = load_coords(p_in_ptr, (start_m // opg) * n_in_local + offs_n, mask_n, D)
        ix = jx[None, :]
        iy = jy[None, :]
        iz = jz[None, :]
    else:
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
            stride_wm, stride_wn, stride_wk, D, BLOCK_M, TAPS, ONE_GROUP)
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
            stride_wm, stride_wn, stride_wk, D, BLOCK_M, TAPS, False)
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


# a tile's shape follows the columns a group has (depthwise: one). NOTE: 8 warps where a program
# keeps its group's column sums (64x16 tiles, 3x3 taps, bf16: 4 warps spill, 8 do not); the
# accumulating pass keeps no sums, and spills with 8 (float32, 3x3), not with 4
GROUPED_BLOCK_M = 64
GROUPED_MAX_BLOCK_N = 64
GROUPED_ACCUMULATE_WARPS = 4


def grouped_warps(one_group: bool) -> int:
    return 8 if one_group else 4


def _grouped_plan(n_out: int, n_in_local: int, groups: int, target: int):
    """``(grid, rows_per_program, runs_per_group, one_group, block_n)`` of a grouped weight, from
    its shape and the programs aimed at."""
    opg = n_out // groups
    block_n = min(GROUPED_MAX_BLOCK_N, max(1, triton.next_power_of_2(n_in_local)))
    col_blocks = triton.cdiv(n_in_local, block_n)
    one_group = opg >= GROUPED_BLOCK_M
    if one_group:
        row_tiles = triton.cdiv(opg, GROUPED_BLOCK_M)
        rows_per_program = GROUPED_BLOCK_M * tiles_per_program(row_tiles, col_blocks * groups, target)
        runs = triton.cdiv(opg, rows_per_program)
        return (col_blocks, groups * runs), rows_per_program, runs, True, block_n
    rows_per_program = GROUPED_BLOCK_M * tiles_per_program(triton.cdiv(n_out, GROUPED_BLOCK_M), col_blocks, target)
    return (col_blocks, triton.cdiv(n_out, rows_per_program)), rows_per_program, 1, False, block_n


def launch_grouped(W, p_in, p_out, groups: int, grads: bool, store_dW: bool, dW_scale: float = 1.0):
    """``(value_part, dW | None, grad_in_part, grad_out_part)`` of a grouped weight, as
    ``triton_gpu._launch_fwd_bwd``; the partials are empty without ``grads``."""
    shape = W.shape
    W = as_taps(W)
    n_out, n_in_local, taps = W.shape
    D, device = p_in.shape[1], W.device
    grid, rows_per_program, runs, one_group, block_n = _grouped_plan(n_out, n_in_local, groups,
                                                                     target_programs(device))
    value_part = torch.empty(grid[1], grid[0], dtype=torch.float32, device=device)
    dW = torch.empty_like(W) if store_dW else torch.empty((0, 0, 0), dtype=W.dtype, device=device)
    dW_strides = dW.stride() if store_dW else (0, 0, 0)
    grad_out_part = torch.empty((grid[0], D, n_out) if grads else (0,), dtype=torch.float32, device=device)
    n_in = n_in_local * groups
    grad_in = torch.empty(((runs, D, n_in) if one_group else (D, n_out, n_in_local)) if grads else (0,),
                          dtype=torch.float32, device=device)
    with on_device(device):
        _grouped_fwd_bwd_kernel[grid](
            W, positions(p_in), positions(p_out), value_part, dW, grad_out_part, grad_in,
            n_out, n_in_local, n_out // groups, W.stride(0), W.stride(1), W.stride(2),
            dW_strides[0], dW_strides[1], dW_strides[2], rows_per_program, runs, float(dW_scale),
            D=D, BLOCK_M=GROUPED_BLOCK_M, BLOCK_N=block_n, STORE_DW=store_dW, TAPS=taps, GRADS=grads,
            ONE_GROUP=one_group, num_warps=grouped_warps(one_group),
        )
    if grads and not one_group:  # each row's share, summed over its group's rows
        grad_in = grad_in.view(D, groups, n_out // groups, n_in_local).sum(2).reshape(1, D, n_in)
    return value_part, (dW.view(shape) if store_dW else None), grad_in, grad_out_part


def accumulate_grouped(Wt, p_in, p_out, G, up, groups: int, scale: float, accumulate: bool) -> None:
    """``G (+)= up * scale * dT/dW`` of a grouped weight ``Wt`` (``(n_out, n_in / G, taps)``)."""
    n_out, n_in_local, taps = Wt.shape
    grid, rows_per_program, runs, one_group, block_n = _grouped_plan(n_out, n_in_local, groups,
                                                                     target_programs(Wt.device))
    with on_device(Wt.device):
        _grouped_accumulate_kernel[grid](
            Wt, positions(p_in), positions(p_out), G, up,
            n_out, n_in_local, n_out // groups, Wt.stride(0), Wt.stride(1), Wt.stride(2), G.stride(0),
            G.stride(1), G.stride(2), rows_per_program, runs, float(scale), D=p_in.shape[1],
            BLOCK_M=GROUPED_BLOCK_M, BLOCK_N=block_n, TAPS=taps, ACCUMULATE=accumulate, ONE_GROUP=one_group,
            num_warps=GROUPED_ACCUMULATE_WARPS,
        )
