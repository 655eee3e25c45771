"""Density cost on GPU: a row-parallel tiled Triton kernel, value and gradient in one pass.

With ``u_kj = p_k - p_j``, ``d_kj = ||u_kj||``, ``e_kj = exp(-d_kj)`` and ``s_kj = e_kj / d_kj``
(0 where ``d_kj = 0``: coincident neurons, the diagonal included, give a zero gradient)::

    V          =  sum_kj e_kj                 all ordered pairs, the diagonal adds exp(0) = 1 each
    dV/dp_k    = -2 sum_j s_kj u_kj           (V is symmetric: p_k appears as a row and a column)

One program owns ``BLOCK_M`` rows and walks all ``N`` columns in blocks of ``BLOCK_N``. Because
the row ``k`` sum already is the whole gradient of ``p_k``, every output is a row reduction:
there are no column partials, no atomics, and the result is deterministic. The ``i < j``
symmetry would halve the ``exp`` calls but bring back a column reduction; it stays out until a
GPU measurement shows that it pays. The row sums are accumulated in ``[BLOCK_M, BLOCK_N]``
register tiles (element-wise FMAs) and reduced once at the end. Extra memory:
``cdiv(N, BLOCK_M)`` float32 value partials, summed in float64 by torch.

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

from .._triton_common import load_coords, on_device

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
def _density_fwd_kernel(
    p_ptr, value_part_ptr, n,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Value only: ``value_part[pid_m] = sum over this program's rows k and all j of e_kj``."""
    pid_m = tl.program_id(0).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < n
    xi, yi, zi = load_coords(p_ptr, offs_m, mask_m, D)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for start_n in range(0, n, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < n
        xj, yj, zj = load_coords(p_ptr, offs_n, mask_n, D)
        _, _, _, d, _ = _pair_geometry(xi, yi, zi, xj, yj, zj)
        # padded columns sit at the origin, at a real distance: mask them out
        acc += tl.where(mask_n[None, :], tl.exp(-d), 0.0)
    tl.store(value_part_ptr + pid_m, tl.sum(tl.sum(tl.where(mask_m[:, None], acc, 0.0), axis=1), axis=0))


@triton.jit
def _density_fwd_bwd_kernel(
    p_ptr, value_part_ptr, grad_ptr, n,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Value partial of this program's rows and their whole gradient, in one pass."""
    pid_m = tl.program_id(0).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < n
    xi, yi, zi = load_coords(p_ptr, offs_m, mask_m, D)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    gx = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    gy = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    gz = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for start_n in range(0, n, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < n
        xj, yj, zj = load_coords(p_ptr, offs_n, mask_n, D)
        ux, uy, uz, d, inv_d = _pair_geometry(xi, yi, zi, xj, yj, zj)
        # padded columns sit at the origin, at a real distance: mask them out
        e = tl.where(mask_n[None, :], tl.exp(-d), 0.0)  # [BLOCK_M, BLOCK_N]
        acc += e
        s = e * inv_d
        gx += s * ux
        gy += s * uy
        gz += s * uz
    tl.store(value_part_ptr + pid_m, tl.sum(tl.sum(tl.where(mask_m[:, None], acc, 0.0), axis=1), axis=0))
    tl.store(grad_ptr + offs_m * D, -2.0 * tl.sum(gx, axis=1), mask=mask_m)
    if D >= 2:
        tl.store(grad_ptr + offs_m * D + 1, -2.0 * tl.sum(gy, axis=1), mask=mask_m)
    if D >= 3:
        tl.store(grad_ptr + offs_m * D + 2, -2.0 * tl.sum(gz, axis=1), mask=mask_m)


def _launch(p: torch.Tensor, with_grad: bool):
    n, D = p.shape
    p = p.detach().contiguous()
    grid = (triton.cdiv(n, BLOCK_M),)
    value_part = torch.empty(grid[0], dtype=torch.float32, device=p.device)
    grad = torch.empty((n, D), dtype=torch.float32, device=p.device) if with_grad else None
    with on_device(p.device):
        if with_grad:
            _density_fwd_bwd_kernel[grid](p, value_part, grad, n, D=D, BLOCK_M=BLOCK_M,
                                          BLOCK_N=BLOCK_N, num_warps=NUM_WARPS)
        else:
            _density_fwd_kernel[grid](p, value_part, n, D=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N,
                                      num_warps=NUM_WARPS)
    # per-program partials summed in float64: deterministic, and exact enough at any size
    return value_part.sum(dtype=torch.float64).to(torch.float32), grad


def density_value(p: torch.Tensor) -> torch.Tensor:
    """``sum_ij exp(-||p_i - p_j||)`` as a 0-dim float32 tensor."""
    return _launch(p, with_grad=False)[0]


def density_fwd(p: torch.Tensor, needs_grad=(True,), scale=1.0):
    """``scale`` times the value and ``grad p`` (float32, ``p``'s shape), in one pass:
    ``(value, grad)``; the O(N) scaling is done by torch."""
    value, grad = _launch(p, with_grad=bool(needs_grad[0]))
    if scale != 1.0:
        value = value * scale
        grad = None if grad is None else grad.mul_(scale)
    return value, grad
