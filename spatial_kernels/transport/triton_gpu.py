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
own slices of small buffers, and one small kernel (``_triton_common.finish``) sums the slices
in a fixed order, scales them and lays them out as ``(n, D)``, instead of racing float atomics.

- Columns: the column sums (value, ``grad p_in``) of a program stay element-wise in registers
  across its row tiles and are reduced once at the end, into ``grad_in_part[pid_r, k, j]``.
- Rows: each row tile's sums go to ``grad_out_part[pid_n, k, i]``. Triton lays a tile's rows
  out within single warps, so these per-tile reductions are shuffles only. (Looping over
  columns instead, with rows held, puts the per-tile reduction across warps, through shared
  memory: 2.5 instead of 1.1 instructions per warp and pair in the SASS for sm_90.)

``rows_per_program`` depends on the shape and the device's SM count alone (so do the partial
buffers and the order of every sum: results are the same bit for bit from run to run on one
device): about ``WAVES`` waves of programs, at least two row tiles each where that still fills
the SMs (``triton_kernels.tiles_per_program``). Extra memory besides ``dW``:
``(cdiv(n_in, BLOCK_N) * n_out + cdiv(n_out, rows_per_program) * n_in) * D`` float32, that is
``D / BLOCK_N + D / rows_per_program`` float32 per W element: at most 3/64 + 3/32 (one row tile
per program, which only shapes too small to fill the SMs get), 3/64 + 3/64 with two.

``1 / d`` comes from one ``rsqrt`` per pair (``d = d2 * rsqrt(d2)``, ``s = |w| * rsqrt(d2)``)
rather than a ``sqrt`` and a division. Squared distances below the smallest normal float32
(``d < 1.1e-19``) count as zero distance: the approximate ``rsqrt`` flushes subnormals, and the
error this makes in the value is below ``|W_ij| * 1.1e-19``.

A constant weight on the cost (``scale``) is applied to ``dW`` as it is stored (``dW_scale``),
so a weighted cost needs no second W-sized pass; the O(n) sums are scaled by the finishing
kernel.

A conv weight ``(n_out, n_in, *kernel)`` is read as ``(n_out, n_in, taps)``: a pair's weight is
the sum of ``|W|`` over its taps (``TAPS``, a compile-time constant, 1 for a Linear weight,
where the code is the plain 2-D kernel's), and each tap's ``dW`` is ``sign(W) * d``, made by
the W.grad pass (``transport_accumulate_dW``: the first tap's block held, the others read again
for their signs). Grouped weights have kernels of their own (``triton_grouped.py``).

W is read in its own dtype (float32, bfloat16 or float16) with any strides, through a
``NUM_STAGES``-deep ``cp.async`` pipeline (``tl.range(num_stages=...)``), and the math runs in
float32; ``dW`` is written in W's dtype and memory layout. Positions are float32 and made
contiguous ``(n, D)`` by the launcher (O(n) copies at most). A transposed W is correct but
read with a column stride, i.e. uncoalesced.
"""
from __future__ import annotations

import torch
import triton

from .._triton_common import finish, on_device
from .triton_grouped import accumulate_grouped, launch_grouped
from .triton_kernels import (
    _transport_accumulate_kernel,
    _transport_fwd_bwd_kernel,
    as_taps,
    positions,
    target_programs,
    tiles_per_program,
)

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
# A conv weight's tap loads in a cp.async pipeline would take 145-280 KB of shared memory
# (ptxas, 3x3 taps, float32: over the 228 KB an SM has), so conv weights are not pipelined.
CONV_NUM_STAGES = 1


def _stages(taps: int) -> int:
    return NUM_STAGES if taps == 1 else CONV_NUM_STAGES


def _grid(n_out: int, n_in: int, target: int) -> tuple[tuple[int, int], int]:
    """The grid (column blocks, row runs) and rows_per_program for about ``target`` programs."""
    col_blocks, row_tiles = triton.cdiv(n_in, BLOCK_N), triton.cdiv(n_out, BLOCK_M)
    rows_per_program = BLOCK_M * tiles_per_program(row_tiles, col_blocks, target)
    return (col_blocks, triton.cdiv(n_out, rows_per_program)), rows_per_program


def _launch(W, p_in, p_out, grads: bool, store_dW: bool, dW_scale: float = 1.0):
    """``(value_part, dW | None, grad_in_part, grad_out_part)`` of one pass over W; without
    ``grads`` only the value partials are written (the others are empty). A conv weight's dW
    takes a second pass (the W.grad pass): stored in the first, its taps' loop spills (sm_90,
    64 B with triton 3.6)."""
    if store_dW and W.dim() > 2:
        value_part, _, grad_in_part, grad_out_part = _launch(W, p_in, p_out, grads, False)
        dW = transport_accumulate_dW(W, p_in, p_out, dW_scale, torch.ones((), device=W.device), None)
        if dW.stride() != W.stride():  # in W's layout, as the operator promises (empty_like)
            dW = torch.empty_like(W).copy_(dW)
        return value_part, dW, grad_in_part, grad_out_part
    shape = W.shape
    W = as_taps(W)
    n_out, n_in, taps = W.shape
    D, device = p_in.shape[1], W.device
    grid, rows_per_program = _grid(n_out, n_in, target_programs(device))
    value_part = torch.empty(grid[1], grid[0], dtype=torch.float32, device=device)
    # empty_like keeps W's layout, so dW is written as W is read
    dW = torch.empty_like(W) if store_dW else torch.empty((0, 0, 0), dtype=W.dtype, device=device)
    dW_strides = dW.stride() if store_dW else (0, 0, 0)
    grad_out_part = torch.empty((grid[0], D, n_out) if grads else (0,), dtype=torch.float32, device=device)
    grad_in_part = torch.empty((grid[1], D, n_in) if grads else (0,), dtype=torch.float32, device=device)
    with on_device(device):
        _transport_fwd_bwd_kernel[grid](
            W, positions(p_in), positions(p_out), value_part, dW, grad_out_part, grad_in_part,
            n_out, n_in, W.stride(0), W.stride(1), W.stride(2), dW_strides[0], dW_strides[1], rows_per_program,
            float(dW_scale), D=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, NUM_STAGES=_stages(taps), STORE_DW=store_dW,
            TAPS=taps, GRADS=grads, num_warps=NUM_WARPS,
        )
    return value_part, (dW.view(shape) if store_dW else None), grad_in_part, grad_out_part


def transport_value(W: torch.Tensor, p_in: torch.Tensor, p_out: torch.Tensor, groups: int = 1,
                    scale: float = 1.0) -> torch.Tensor:
    """``scale * sum_ij |W_ij| ||p_out[i] - p_in[j]||`` as a 0-dim float32 tensor; writes no
    ``dW``. Two launches: the pass over W and the finishing sum."""
    if groups > 1:
        value_part = launch_grouped(W, p_in, p_out, groups, grads=False, store_dW=False)[0]
    else:
        value_part = _launch(W, p_in, p_out, grads=False, store_dW=False)[0]
    return finish(value_part, (), scale)[0]


def transport_fwd(W: torch.Tensor, p_in: torch.Tensor, p_out: torch.Tensor,
                  needs_grad=(True, True, True), scale=1.0, groups: int = 1):
    """``scale`` times the value and the gradients of ``needs_grad = (W, p_in, p_out)``, in one
    pass over W and one finishing launch.

    Returns ``(value, dW | None, grad p_in | None, grad p_out | None)``; ``dW`` has W's dtype,
    is stored already scaled and is written only when W needs it; the position gradients are
    float32 ``(n, D)``.
    """
    if groups > 1:
        parts = launch_grouped(W, p_in, p_out, groups, True, bool(needs_grad[0]), scale)
    else:
        parts = _launch(W, p_in, p_out, True, bool(needs_grad[0]), scale)
    value_part, dW, grad_in_part, grad_out_part = parts
    value, (grad_in, grad_out) = finish(value_part, (grad_in_part if needs_grad[1] else None,
                                                     grad_out_part if needs_grad[2] else None), scale)
    return value, dW, grad_in, grad_out


def transport_accumulate_dW(W, p_in, p_out, scale: float, upstream: torch.Tensor, grad: torch.Tensor | None,
                            groups: int = 1):
    """``upstream * scale * dT/dW`` added into ``grad`` in place (one pass over W and ``grad``,
    any strides), or written into a new tensor in W's layout when ``grad`` is None (returned).
    ``upstream`` is a device scalar, read by the kernel."""
    shape = W.shape
    Wt = as_taps(W)
    n_out, n_in, taps = Wt.shape
    # a conv weight's taps are read as one flat dimension: a fresh G is made contiguous, and a
    # given one must be (view raises rather than copy, which would lose the writes)
    out = (torch.empty_like(W) if W.dim() == 2 else W.new_empty(shape)) if grad is None else grad
    G = out.detach()
    G = G.unsqueeze(2) if G.dim() == 2 else G.view(n_out, n_in, taps)
    up = upstream.detach().reshape(1).to(device=W.device, dtype=torch.float32)
    if groups > 1:
        accumulate_grouped(Wt, p_in, p_out, G, up, groups, scale, grad is not None)
        return out
    grid, rows_per_program = _grid(n_out, n_in, target_programs(W.device))
    with on_device(W.device):
        _transport_accumulate_kernel[grid](
            Wt, positions(p_in), positions(p_out), G, up,
            n_out, n_in, Wt.stride(0), Wt.stride(1), Wt.stride(2), G.stride(0), G.stride(1), G.stride(2),
            rows_per_program, float(scale), D=p_in.shape[1], BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N,
            NUM_STAGES=_stages(taps), TAPS=taps, ACCUMULATE=grad is not None, num_warps=NUM_WARPS,
        )
    return out
