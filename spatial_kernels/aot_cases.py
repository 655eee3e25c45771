"""The calls ``python -m spatial_kernels.aot`` runs the Triton launchers on (small CPU tensors; the
launches are recorded, not run) to find every specialisation the package compiles at run time:
each W dtype, D = 1..3, a Linear weight with sizes divisible by 16 (the JIT then vectorises the
loads of W) and, for the register-heaviest D = 3, sizes that are not; a 3x3 conv weight; a
grouped 3x3 conv (a group per program) and a depthwise 7x7 one (rows across groups); every pass
(value alone, value and gradients with and without dW, W's gradient written or added); the
density with and without its gradient; the backward's upstream scaling."""
from __future__ import annotations

import torch

W_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# (n_out, n_in) with every size and stride a multiple of 16, and one with none
SHAPES = {"n%16": (64, 128), "any n": (33, 17)}


def _transport_passes(W, p_in, p_out, groups: int = 1):
    from .transport import triton_gpu as transport

    up = torch.ones(())
    yield "value", lambda: transport.transport_value(W, p_in, p_out, groups=groups)
    yield "fwd", lambda: transport.transport_fwd(W, p_in, p_out, groups=groups)
    yield "fwd", lambda: transport.transport_fwd(W, p_in, p_out, needs_grad=(False, True, True), groups=groups)
    yield "dW", lambda: transport.transport_accumulate_dW(W, p_in, p_out, 1.0, up, None, groups=groups)
    yield "dW", lambda: transport.transport_accumulate_dW(W, p_in, p_out, 1.0, up, torch.empty_like(W).contiguous(),
                                                          groups=groups)


def cases():
    """``(label, call)`` pairs."""
    from ._triton_common import times_upstream
    from .density import triton_gpu as density

    for wname, dtype in W_DTYPES.items():
        for D in (1, 2, 3):
            for tag, (n_out, n_in) in SHAPES.items():
                if tag == "any n" and D != 3:
                    continue
                W, p_in, p_out = torch.empty(n_out, n_in, dtype=dtype), torch.empty(n_in, D), torch.empty(n_out, D)
                for _, call in _transport_passes(W, p_in, p_out):
                    yield f"W={wname} D={D} {tag}", call
        W = torch.empty(64, 32, 3, 3, dtype=dtype)
        for _, call in _transport_passes(W, torch.empty(32, 2), torch.empty(64, 2)):
            yield f"W={wname} conv3x3 D=2 n%16", call
        if dtype == torch.float16:
            continue
        # a grouped 3x3 conv (64 rows a group: a group per program) and a depthwise 7x7 one
        for label, W, n_in, groups in (("grouped3x3", torch.empty(128, 16, 3, 3, dtype=dtype), 32, 2),
                                       ("depthwise7x7", torch.empty(64, 1, 7, 7, dtype=dtype), 64, 64)):
            for _, call in _transport_passes(W, torch.empty(n_in, 2), torch.empty(W.shape[0], 2), groups):
                yield f"W={wname} {label} D=2 n%16", call
    for D in (1, 2, 3):
        for tag, n in (("n%16", 64), ("any n", 45)):
            if tag == "any n" and D != 3:
                continue
            p = torch.empty(n, D)
            yield f"density D={D} {tag}", lambda p=p: density.density_value(p)
            yield f"density D={D} {tag}", lambda p=p: density.density_fwd(p)
            yield f"upstream D={D} {tag}", lambda p=p: times_upstream(torch.ones(()), p, p)
