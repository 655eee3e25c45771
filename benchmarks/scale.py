"""Scale benchmark: one full training step of an MLP whose spatial layers are ``width`` wide.

    python -m benchmarks.scale                      # CPU: widths 256, 1024, 4096, 16384
    python -m benchmarks.scale --device cuda        # GPU: adds 32768 and 65536, W in bfloat16
    THP_MEM_ALLOC_ENABLE=1 python -m benchmarks.scale --no-reference   # as the spatialnet command runs (-thp files)

The network is ``SpatialMLP([784, 1024, width, width, 20], spatial_layers=(3, 4))``: the paper's
pattern (costs on the last hidden layer and the output, the layer before them positioned) with
the spatial hidden layer ``width`` wide, so the step holds one ``width x width`` transport, one
``width``-neuron density and one ``width x width`` matmul. A step is: forward, cross-entropy on
both heads, spatial loss (alpha = 1, beta = 3), backward, Adam step; batch 256, random data.
With bfloat16 weights (the GPU default) Adam steps float32 master copies, as training does
(``spatialnet/training/optim.py``).

For every width it runs ``regular`` (the same net without costs), ``reference`` and the
device's fused backend (``numba`` on CPU, ``triton`` on GPU). Per point:

- time, side by side: one model with the backend's costs takes regular steps (task loss only,
  the positions get no gradient, so the step is a regular net's) and spatial steps in
  alternating pairs, and the medians of the second step of every pair are recorded
  (``step_s``, ``regular_step_s``), so their ratio does not move with the machine's load
  between points; then the median of the spatial loss's forward+backward alone (``spatial_s``;
  its share of the step is ``spatial_s / step_s``). The first step after a switch is not
  timed because it pays for the other kind's gradients: ``zero_grad`` frees them, and a
  regular step's fresh 67 MB gradient at width 4096 took ~9 ms to unmap, which strict
  alternation (before 2026-12-01) charged to the spatial step;
- peak memory of the spatial step (``peak_mb``) and of a regular net's step
  (``regular_peak_mb``): on CPU the resident high-water mark of a fresh process that does
  nothing else (with glibc returning large blocks on free, so the mark is what the step
  needs), on GPU ``torch.cuda.max_memory_allocated`` from a reset before the model is built.
  On CPU also ``step_peak_mb``: that mark less the process's resident size once its libraries
  are loaded and the backend's kernels compiled (on tiny inputs), before the model is built:
  the model, the optimiser's state and what two steps allocate, without the code of numba
  and LLVM (~150 MB resident), which a regular net's process never loads.

On CPU timing and memory run in separate fresh processes; the timing one keeps glibc's default
allocator settings, as a user's process would. A point that runs out of memory is recorded with
``oom: true``, not skipped. Writes ``benchmarks/results/scale-<device>-<date>.{md,json,png}``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CPU_WIDTHS = [256, 1024, 4096, 16384]
GPU_WIDTHS = CPU_WIDTHS + [32768, 65536]
BATCH = 256
CPU_MEMORY_LIMIT_GB = 22  # of the machine's 24 GiB: beyond it a point is out of memory


def build_step(width: int, backend: str | None, device: str, weight_dtype: str = "float32"):
    """Returns ``(step, regular_step, spatial_fwd_bwd)`` closures for one point;
    ``backend=None`` is the regular net (no costs, no positions: only ``step``).
    ``regular_step`` is the same model's step without the costs."""
    import torch

    from spatialnet.model import SpatialMLP
    from spatialnet.training.optim import LOW_PRECISION, MasterWeights

    torch.manual_seed(0)
    spatial = () if backend is None else (3, 4)
    with torch.device(device):  # initialise on the device: a 65536-wide layer is 4.3G weights
        model = SpatialMLP([784, 1024, width, width, 20], spatial_layers=spatial,
                           backend=backend or "auto")
    dtype = getattr(torch, weight_dtype)
    model.weights_to(dtype)  # positions stay float32; only W (and biases) go low-precision
    if dtype in LOW_PRECISION:  # the step training takes: Adam on float32 master copies
        opt = MasterWeights([{"params": list(model.parameters())}], torch.optim.Adam, lr=1e-3)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(BATCH, 784, device=device, dtype=dtype)
    y = torch.randint(0, 10, (BATCH, 2), device=device)

    def task_loss():
        logits = model(x).float()
        return (torch.nn.functional.cross_entropy(logits[:, :10], y[:, 0])
                + torch.nn.functional.cross_entropy(logits[:, 10:], y[:, 1]))

    def step(with_costs: bool = True):
        opt.zero_grad(set_to_none=True)
        loss = task_loss()
        if spatial and with_costs:
            loss = loss + model.spatial_loss(1.0, 3.0)
        loss.backward()
        opt.step()  # parameters without a gradient (unused positions) are skipped

    def spatial_fwd_bwd():
        opt.zero_grad(set_to_none=True)
        model.spatial_loss(1.0, 3.0).backward()

    if not spatial:
        return step, None, None
    return step, (lambda: step(False)), spatial_fwd_bwd


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _timed_once(fn, device: str) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _is_oom(err: BaseException) -> bool:
    # torch.OutOfMemoryError is a RuntimeError; CPU allocation failures under RLIMIT_AS say "alloc"
    return isinstance(err, MemoryError) or "out of memory" in str(err).lower() or "alloc" in str(err).lower()


def _oom_record(err: BaseException) -> dict:
    return {"oom": True, "error": str(err).splitlines()[0][:200]}


def _child_time(width: int, backend: str, device: str, reps: int, weight_dtype: str) -> dict:
    """Regular and spatial steps of one model, alternately, then the spatial loss alone."""
    try:
        step, regular_step, spatial = build_step(width, backend, device, weight_dtype)
        step()  # warm up: compile kernels, create Adam state
        regular_step()
        steps, regular = [], []
        for _ in range(reps):
            regular_step()  # pays for the spatial step's frees: not timed
            regular.append(_timed_once(regular_step, device))
            step()
            steps.append(_timed_once(step, device))
        spatial_s = statistics.median(_timed_once(spatial, device) for _ in range(reps))
    except (MemoryError, RuntimeError) as err:
        if _is_oom(err):
            return _oom_record(err)
        raise
    # the noise: the spatial/regular ratio of each pair, its spread over the pairs
    ratios = sorted(s / r - 1 for s, r in zip(steps, regular))
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    return {"oom": False, "step_s": statistics.median(steps), "regular_step_s": statistics.median(regular),
            "spatial_s": spatial_s, "added_pairs": ratios, "added_iqr": [q[0], q[2]]}


def _child_peak(width: int, backend: str, device: str, weight_dtype: str) -> dict:
    """Peak memory of building the net and taking two steps (the second with Adam's state)."""
    import torch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        import spatialnet.model  # noqa: F401  (what build_step imports, loaded before the base)
        import spatialnet.training.optim  # noqa: F401

        _warm_kernels(backend)
        base_mb = _status_mb("VmRSS")
    try:
        step, _, _ = build_step(width, None if backend == "regular" else backend, device, weight_dtype)
        step()
        step()
        _sync(device)
    except (MemoryError, RuntimeError) as err:
        if _is_oom(err):
            return _oom_record(err)
        raise
    if device == "cuda":
        return {"oom": False, "peak_mb": torch.cuda.max_memory_allocated() / 2**20}
    peak_mb = _status_mb("VmHWM")
    return {"oom": False, "peak_mb": peak_mb, "step_peak_mb": peak_mb - base_mb}


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":")) / 1024


def _warm_kernels(backend: str) -> None:
    """A tiny Adam step of a Linear layer (autograd's and the thread pools' start-up), with
    ``backend``'s costs loaded and compiled unless it is the regular net."""
    import torch

    from spatial_kernels import fused_density_cost, fused_transport_cost

    lin = torch.nn.Linear(8, 8)
    p = torch.randn(8, 2, requires_grad=True)
    opt = torch.optim.Adam([*lin.parameters(), p])
    loss = lin(torch.randn(4, 8)).square().mean()
    if backend != "regular":
        loss = loss + fused_transport_cost(lin.weight, p, p, backend=backend) + fused_density_cost(p, backend=backend)
    loss.backward()
    opt.step()


def _child(what: str, width: int, backend: str, device: str, reps: int, weight_dtype: str) -> dict:
    if device == "cpu":
        import resource

        limit = CPU_MEMORY_LIMIT_GB * 2**30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if what == "peak":
        return _child_peak(width, backend, device, weight_dtype)
    return _child_time(width, backend, device, reps, weight_dtype)


def _run_point(what: str, width: int, backend: str, device: str, reps: int, weight_dtype: str) -> dict:
    """``what="time"`` (backend's costs only) or ``"peak"``; on CPU in a fresh process."""
    if device == "cuda":
        # max_memory_allocated is per point once the stats are reset, so no fresh process is
        # needed (and CUDA start-up would cost more than the step)
        import gc

        import torch

        result = _child(what, width, backend, device, reps, weight_dtype)
        gc.collect()
        torch.cuda.empty_cache()
        return result
    cmd = [sys.executable, "-m", "benchmarks.scale", "--child", what, str(width), backend, device,
           str(reps), weight_dtype]
    env = dict(os.environ)
    if what == "peak":  # glibc returns large blocks on free, so the high-water mark is what the step needs
        env["MALLOC_MMAP_THRESHOLD_"] = str(1 << 17)
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=RESULTS.parent.parent, env=env)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["killed"])[-1]
        if out.returncode < 0 or "memory" in last.lower() or "alloc" in last.lower():
            return {"oom": True, "error": last[:200]}
        raise RuntimeError(f"width {width} {backend} ({what}): {last}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _plot(records: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for backend in sorted({r["backend"] for r in records}):
        rs = sorted((r for r in records if r["backend"] == backend and not r["oom"]), key=lambda r: r["width"])
        if rs:
            ax_t.plot([r["width"] for r in rs], [r["step_s"] for r in rs], "o-", label=f"{backend} step")
            ax_m.plot([r["width"] for r in rs], [r["peak_mb"] for r in rs], "o-", label=backend)
        for r in records:
            if r["backend"] == backend and r["oom"]:
                ax_m.annotate(f"{backend}: OOM", (r["width"], ax_m.get_ylim()[1] if rs else 1), fontsize=8)
    reg = {}
    for r in records:
        if not r["oom"] and r.get("regular_step_s"):
            reg[r["width"]] = (r["regular_step_s"], r["regular_peak_mb"])
    ws = sorted(reg)
    if ws:
        ax_t.plot(ws, [reg[w][0] for w in ws], "k--", label="regular step (no costs)")
        ax_m.plot(ws, [reg[w][1] for w in ws], "k--", label="regular (no costs)")
    for ax, ylabel in ((ax_t, "median step time (s)"), (ax_m, "peak memory (MB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("spatial layer width")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="one training step at growing spatial widths")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--widths", type=lambda s: [int(w) for w in s.split(",")], default=None,
                    help="comma-separated widths (default: 256,1024,4096,16384; +32768,65536 on cuda)")
    ap.add_argument("--reps", type=int, default=5, help="timed steps per point (median)")
    ap.add_argument("--reps-large", type=int, default=3, help="timed steps per point above width 4096")
    ap.add_argument("--no-reference", action="store_true",
                    help="time the fused backend only (the reference takes minutes per step at 16384)")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        what, width, backend, device, reps, wdt = args.child
        print(json.dumps(_child(what, int(width), backend, device, int(reps), wdt)))
        return
    device = args.device
    widths = args.widths or (GPU_WIDTHS if device == "cuda" else CPU_WIDTHS)
    fused = "triton" if device == "cuda" else "numba"
    weight_dtype = "bfloat16" if device == "cuda" else "float32"
    records = []
    for w in widths:
        reps = args.reps if w <= 4096 else args.reps_large
        regular = _run_point("peak", w, "regular", device, reps, weight_dtype)
        print(json.dumps({"width": w, "backend": "regular", **regular}), flush=True)
        for backend in (fused,) if args.no_reference else ("reference", fused):
            peak = _run_point("peak", w, backend, device, reps, weight_dtype)
            timed = _run_point("time", w, backend, device, reps, weight_dtype) if not peak["oom"] else peak
            oom = peak["oom"] or timed["oom"]
            rec = {"width": w, "backend": backend, "step_s": timed.get("step_s"), "spatial_s": timed.get("spatial_s"),
                   "regular_step_s": timed.get("regular_step_s"), "added_iqr": timed.get("added_iqr"),
                   "added_pairs": timed.get("added_pairs"), "peak_mb": peak.get("peak_mb"),
                   "regular_peak_mb": regular.get("peak_mb"), "step_peak_mb": peak.get("step_peak_mb"),
                   "regular_step_peak_mb": regular.get("step_peak_mb"), "oom": oom, "weight_dtype": weight_dtype}
            if oom:
                rec["error"] = (peak if peak["oom"] else timed).get("error", "")
            print(json.dumps(rec), flush=True)
            records.append(rec)
        _write(records, device, weight_dtype, args.reps, args.reps_large)  # after every width: a cut-off run keeps its rows
    print(max(RESULTS.glob(f"scale-{device}-{dt.date.today().isoformat()}*.md"), key=lambda p: p.stat().st_mtime).read_text())


def _write(records, device, weight_dtype, reps, reps_large=3) -> None:
    import torch

    today = dt.date.today().isoformat()
    if device == "cuda":
        machine = torch.cuda.get_device_name()
    else:
        machine = f"{platform.machine()} CPU, {os.cpu_count()} cores"
    load = os.getloadavg()
    thp = device == "cpu" and os.environ.get("THP_MEM_ALLOC_ENABLE", "0") not in ("", "0")
    stem = RESULTS / f"scale-{device}-{today}{'-thp' if thp else ''}"
    RESULTS.mkdir(exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(records, indent=1))
    md = [f"# Scale benchmark, {device}, {today}", "",
          f"{machine}; torch {torch.__version__}; W in {weight_dtype}; load average at the end "
          f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}."
          + (" Run with `THP_MEM_ALLOC_ENABLE=1` (torch's large allocations on huge pages, as the "
             "`spatialnet` command sets for itself)." if thp else "") + "", "",
          "One training step of `SpatialMLP([784, 1024, width, width, 20], spatial_layers=(3, 4))`, "
          f"batch {BATCH}, Adam. Times: medians of {reps} steps ({reps_large} above width 4096) after a warm-up, "
          "the regular step (task loss only) and the spatial step taken in alternating pairs on one model in "
          "one process, the second step of each pair timed; `spatial` = the spatial loss's forward+backward alone; `share` = spatial / step; "
          "`added` = step / regular step − 1, and in brackets the interquartile range of that ratio over "
          "the pairs (the noise: an `added` inside it is within the noise of nothing added only if the "
          "range spans 0). Peaks: "
          + ("`torch.cuda.max_memory_allocated`" if device == "cuda" else
             "resident high-water mark of a fresh process per point that builds the net and takes two steps")
          + "; memory ratio = peak / regular peak."
          + ("" if device == "cuda" else " Step MB: the same mark less the resident size of the process with its "
             "libraries loaded and kernels compiled, before the model is built (without numba's and LLVM's code).")
          + "", "",
          "| width | backend | step s | spatial s | share | regular step s | added | peak MB | regular peak MB | "
          "memory ratio | step MB | regular step MB | step memory ratio |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if r["oom"]:
            md.append(f"| {r['width']} | {r['backend']} | out of memory | | | "
                      f"{_f(r['regular_step_s'])} | | | {_f(r['regular_peak_mb'], 0)} | | | | |")
            continue
        added = r["step_s"] / r["regular_step_s"] - 1 if r["regular_step_s"] else float("nan")
        iqr = r.get("added_iqr")
        noise = f" ({iqr[0]:+.1%} to {iqr[1]:+.1%})" if iqr else ""
        md.append(f"| {r['width']} | {r['backend']} | {_f(r['step_s'])} | {_f(r['spatial_s'])} | "
                  f"{r['spatial_s'] / r['step_s']:.0%} | {_f(r['regular_step_s'])} | {added:+.1%}{noise} | "
                  f"{_f(r['peak_mb'], 0)} | {_f(r['regular_peak_mb'], 0)} | "
                  f"{r['peak_mb'] / r['regular_peak_mb']:.2f} | {_f(r.get('step_peak_mb'), 0)} | "
                  f"{_f(r.get('regular_step_peak_mb'), 0)} | {_ratio(r.get('step_peak_mb'), r.get('regular_step_peak_mb'))} |")
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    _plot(records, stem.with_suffix(".png"), f"one training step, {machine}")


def _ratio(a, b) -> str:
    return f"{a / b:.2f}" if a is not None and b else ""


def _f(v, digits: int = 3) -> str:
    return "" if v is None else f"{v:.{digits}f}" if digits else f"{v:.0f}"


if __name__ == "__main__":
    main()
