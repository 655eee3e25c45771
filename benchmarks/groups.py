"""Grouped and depthwise weights: the fused transport with its groups against the reference (which
makes every group's distances) and against a per-group loop of the ungrouped kernel (what a user
had before groups were in the kernels), forward+backward, at ConvNeXt's depthwise shapes.

    python -m benchmarks.groups                 # -> results/groups-cpu-<date>.{md,json}
    pytest benchmarks/test_bench_groups.py --benchmark-only

Each case: a depthwise 7x7 weight ``(C, 1, 7, 7)``, C in ``CHANNELS``, positions ``(C, 2)``.
Medians of ``REPEATS`` alternating calls on one thread. The kernel's extra memory beside dW is
stated from the code: its row chunks' partials of grad p_in and grad p_out, O(n_in + n_out).
"""
from __future__ import annotations

import json
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import torch

from spatial_kernels import fused_transport_cost, transport_cost_reference

CHANNELS = (96, 192, 384, 768, 1024)
KERNEL = (7, 7)
REPEATS = 15


def depthwise_case(C: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(C, 1, *KERNEL, generator=g).requires_grad_(True)
    p_in = torch.randn(C, 2, generator=g).requires_grad_(True)
    p_out = torch.randn(C, 2, generator=g).requires_grad_(True)
    return W, p_in, p_out


def runners(W, p_in, p_out, groups: int) -> dict:
    """name -> a forward+backward of the case (gradients dropped after)."""
    def clear():
        W.grad = p_in.grad = p_out.grad = None

    def fused():
        fused_transport_cost(W, p_in, p_out, groups=groups, backend="numba").backward()
        clear()

    def reference():
        transport_cost_reference(W, p_in, p_out, groups).backward()
        clear()

    def per_group_loop():
        opg, ipg = W.shape[0] // groups, p_in.shape[0] // groups
        total = sum(fused_transport_cost(W[g * opg:(g + 1) * opg], p_in[g * ipg:(g + 1) * ipg],
                                         p_out[g * opg:(g + 1) * opg], backend="numba") for g in range(groups))
        total.backward()
        clear()

    return {"fused (groups in the kernel)": fused, "reference": reference, "per-group loop": per_group_loop}


def measure(C: int) -> dict:
    W, p_in, p_out = depthwise_case(C)
    runs = runners(W, p_in, p_out, groups=C)
    for fn in runs.values():  # compile, warm up
        fn()
    times = {k: [] for k in runs}
    for _ in range(REPEATS):
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"C": C, "kernel": list(KERNEL), "median_s": med,
            "speedup_vs_reference": med["reference"] / med["fused (groups in the kernel)"],
            "speedup_vs_loop": med["per-group loop"] / med["fused (groups in the kernel)"]}


def main() -> None:
    import numba
    torch.set_num_threads(1)
    numba.set_num_threads(1)  # as training runs them: a parallel region on a busy core waits for its peers
    rows = [measure(C) for C in CHANNELS]
    out = Path(__file__).parent / "results" / f"groups-cpu-{date.today()}"
    lines = ["# Depthwise 7x7 transport, forward+backward (numba, one thread)", "",
             "Two other jobs shared this 2-core machine while it ran: compare the columns, not the times.", "",
             f"{platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}; medians of "
             f"{REPEATS} alternating calls. Extra memory of the fused kernel beside dW: 64 x 3 x C + 4 C numbers "
             f"(its row chunks' partials of grad p_in), O(n_in + n_out).", "",
             "| C | fused | reference | per-group loop | fused vs reference | fused vs loop |", "|---|---|---|---|---|---|"]
    for r in rows:
        m = r["median_s"]
        lines.append(f"| {r['C']} | {m['fused (groups in the kernel)'] * 1e3:.2f} ms | {m['reference'] * 1e3:.2f} ms | "
                     f"{m['per-group loop'] * 1e3:.1f} ms | {r['speedup_vs_reference']:.1f}x | "
                     f"{r['speedup_vs_loop']:.0f}x |")
    lines += ["", "Rerun: `python -m benchmarks.groups`", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "torch": torch.__version__}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
