"""The CPU costs inside a training step, against what the memory and the vector units allow.

    python -m benchmarks.cpu_step [--sizes 8192,16384] [--reps 7]

Two questions, each answered with ratios measured side by side in one process:

- **Transport against a copy of W.** For an ``n x n`` float32 layer: the median time of one
  read+write copy of W into an existing buffer (``y.copy_(x)``), and of the transport cost's
  forward+backward in a training-step loop (``fused_transport_cost(W, p_in, p_out,
  scale=...).backward()`` with every ``.grad`` set to None before each call, as
  ``optimizer.zero_grad()`` does), with the gradient buffers reused (the default,
  ``spatial_kernels/_buffers.py``) and with reuse off (a fresh ``dW`` each call), taken in
  turn. The floor is one read of W and one write of dW: one copy.
- **Density against the vector peak.** The FMA peak of this CPU from a small loop of
  independent fused multiply-adds on registers (``fma_peak``), beside the density kernel's
  forward+backward pairs/s and the FMAs each pair needs: the kernel's FMA-pipe use
  ``pairs/s * FMAs per pair / peak``. The count per pair (D = 2, float32) is 14 mul/FMA: 2 for
  the squared distance, 10 for exp (range reduction 3, polynomial 6, the power of two 1), 2 for
  the gradient; the sqrt, the division, compares, integer steps and the padded third
  coordinate's 3 are extra.

Writes ``benchmarks/results/cpu-step-<date>.{md,json}``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from numba import njit, prange

RESULTS = Path(__file__).resolve().parent / "results"
# mul/FMA per density pair, D = 2 float32 (see _density_fwd_bwd_kernel): |u|^2 2, exp 10, the
# gradient's 2
DENSITY_FMAS_PER_PAIR = 14
FMA_CHAINS = 8  # independent chains per element: hide the FMA latency without spilling


# Only "contract" (a*b+c may become one FMA): with reassociation LLVM folds the chains away;
# a and b are arguments, so nothing is known at compile time. The 16 rounds are a constant
# loop that LLVM unrolls, leaving the loop over i innermost, which it vectorises.
@njit(parallel=True, fastmath={"contract"}, cache=True)
def fma_peak(x, passes, a, b):
    """``FMA_CHAINS`` independent multiply-add chains per element of ``x`` (n, columns), 16
    rounds per pass, vectorised over the rows; ``x.size * FMA_CHAINS * 16 * passes`` FMAs."""
    n = x.shape[0]
    for c in prange(x.shape[1]):
        for _ in range(passes):
            for i in range(n):
                v0 = x[i, c]
                v1 = v0 + np.float32(1)
                v2 = v0 + np.float32(2)
                v3 = v0 + np.float32(3)
                v4 = v0 + np.float32(4)
                v5 = v0 + np.float32(5)
                v6 = v0 + np.float32(6)
                v7 = v0 + np.float32(7)
                for _r in range(16):
                    v0 = v0 * a + b
                    v1 = v1 * a + b
                    v2 = v2 * a + b
                    v3 = v3 * a + b
                    v4 = v4 * a + b
                    v5 = v5 * a + b
                    v6 = v6 * a + b
                    v7 = v7 * a + b
                x[i, c] = (v0 + v1 + v2 + v3 + v4 + v5 + v6 + v7) * np.float32(0.125)


def measure_fma_peak(reps: int = 5) -> float:
    """FMAs per second, the median of ``reps`` runs of :func:`fma_peak` on an L1-sized array."""
    x = np.asfortranarray(np.ones((1024, 64), np.float32))
    passes = 200
    a, b = np.float32(0.999), np.float32(0.001)
    fma_peak(x, 1, a, b)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fma_peak(x, passes, a, b)
        times.append(time.perf_counter() - t0)
    return x.size * FMA_CHAINS * 16 * passes / statistics.median(times)


def _median(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def transport_point(n: int, reps: int) -> dict:
    import torch

    from spatial_kernels import _buffers, fused_transport_cost

    g = torch.Generator().manual_seed(0)
    W = torch.randn(n, n, generator=g).requires_grad_(True)
    p_in = torch.randn(n, 2, generator=g).requires_grad_(True)
    p_out = torch.randn(n, 2, generator=g).requires_grad_(True)
    src, dst = torch.randn(n, n, generator=g), torch.empty(n, n)

    def step():
        W.grad = p_in.grad = p_out.grad = None  # optimizer.zero_grad()
        fused_transport_cost(W, p_in, p_out, scale=1.0 / (n * n)).backward()

    def fresh_step():
        _buffers.set_reuse(False)
        try:
            step()
        finally:
            _buffers.set_reuse(True)

    rows = {"copy": [], "reused": [], "fresh": []}
    fns = {"copy": lambda: dst.copy_(src), "reused": step, "fresh": fresh_step}
    for fn in fns.values():
        fn()
    for _ in range(reps):  # in turn, so the machine's load falls on all three alike
        for name, fn in fns.items():
            rows[name].append(_median(fn, 1))
    med = {k: statistics.median(v) for k, v in rows.items()}
    W.grad = None
    return {"n": n, "copy_s": med["copy"], "step_s": med["reused"], "fresh_step_s": med["fresh"],
            "step_copies": med["reused"] / med["copy"], "fresh_step_copies": med["fresh"] / med["copy"],
            "copy_GBps": 2 * n * n * 4 / med["copy"] / 1e9}


def in_step_point(n: int, reps: int, batch: int = 256, device: str = "cpu", dtype: str = "float32") -> dict:
    """The transport inside a step where a task gradient (``x @ W.T``'s) also reaches W.grad:
    task-only steps and task + transport steps, the transport's gradient added into W.grad in
    the kernel's pass (the fast path) or summed by autograd (the present path), taken in turn;
    what the transport adds is the median of the paired differences, in copies of W."""
    import torch

    import spatial_kernels
    from spatial_kernels import fused_transport_cost

    g = torch.Generator().manual_seed(0)
    wd = getattr(torch, dtype)
    W = (torch.randn(n, n, generator=g) / n ** 0.5).to(device, wd).requires_grad_(True)
    p_in = torch.randn(n, 2, generator=g).to(device).requires_grad_(True)
    p_out = torch.randn(n, 2, generator=g).to(device).requires_grad_(True)
    x = torch.randn(batch, n, generator=g).to(device, wd)
    src, dst = torch.randn(n, n, generator=g).to(device, wd), torch.empty(n, n, device=device, dtype=wd)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def step(kind: str):
        W.grad = p_in.grad = p_out.grad = None  # optimizer.zero_grad()
        loss = (x @ W.T).square().mean()
        if kind != "task":
            spatial_kernels.set_accumulate(kind == "fast")
            loss = loss + fused_transport_cost(W, p_in, p_out, scale=1.0 / (n * n))
        loss.float().backward()
        spatial_kernels.set_accumulate(True)
        sync()

    def copy():
        dst.copy_(src)
        sync()

    kinds = ("task", "fast", "present")
    for k in kinds:
        step(k)
    rows = {k: [] for k in (*kinds, "copy")}
    for _ in range(reps):  # in turn: the machine's load falls on every kind alike
        for k in kinds:
            rows[k].append(_median(lambda: step(k), 1))
        rows["copy"].append(_median(copy, 1))
    copy = statistics.median(rows["copy"])
    out = {"n": n, "batch": batch, "device": device, "dtype": dtype, "copy_s": copy,
           "task_step_s": statistics.median(rows["task"])}
    for k in ("fast", "present"):
        diffs = [b - a for a, b in zip(rows["task"], rows[k])]
        d = statistics.median(diffs)
        q1, q3 = statistics.quantiles(diffs, n=4)[0], statistics.quantiles(diffs, n=4)[2]
        out.update({f"{k}_step_s": statistics.median(rows[k]), f"{k}_added_s": d, f"{k}_copies": d / copy,
                    f"{k}_copies_iqr": [q1 / copy, q3 / copy]})
    out["samples"] = rows
    return out


def density_point(n: int, reps: int, peak: float) -> dict:
    import torch

    from spatial_kernels import fused_density_cost

    p = torch.randn(n, 2, generator=torch.Generator().manual_seed(0)).requires_grad_(True)

    def run():
        p.grad = None
        fused_density_cost(p, scale=1.0 / n).backward()

    s = _median(run, reps)
    pairs = n * n / s
    return {"n": n, "s": s, "pairs_per_s": pairs, "fma_share_of_peak": pairs * DENSITY_FMAS_PER_PAIR / peak}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[8192, 16384])
    ap.add_argument("--density-sizes", type=lambda s: [int(v) for v in s.split(",")], default=[4096, 16384])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--step-reps", type=int, default=15, help="rounds of the in-a-step comparison")
    ap.add_argument("--in-step-only", action="store_true",
                    help="only the transport inside a step (fast against present path): on CUDA too")
    ap.add_argument("--device", default="cpu", help="for --in-step-only: cpu or cuda")
    ap.add_argument("--dtypes", default="float32", help="for --in-step-only: W's dtypes, e.g. float32,bfloat16")
    args = ap.parse_args(argv)
    if args.in_step_only:
        rows = [in_step_point(n, args.step_reps, device=args.device, dtype=dt)
                for n in args.sizes for dt in args.dtypes.split(",")]
        md = ["| W | dtype | device | copy of W | task step | + transport, fast | copies | + transport, present | copies |",
              "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            md.append(f"| {r['n']}² | {r['dtype']} | {r['device']} | {r['copy_s'] * 1e3:.2f} ms | "
                      f"{r['task_step_s'] * 1e3:.1f} ms | {r['fast_added_s'] * 1e3:+.2f} ms | **{r['fast_copies']:.2f}** | "
                      f"{r['present_added_s'] * 1e3:+.2f} ms | {r['present_copies']:.2f} |")
        print("\n".join(md))
        return
    import torch

    peak = measure_fma_peak()
    print(json.dumps({"fma_peak_per_s": peak}), flush=True)
    transport = []
    for n in args.sizes:
        transport.append(transport_point(n, args.reps))
        print(json.dumps(transport[-1]), flush=True)
    in_step = []
    for n in args.sizes:
        in_step.append(in_step_point(n, args.step_reps))
        print(json.dumps({k: v for k, v in in_step[-1].items() if k != "samples"}), flush=True)
    density = [density_point(n, args.reps, peak) for n in args.density_sizes]
    for r in density:
        print(json.dumps(r), flush=True)
    peak_after = measure_fma_peak()

    today = dt.date.today().isoformat()
    load = os.getloadavg()
    machine = f"{platform.machine()} CPU ({_cpu_name()}), {os.cpu_count()} logical cores"
    meta = {"date": today, "machine": machine, "torch": torch.__version__, "load_avg_1_5_15": load,
            "fma_peak_per_s": [peak, peak_after]}
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"cpu-step-{today}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "transport": transport, "in_step": in_step,
                                                     "density": density}, indent=1))
    md = [f"# CPU costs inside a training step, {today}", "",
          f"{machine}; torch {torch.__version__}; load average at the end "
          f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}. `python -m benchmarks.cpu_step`.", "",
          "## Transport forward+backward in a training-step loop, against one copy of W", "",
          f"float32 W, D = 2; `.grad = None` before every call, as `zero_grad()` does; medians of "
          f"{args.reps} rounds, the three taken in turn in one process. `copies` = time / copy time.", "",
          "| W | copy of W | copy GB/s | step, dW reused | copies | step, fresh dW | copies |",
          "|---|---|---|---|---|---|---|"]
    for r in transport:
        md.append(f"| {r['n']}² | {r['copy_s'] * 1e3:.1f} ms | {r['copy_GBps']:.0f} | {r['step_s'] * 1e3:.1f} ms | "
                  f"**{r['step_copies']:.2f}** | {r['fresh_step_s'] * 1e3:.1f} ms | {r['fresh_step_copies']:.2f} |")
    md += ["", "## The transport inside a step where the task gradient also reaches W.grad", "",
           f"A step: `.grad = None`, the loss `(x @ W.T).square().mean()` (x {in_step[0]['batch'] if in_step else 256} "
           f"x n) plus the transport, backward. Task-only steps and the two transport paths taken in turn, "
           f"{args.step_reps} rounds; what the transport adds = the median of the paired differences "
           f"(interquartile range in brackets), in copies of W. fast: W's gradient added into W.grad in "
           f"the kernel's pass; present: dW made in the forward and summed by autograd.", "",
           "| W | copy of W | task step | + transport, fast | copies | + transport, present | copies |",
           "|---|---|---|---|---|---|---|"]
    for r in in_step:
        md.append(f"| {r['n']}² | {r['copy_s'] * 1e3:.1f} ms | {r['task_step_s'] * 1e3:.0f} ms | "
                  f"{r['fast_added_s'] * 1e3:+.1f} ms | **{r['fast_copies']:.2f}** ({r['fast_copies_iqr'][0]:.2f}–"
                  f"{r['fast_copies_iqr'][1]:.2f}) | {r['present_added_s'] * 1e3:+.1f} ms | {r['present_copies']:.2f} "
                  f"({r['present_copies_iqr'][0]:.2f}–{r['present_copies_iqr'][1]:.2f}) |")
    md += ["", "## Density forward+backward against the FMA peak", "",
           f"FMA peak of this CPU (`fma_peak`, {FMA_CHAINS} chains per lane, float32): "
           f"{peak / 1e9:.1f} G FMA/s before, {peak_after / 1e9:.1f} after. "
           f"A pair needs {DENSITY_FMAS_PER_PAIR} mul/FMA (D = 2) plus a sqrt and a division.", "",
           "| N | time | pairs/s | FMA pipes busy (pairs/s × FMAs per pair / peak) |", "|---|---|---|---|"]
    for r in density:
        md.append(f"| {r['n']} | {r['s'] * 1e3:.1f} ms | {r['pairs_per_s']:.3g} | {r['fma_share_of_peak']:.0%} |")
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
