"""CPU sweep: forward+backward time, pairs/s and peak memory of every backend, as a markdown table.

    python -m benchmarks.report_cpu [--quick]

Each point runs in a fresh process (so one point's memory cannot hide another's) under an
address-space limit, so a size that does not fit is recorded as out of memory instead of taking
the machine down. Peak memory is the process's resident high-water mark during one
forward+backward minus its resident size just before it (the inputs are already allocated).
Writes ``benchmarks/results/cpu-<date>.md`` and ``.json``.
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
DENSITY_SIZES = [1024, 4096, 16384, 32768]
TRANSPORT_SIZES = [1024, 4096, 8192, 16384]
BACKENDS = {"density": ["reference", "numba", "pykeops"], "transport": ["reference", "numba"]}
MEMORY_LIMIT_GB = 20  # of the machine's 24 GiB


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _child(cost: str, backend: str, n: int, reps: int) -> dict:
    import resource

    limit = MEMORY_LIMIT_GB * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from benchmarks.cases import make_case

    try:
        run, pairs = make_case(cost, backend, n)
        run()  # compile, warm caches, allocate .grad once
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the resident high-water mark
        before = _rss_kb("VmRSS")
        run()
        peak_mb = (_rss_kb("VmHWM") - before) / 1024
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
    except (MemoryError, RuntimeError) as err:
        if "alloc" in str(err).lower() or isinstance(err, MemoryError):
            return {"oom": True}
        raise
    median = statistics.median(times)
    return {"oom": False, "median_s": median, "pairs_per_s": pairs / median, "peak_mb": peak_mb,
            "reps": reps}


def _measure(cost: str, backend: str, n: int, reps: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.report_cpu", "--child", cost, backend, str(n), str(reps)]
    # A fixed mmap threshold makes glibc return every large block on free, so the resident size
    # before a run does not hold the previous run's freed gradients and the high-water mark
    # counts everything the run allocates.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 17)}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=RESULTS.parent.parent, env=env)
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or ["(no output)"]
        if out.returncode < 0 or "alloc" in tail[0].lower():
            return {"oom": True}
        raise RuntimeError(f"{cost}/{backend}/{n} failed: {tail[0]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _versions() -> dict:
    import numba
    import torch

    v = {"python": platform.python_version(), "torch": torch.__version__, "numba": numba.__version__}
    try:
        import pykeops

        v["pykeops"] = pykeops.__version__
    except ImportError:
        v["pykeops"] = "not installed"
    return v


def _table(rows: list[dict], cost: str) -> list[str]:
    backends = BACKENDS[cost]
    lines = [f"### {cost} forward+backward", "",
             "| size | backend | median s | pairs/s | peak extra MB | speed-up vs reference |"
             + (" speed-up vs pykeops |" if cost == "density" else ""),
             "|---|---|---|---|---|---|" + ("---|" if cost == "density" else "")]
    for n in sorted({r["n"] for r in rows if r["cost"] == cost}):
        by = {r["backend"]: r for r in rows if r["cost"] == cost and r["n"] == n}
        for b in backends:
            r = by.get(b)
            if r is None:
                continue
            size = f"{n}x{n}" if cost == "transport" else f"N={n}"
            if r["oom"]:
                lines.append(f"| {size} | {b} | out of memory (> {MEMORY_LIMIT_GB} GB) | | | |"
                             + (" |" if cost == "density" else ""))
                continue

            def ratio(other):
                o = by.get(other)
                if o is None or b == other:
                    return "" if b == other else "n/a"
                return "ref OOM" if o["oom"] else f"{o['median_s'] / r['median_s']:.1f}x"

            cells = [size, b, f"{r['median_s']:.4f}", f"{r['pairs_per_s']:.3g}", f"{r['peak_mb']:.0f}",
                     ratio("reference")]
            if cost == "density":
                cells.append(ratio("pykeops"))
            lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--child", nargs=4, metavar=("COST", "BACKEND", "N", "REPS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        cost, backend, n, reps = args.child
        print(json.dumps(_child(cost, backend, int(n), int(reps))))
        return
    rows = []
    for cost, sizes in (("density", DENSITY_SIZES), ("transport", TRANSPORT_SIZES)):
        for n in sizes[:2] if args.quick else sizes:
            for backend in BACKENDS[cost]:
                reps = args.reps if n <= 16384 else 3
                r = {"cost": cost, "backend": backend, "n": n, **_measure(cost, backend, n, reps)}
                print(json.dumps(r), flush=True)
                rows.append(r)
    today = dt.date.today().isoformat()
    load = os.getloadavg()
    meta = {"date": today, "machine": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores", "load_avg_1_5_15": load, "versions": _versions()}
    RESULTS.mkdir(exist_ok=True)
    md = [f"# CPU benchmarks, {today}", "",
          f"Machine: {meta['machine']}; load average at the end {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}. "
          f"Versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}.", "",
          "Forward+backward of the cost (value and every gradient), float32, D = 2; median of "
          f"{args.reps} runs (3 above 16 384) after a warm-up, each point in a fresh process. Peak extra MB: "
          "resident high-water mark during one run minus the resident size before it. Ratios are "
          "measured in this run.", ""]
    md += _table(rows, "density") + _table(rows, "transport")
    stem = RESULTS / f"cpu-{today}"
    stem.with_suffix(".md").write_text("\n".join(md))
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
