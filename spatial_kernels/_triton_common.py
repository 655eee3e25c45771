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


# The SM count a launcher sizes its grid for where there is no CUDA device (the interpreter on
# CPU tensors): an H100 SXM's, so that the plan tested on CPU is the one an H100 runs.
DEFAULT_SMS = 132


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of ``device`` (DEFAULT_SMS for a CPU tensor)."""
    if device.type != "cuda":
        return DEFAULT_SMS
    return torch.cuda.get_device_properties(device).multi_processor_count


@triton.jit
def _sum_parts(part_ptr, n_parts, out_ptr, n, block, scale, D: tl.constexpr, BLOCK: tl.constexpr):
    # out[i, k] = scale * sum_p part[p, k, i] for this block of i, the parts in a fixed order.
    offs = block.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.zeros([BLOCK], dtype=tl.float32)
    y = tl.zeros([BLOCK], dtype=tl.float32)
    z = tl.zeros([BLOCK], dtype=tl.float32)
    for _ in range(0, n_parts):
        x += tl.load(part_ptr + offs, mask=mask, other=0.0)
        if D >= 2:
            y += tl.load(part_ptr + n + offs, mask=mask, other=0.0)
        if D >= 3:
            z += tl.load(part_ptr + 2 * n + offs, mask=mask, other=0.0)
        part_ptr += D * n
    tl.store(out_ptr + offs * D, x * scale, mask=mask)
    if D >= 2:
        tl.store(out_ptr + offs * D + 1, y * scale, mask=mask)
    if D >= 3:
        tl.store(out_ptr + offs * D + 2, z * scale, mask=mask)


@triton.jit
def _finish_kernel(
    value_part_ptr, n_value_parts, value_ptr,
    a_part_ptr, n_a_parts, a_ptr, n_a, a_blocks,
    b_part_ptr, n_b_parts, b_ptr, n_b,
    scale, D: tl.constexpr, BLOCK: tl.constexpr,
):
    """Program 0: ``value = scale * sum(value_part)`` (accumulated in float64); the next
    ``a_blocks`` programs: ``a[i, k] = scale * sum_p a_part[p, k, i]``; the rest the same for b."""
    pid = tl.program_id(0)
    if pid == 0:
        acc = tl.zeros([BLOCK], dtype=tl.float64)
        for start in range(0, n_value_parts, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            acc += tl.load(value_part_ptr + offs, mask=offs < n_value_parts, other=0.0).to(tl.float64)
        tl.store(value_ptr, tl.sum(acc, axis=0).to(tl.float32) * scale)
    elif pid <= a_blocks:
        _sum_parts(a_part_ptr, n_a_parts, a_ptr, n_a, pid - 1, scale, D, BLOCK)
    else:
        _sum_parts(b_part_ptr, n_b_parts, b_ptr, n_b, pid - 1 - a_blocks, scale, D, BLOCK)


FINISH_BLOCK = 256


def finish(value_part: torch.Tensor, parts, scale: float):
    """``(value, outs)``: ``scale`` times the sum of ``value_part`` (0-dim float32) and, for each
    partial buffer ``part[P, D, n]`` of ``parts`` (at most two; None: not asked for), ``scale``
    times the sum of its P slices as a new ``(n, D)`` float32 tensor. One launch, every sum in
    a fixed order (deterministic), no host sync."""
    device = value_part.device
    value = torch.empty((), dtype=torch.float32, device=device)
    outs, slots, D = [], [], 1
    for part in parts:
        out = None
        if part is not None:
            P, D, n = part.shape
            out = torch.empty((n, D), dtype=torch.float32, device=device)
            slots.append((part, P, out, n, triton.cdiv(n, FINISH_BLOCK)))
        outs.append(out)
    while len(slots) < 2:  # an empty slot: no program reads or writes it
        slots.append((value_part, 0, value, 0, 0))
    (a, a_parts, a_out, n_a, a_blocks), (b, b_parts, b_out, n_b, b_blocks) = slots
    with on_device(device):
        _finish_kernel[(1 + a_blocks + b_blocks,)](
            value_part, value_part.numel(), value, a, a_parts, a_out, n_a, a_blocks, b, b_parts, b_out, n_b,
            float(scale), D=D, BLOCK=FINISH_BLOCK, num_warps=4,
        )
    return value, outs


@triton.jit
def _times_upstream_kernel(up_ptr, a_ptr, a_out_ptr, n_a, a_blocks, b_ptr, b_out_ptr, n_b, BLOCK: tl.constexpr):
    """``a_out = up * a`` over the first ``a_blocks`` programs and ``b_out = up * b`` over the
    rest; ``up`` (the upstream gradient) is read on the device."""
    pid = tl.program_id(0)
    up = tl.load(up_ptr).to(tl.float32)
    if pid < a_blocks:
        offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n_a
        tl.store(a_out_ptr + offs, tl.load(a_ptr + offs, mask=mask, other=0.0) * up, mask=mask)
    else:
        offs = (pid - a_blocks).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n_b
        tl.store(b_out_ptr + offs, tl.load(b_ptr + offs, mask=mask, other=0.0) * up, mask=mask)


UPSTREAM_BLOCK = 1024


def times_upstream(upstream: torch.Tensor, *gs: torch.Tensor | None):
    """``g * upstream`` for one or two contiguous float32 gradients (None passes through), new
    tensors, in one launch; the device reads ``upstream``, so the host never waits for it."""
    assert len(gs) <= 2
    live = [g for g in gs if g is not None]
    if not live:
        return gs
    device = live[0].device
    up = upstream.detach().reshape(1).to(device=device, dtype=torch.float32)
    outs = [None if g is None else torch.empty_like(g) for g in gs]
    slots = [(g, o, g.numel()) for g, o in zip(gs, outs) if g is not None]
    while len(slots) < 2:
        slots.append((up, up, 0))
    (a, a_out, n_a), (b, b_out, n_b) = slots
    a_blocks, b_blocks = triton.cdiv(n_a, UPSTREAM_BLOCK), triton.cdiv(n_b, UPSTREAM_BLOCK)
    with on_device(device):
        _times_upstream_kernel[(a_blocks + b_blocks,)](up, a, a_out, n_a, a_blocks, b, b_out, n_b,
                                                       BLOCK=UPSTREAM_BLOCK, num_warps=4)
    return tuple(outs)
