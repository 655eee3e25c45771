"""Transport cost on GPU: tiled Triton kernels that stream W once.

With ``u_ij = p_out[i] - p_in[j]``, ``d_ij = ||u_ij||`` and ``s_ij = |W_ij| / d_ij`` (0 where
``d_ij = 0``, so coincident neurons give a zero gradient, never NaN)::

    T             =  sum_ij |W_ij| d_ij
    dT/dW_ij      =  sign(W_ij) d_ij
    dT/dp_out[i]  =  sum_j s_ij u_ij      a row reduction
    dT/dp_in[j]   = -sum_i s_ij u_ij      a column reduction

One program owns ``BLOCK_M`` rows and walks the columns in blocks of ``BLOCK_N``, reading its rows
of W exactly once; distances are recomputed in registers from the positions, so the only
W-sized array ever written is ``dW``. The row reduction (value, ``grad p_out``) stays in
registers. The column reduction is two-pass so that it is deterministic: each program writes
its column sums to its own slice ``partial[pid_m, :, :]`` and torch sums the slices afterwards,
in a fixed order, instead of racing float atomics. Extra memory besides ``dW``:
``cdiv(n_out, BLOCK_M) * (D * n_in + 1)`` float32.

``1 / d`` comes from one ``rsqrt`` per pair (``d = d2 * rsqrt(d2)``, ``s = |w| * rsqrt(d2)``)
rather than a ``sqrt`` and a division. Squared distances below the smallest normal float32
(``d < 1.1e-19``) count as zero distance: the approximate ``rsqrt`` flushes subnormals, and the
error this makes in the value is below ``|W_ij| * 1.1e-19``.

W is read in its own dtype (float32, bfloat16 or float16) with any strides and the math runs
in float32; ``dW`` is written in W's dtype and memory layout. Positions are float32 and made
contiguous ``(n, D)`` by the launcher (O(n) copies at most). A transposed W is correct but
read with a column stride, i.e. uncoalesced.
"""
from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

# NOTE: not yet timed on a GPU (none was available); benchmarks/bench_gpu.py is where to time
# them. Chosen from `python -m spatial_kernels.aot` (ptxas, sm_90, D=3, bf16 W, dW stored):
# 32x64 with 8 warps needs 102 registers and no spills with sizes divisible by 16 (211, no
# spills, otherwise); 64x64 with 4 warps needed 255 and spilled. The price of BLOCK_M = 32 is
# the column partials: n_out / 32 * D * n_in float32, 5 % of the fp32 W + dW traffic.
BLOCK_M = 32
BLOCK_N = 64
NUM_WARPS = 8


@triton.jit
def _load_coords(p_ptr, offs, mask, D: tl.constexpr):
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
def _transport_fwd_kernel(
    W_ptr, p_in_ptr, p_out_ptr, value_part_ptr,
    n_out, n_in, stride_wm, stride_wn,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Value only: ``value_part[pid_m] = sum over this program's rows of |W_ij| d_ij``."""
    pid_m = tl.program_id(0).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < n_out
    ox, oy, oz = _load_coords(p_out_ptr, offs_m, mask_m, D)
    acc = tl.zeros([BLOCK_M], dtype=tl.float32)
    for start_n in range(0, n_in, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < n_in
        ix, iy, iz = _load_coords(p_in_ptr, offs_n, mask_n, D)
        mask = mask_m[:, None] & mask_n[None, :]
        offs_w = offs_m[:, None] * stride_wm + offs_n[None, :].to(tl.int64) * stride_wn
        # masked entries read as 0 and so add nothing, whatever their distance
        b_w = tl.load(W_ptr + offs_w, mask=mask, other=0.0).to(tl.float32)  # [BLOCK_M, BLOCK_N]
        _, _, _, d, _ = _pair_geometry(ox, oy, oz, ix, iy, iz)
        acc += tl.sum(tl.abs(b_w) * d, axis=1)
    tl.store(value_part_ptr + pid_m, tl.sum(acc, axis=0))


@triton.jit
def _transport_fwd_bwd_kernel(
    W_ptr, p_in_ptr, p_out_ptr, value_part_ptr, dW_ptr, grad_out_ptr, grad_in_part_ptr,
    n_out, n_in, stride_wm, stride_wn, stride_dwm, stride_dwn,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, STORE_DW: tl.constexpr,
):
    """Value, ``dW`` (when ``STORE_DW``), ``grad p_out`` for this program's rows and its
    partial column sums ``grad_in_part[pid_m, k, j]`` of ``grad p_in``, in one pass over W."""
    pid_m = tl.program_id(0).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < n_out
    ox, oy, oz = _load_coords(p_out_ptr, offs_m, mask_m, D)
    acc = tl.zeros([BLOCK_M], dtype=tl.float32)
    gx = tl.zeros([BLOCK_M], dtype=tl.float32)
    gy = tl.zeros([BLOCK_M], dtype=tl.float32)
    gz = tl.zeros([BLOCK_M], dtype=tl.float32)
    part_ptr = grad_in_part_ptr + pid_m * (D * n_in)
    for start_n in range(0, n_in, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < n_in
        ix, iy, iz = _load_coords(p_in_ptr, offs_n, mask_n, D)
        mask = mask_m[:, None] & mask_n[None, :]
        offs_n64 = offs_n[None, :].to(tl.int64)
        offs_w = offs_m[:, None] * stride_wm + offs_n64 * stride_wn
        # masked entries read as 0 and so add nothing to any sum, whatever their distance
        b_w = tl.load(W_ptr + offs_w, mask=mask, other=0.0).to(tl.float32)  # [BLOCK_M, BLOCK_N]
        ux, uy, uz, d, inv_d = _pair_geometry(ox, oy, oz, ix, iy, iz)
        b_a = tl.abs(b_w)
        acc += tl.sum(b_a * d, axis=1)
        s = b_a * inv_d  # [BLOCK_M, BLOCK_N]
        sx = s * ux
        sy = s * uy
        sz = s * uz
        gx += tl.sum(sx, axis=1)
        gy += tl.sum(sy, axis=1)
        gz += tl.sum(sz, axis=1)
        # structure-of-arrays partials: each coordinate's store is unit stride
        tl.store(part_ptr + offs_n, -tl.sum(sx, axis=0), mask=mask_n)
        if D >= 2:
            tl.store(part_ptr + n_in + offs_n, -tl.sum(sy, axis=0), mask=mask_n)
        if D >= 3:
            tl.store(part_ptr + 2 * n_in + offs_n, -tl.sum(sz, axis=0), mask=mask_n)
        if STORE_DW:
            b_dw = tl.where(b_w > 0, d, tl.where(b_w < 0, -d, 0.0))
            offs_dw = offs_m[:, None] * stride_dwm + offs_n64 * stride_dwn
            tl.store(dW_ptr + offs_dw, b_dw.to(dW_ptr.dtype.element_ty), mask=mask)
    tl.store(value_part_ptr + pid_m, tl.sum(acc, axis=0))
    tl.store(grad_out_ptr + offs_m * D, gx, mask=mask_m)
    if D >= 2:
        tl.store(grad_out_ptr + offs_m * D + 1, gy, mask=mask_m)
    if D >= 3:
        tl.store(grad_out_ptr + offs_m * D + 2, gz, mask=mask_m)


def _on_device(device: torch.device):
    # Triton launches on the current CUDA device; make it the inputs' one. CPU tensors (under
    # TRITON_INTERPRET=1) need nothing.
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _positions(p: torch.Tensor) -> torch.Tensor:
    return p.detach().contiguous()


def _launch_value(W, p_in, p_out) -> torch.Tensor:
    n_out, n_in = W.shape
    W = W.detach()
    grid = (triton.cdiv(n_out, BLOCK_M),)
    value_part = torch.empty(grid[0], dtype=torch.float32, device=W.device)
    with _on_device(W.device):
        _transport_fwd_kernel[grid](
            W, _positions(p_in), _positions(p_out), value_part,
            n_out, n_in, W.stride(0), W.stride(1),
            D=p_in.shape[1], BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, num_warps=NUM_WARPS,
        )
    return value_part


def _launch_fwd_bwd(W, p_in, p_out, store_dW: bool):
    n_out, n_in = W.shape
    D = p_in.shape[1]
    W = W.detach()
    device = W.device
    grid = (triton.cdiv(n_out, BLOCK_M),)
    value_part = torch.empty(grid[0], dtype=torch.float32, device=device)
    # empty_like keeps W's layout (for a dense W), so dW is written as W is read
    dW = torch.empty_like(W) if store_dW else torch.empty(0, dtype=W.dtype, device=device)
    dW_strides = dW.stride() if store_dW else (0, 0)
    grad_out = torch.empty((n_out, D), dtype=torch.float32, device=device)
    grad_in_part = torch.empty((grid[0], D, n_in), dtype=torch.float32, device=device)
    with _on_device(device):
        _transport_fwd_bwd_kernel[grid](
            W, _positions(p_in), _positions(p_out), value_part, dW, grad_out, grad_in_part,
            n_out, n_in, W.stride(0), W.stride(1), dW_strides[0], dW_strides[1],
            D=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, STORE_DW=store_dW, num_warps=NUM_WARPS,
        )
    return value_part, (dW if store_dW else None), grad_in_part, grad_out


def _total(value_part: torch.Tensor) -> torch.Tensor:
    # per-program partials summed in float64: deterministic, and exact enough at any size
    return value_part.sum(dtype=torch.float64).to(torch.float32)


def transport_value(W: torch.Tensor, p_in: torch.Tensor, p_out: torch.Tensor) -> torch.Tensor:
    """``sum_ij |W_ij| ||p_out[i] - p_in[j]||`` as a 0-dim float32 tensor; writes no ``dW``."""
    return _total(_launch_value(W, p_in, p_out))


def transport_fwd(W: torch.Tensor, p_in: torch.Tensor, p_out: torch.Tensor,
                  needs_grad=(True, True, True)):
    """Value and the gradients of ``needs_grad = (W, p_in, p_out)`` in one pass over W.

    Returns ``(value, dW | None, grad p_in | None, grad p_out | None)``; ``dW`` has W's dtype
    and is written only when W needs it, the position gradients are float32.
    """
    value_part, dW, grad_in_part, grad_out = _launch_fwd_bwd(W, p_in, p_out, bool(needs_grad[0]))
    grad_in = grad_in_part.sum(dim=0).t().contiguous() if needs_grad[1] else None
    return _total(value_part), dW, grad_in, (grad_out if needs_grad[2] else None)
