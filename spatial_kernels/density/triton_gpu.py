"""Density cost on GPU: a row-parallel tiled Triton kernel, value and gradient in one pass.

With ``u_kj = p_k - p_j``, ``d_kj = ||u_kj||``, ``e_kj = exp(-d_kj)`` and ``s_kj = e_kj / d_kj``
(0 where ``d_kj = 0``: coincident neurons, the diagonal included, give a zero gradient)::

    V          =  sum_kj e_kj                 all ordered pairs, the diagonal adds exp(0) = 1 each
    dV/dp_k    = -2 sum_j s_kj u_kj           (V is symmetric: p_k appears as a row and a column)

A program owns ``BLOCK_M`` rows and a run of ``cols_per_program`` columns, walked in blocks of
``BLOCK_N``: the grid's second axis splits the columns, so that a few thousand rows still give
every SM programs (``_plan``: about ``WAVES`` waves for the device's SM count; at large N one
run, all columns). Because the row ``k`` sum is the whole gradient of ``p_k``, every output is
a row reduction: each program writes its rows' partial sums, ``grad_part[pid_s, k, i]`` and
``value_part[pid_s, pid_m]``, and one small kernel (``_triton_common.finish``) sums the runs in
a fixed order and scales them; no atomics, and the result is deterministic. The ``i < j``
symmetry would halve the ``exp`` calls but bring back a column reduction; it stays out until a
GPU measurement shows that it pays. The row sums are accumulated in ``[BLOCK_M, BLOCK_N]``
register tiles (element-wise FMAs) and reduced once at the end. Extra memory: ``(D * N + 1 /
BLOCK_M * N)`` float32 per column run, O(N).

Two special-function ops per pair: one ``rsqrt`` gives both ``d = d2 * rsqrt(d2)`` and
``1 / d`` and one ``exp`` gives ``e``. The ``rsqrt`` takes ``max(d2, FLT_MIN)``: at zero
distance ``d`` comes out 0 and ``1 / d`` finite (at most 9.3e18, and ``e <= 1``), so the
gradient term ``s * u`` is exactly 0 because ``u`` is, with no branch (below ``d = 1.1e-19``
distances are clamped, as the approximate ``rsqrt`` would flush them anyway). This saves
three instructions of about 24 per pair in the SASS for sm_90 over selecting ``1/d = 0``.
Positions are float32, made contiguous ``(N, D)`` by the launcher.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._triton_common import finish, load_coords, on_device, sm_count, store_coords

# NOTE: not yet timed on a GPU (none was available); benchmarks/bench_gpu.py is where to time
# them. Chosen from the compiled code alone (python -m spatial_kernels.aot and the SASS, sm_90,
# D=3): 32x32 tiles with 4 warps take 78 registers (24 warps per SM), no spills, and 0.68
# instructions per warp and pair, an issue bound of ~1.5e12 pairs/s on an H100 (the MUFU bound
# is ~1.9e12); 64x32 with 4 warps needed 186 registers before the rsqrt clamp, and larger tiles
# save under 5 % of the instructions for twice the registers.
BLOCK_M = 32
BLOCK_N = 32
NUM_WARPS = 4


@triton.jit
def _pair_geometry(xi, yi, zi, xj, yj, zj):
    # Differences, distances and inverse distances of a tile of pairs.
    ux = xi[:, None] - xj[None, :]  # [BLOCK_M, BLOCK_N]
    uy = yi[:, None] - yj[None, :]  # [BLOCK_M, BLOCK_N]
    uz = zi[:, None] - zj[None, :]  # [BLOCK_M, BLOCK_N]
    d2 = ux * ux + uy * uy + uz * uz
    # clamped at the smallest normal float32: 1/d stays finite (<= 9.3e18) at zero distance,
    # where d = d2 / sqrt(clamp) is 0 and the gradient term s * u = e / d * 0 is 0
    inv_d = tl.math.rsqrt(tl.maximum(d2, 1.1754943508222875e-38))
    return ux, uy, uz, d2 * inv_d, inv_d


@triton.jit
def _density_fwd_bwd_kernel(
    p_ptr, value_part_ptr, grad_part_ptr, n, cols_per_program,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GRAD: tl.constexpr,
):
    """``value_part[pid_s, pid_m]``, the sum of ``e_kj`` over this program's rows k and its run
    of columns j, and (``GRAD``) in the same pass its rows' gradient partials
    ``grad_part[pid_s, c, k] = -2 sum_j s_kj u_kj[c]``."""
    pid_m = tl.program_id(0).to(tl.int64)
    pid_s = tl.program_id(1)  # columns index positions: int32, as n * D < 2**31
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < n
    xi, yi, zi = load_coords(p_ptr, offs_m, mask_m, D)
    col_start = pid_s * cols_per_program
    col_end = tl.minimum(col_start + cols_per_program, n)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    gx = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    gy = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    gz = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for start_n in range(col_start, col_end, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < col_end
        xj, yj, zj = load_coords(p_ptr, offs_n, mask_n, D)
        ux, uy, uz, d, inv_d = _pair_geometry(xi, yi, zi, xj, yj, zj)
        # padded columns sit at the origin, at a real distance: mask them out
        e = tl.where(mask_n[None, :], tl.exp(-d), 0.0)  # [BLOCK_M, BLOCK_N]
        acc += e
        if GRAD:
            s = e * inv_d
            gx += s * ux
            gy += s * uy
            gz += s * uz
    tl.store(value_part_ptr + pid_s.to(tl.int64) * tl.num_programs(0) + pid_m,
             tl.sum(tl.sum(tl.where(mask_m[:, None], acc, 0.0), axis=1), axis=0))
    if GRAD:
        store_coords(grad_part_ptr + pid_s.to(tl.int64) * (D * n), n, offs_m, -2.0 * tl.sum(gx, axis=1),
                     -2.0 * tl.sum(gy, axis=1), -2.0 * tl.sum(gz, axis=1), mask_m, D)


# NOTE: from the compiled code only (the AOT table; not yet timed on a GPU): 80 registers x 128
# threads, 6 programs per SM; WAVES waves of them, so that the last wave is a small share
PROGRAMS_PER_SM = 6
WAVES = 2


def _plan(n: int, sms: int) -> tuple[tuple[int, int], int]:
    """The grid (row blocks, column runs) and ``cols_per_program`` for ``n`` positions on
    ``sms`` SMs: enough column runs that the grid holds about ``WAVES`` waves of programs."""
    row_blocks, col_blocks = triton.cdiv(n, BLOCK_M), triton.cdiv(n, BLOCK_N)
    runs = max(1, min(col_blocks, triton.cdiv(sms * PROGRAMS_PER_SM * WAVES, row_blocks)))
    cols_per_program = BLOCK_N * triton.cdiv(col_blocks, runs)
    return (row_blocks, triton.cdiv(n, cols_per_program)), cols_per_program


def _launch(p: torch.Tensor, with_grad: bool):
    """``(value_part, grad_part)``: the partial sums of one pass (grad_part empty without grad)."""
    n, D = p.shape
    p = p.detach().contiguous()
    grid, cols_per_program = _plan(n, sm_count(p.device))
    value_part = torch.empty(grid[1], grid[0], dtype=torch.float32, device=p.device)
    grad_part = torch.empty((grid[1], D, n) if with_grad else (0,), dtype=torch.float32, device=p.device)
    with on_device(p.device):
        _density_fwd_bwd_kernel[grid](p, value_part, grad_part, n, cols_per_program, D=D, BLOCK_M=BLOCK_M,
                                      BLOCK_N=BLOCK_N, GRAD=with_grad, num_warps=NUM_WARPS)
    return value_part, grad_part


def density_value(p: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``scale * sum_ij exp(-||p_i - p_j||)`` as a 0-dim float32 tensor: two launches."""
    return finish(_launch(p, with_grad=False)[0], (), scale)[0]


def density_fwd(p: torch.Tensor, needs_grad=(True,), scale=1.0):
    """``scale`` times the value and ``grad p`` (float32, ``p``'s shape), in one pass and one
    finishing launch: ``(value, grad)``."""
    want = bool(needs_grad[0])
    value_part, grad_part = _launch(p, with_grad=want)
    value, (grad,) = finish(value_part, (grad_part if want else None,), scale)
    return value, grad
