"""Reused memory for the CPU kernels' W-sized gradient ``dW``.

A training step asks the transport kernel for a fresh ``(n_out, n_in)`` ``dW`` every time; the
optimiser's ``zero_grad()`` (``set_to_none=True``) frees it again. On Linux a freshly mapped
buffer of that size costs a page fault per 4 KiB page on first touch: at 8192 x 8192 float32
(268 MB) that was 61-90 ms, four to six times the kernel itself. So the CPU kernels write
``dW`` into buffers from this pool:

- A buffer is lent as a tensor that owns a private numpy view of it. When the last tensor that
  shares that memory is gone (the gradient was set to None, or summed into another), the view is
  freed and a ``weakref.finalize`` callback hands the buffer back. A buffer is therefore reused
  only when nothing can see its old contents, and a gradient a user keeps (``g = W.grad``)
  keeps its buffer out of the pool for as long as they hold it.
- At most one idle buffer is kept per (shape, dtype); a second one returned is dropped (freed).
  So the pool holds, between steps, at most one ``dW`` per distinct spatial-layer shape: what
  the step's gradients occupy anyway. ``empty_cache()`` drops every idle buffer.
- Buffers under 1 MiB are not pooled: the C heap serves them without fresh pages.
- New buffers come from numpy, which asks the kernel for transparent huge pages on large
  allocations (``madvise(MADV_HUGEPAGE)``, only on that allocation): the first touch of a new
  buffer is then about 4x cheaper too. No process-wide allocator setting is changed.

``set_reuse(False)`` (or ``SPATIAL_KERNELS_REUSE_BUFFERS=0``) turns all of this off: every call
then gets a fresh ``torch.empty``, as before the pool existed.
"""
from __future__ import annotations

import os
import weakref

import numpy as np
import torch

MIN_POOLED_BYTES = 1 << 20

_idle: dict[tuple, np.ndarray] = {}
_reuse = os.environ.get("SPATIAL_KERNELS_REUSE_BUFFERS", "1") not in ("0", "false", "False", "")


def set_reuse(enabled: bool) -> None:
    """Turns the reuse of gradient buffers on (the default) or off; off also empties the pool."""
    global _reuse
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    _reuse = enabled
    if not enabled:
        empty_cache()


def empty_cache() -> None:
    """Frees every idle buffer; buffers still lent stay with their tensors."""
    _idle.clear()


def idle_bytes() -> int:
    """Bytes held by idle buffers."""
    return sum(a.nbytes for a in list(_idle.values()))


def _give_back(key: tuple, base: np.ndarray) -> None:
    # runs when the last tensor sharing ``base``'s memory is freed, in whatever thread freed it;
    # dict.setdefault is atomic under the GIL, so no lock (which a finaliser could deadlock on)
    if _reuse:
        _idle.setdefault(key, base)


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor; its memory may have been used by an earlier one
    that no longer exists (the caller writes every element)."""
    if not _reuse:
        return torch.empty(shape, dtype=dtype)
    np_dtype = torch.empty((), dtype=dtype).numpy().dtype
    nbytes = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
    if nbytes < MIN_POOLED_BYTES:
        return torch.empty(shape, dtype=dtype)
    key = (tuple(shape), np_dtype.str)
    base = _idle.pop(key, None)
    if base is None:
        base = np.empty(shape, dtype=np_dtype)
    view = base.view()  # the one object whose death means that no tensor sees the memory
    weakref.finalize(view, _give_back, key, base).atexit = False
    return torch.from_numpy(view)
