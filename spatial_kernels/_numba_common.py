"""Helpers shared by the Numba kernels of every cost."""
from __future__ import annotations

import numpy as np
import torch

# Reassociation lets LLVM vectorise the reductions; no-NaN/no-Inf flags are left out on purpose:
# the zero-distance branch divides by zero speculatively and selects the result away.
FASTMATH = {"reassoc", "contract", "arcp", "nsz", "afn"}

# Upper bound on the row chunks a kernel's work is split into. The split depends on the shape
# only, so results do not depend on the thread count; 64 keeps every core of a large CPU busy.
MAX_CHUNKS = 64


def num_chunks(n_rows: int, max_chunks: int = MAX_CHUNKS) -> int:
    return max(1, min(n_rows, max_chunks))


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """Zero-copy numpy view of a CPU tensor (a copy only when it is not contiguous)."""
    return t.detach().contiguous().numpy()


def soa3(p: torch.Tensor) -> np.ndarray:
    """``(n, D)`` positions as a ``(3, n)`` structure of arrays, zero-padded to three coordinates."""
    n, D = p.shape
    out = np.zeros((3, n), dtype=to_numpy(p[:0]).dtype)
    out[:D] = to_numpy(p).T
    return out
