"""Training a net 16x the paper's width on this CPU, end to end: time per epoch and peak memory,
the spatial net against the regular one.

    python -m benchmarks.train_wide [--hidden 2048,2048,2048,4096] [--epochs 2] [--data-dir D]

Each net trains in a fresh ``spatialnet train`` process (concat, the defaults with the width
rule, full data, the validation split, one thread, as every run of the studies), the two nets
taken in turn ``--pairs`` times; an epoch's time is read from the run's metrics (the
difference of the history's seconds, the first epoch left out when there are more: it also
compiles), the peak memory is the process's resident high-water mark (``ru_maxrss`` of the
child). Writes ``benchmarks/results/train-wide-<date>.{md,json}``.
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
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def one_run(net: str, hidden: str, epochs: int, data_dir: str | None, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        argv = ["train", "--mode", "concat", "--net", net, "--hidden", hidden, "--epochs", str(epochs),
                "--threads", str(threads), "--out", out, "--no-progress"] + (["--data-dir", data_dir] if data_dir else [])
        # the spatialnet command in a fresh process (its own huge-pages setting), which reports its own peak
        code = ("import resource, sys; from spatialnet.__main__ import main; rc = main(sys.argv[1:]); "
                "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
        r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"spatialnet {' '.join(argv)} failed:\n{r.stdout}\n{r.stderr}")
        peak_kb = int(next(line.split()[1] for line in r.stdout.splitlines() if line.startswith("MAXRSS_KB")))
        hist = json.loads((Path(out) / "metrics.json").read_text())["history"]
    secs = [h["seconds"] for h in hist]
    per_epoch = [b - a for a, b in zip([0.0] + secs, secs)]
    return {"net": net, "epoch_s": per_epoch, "steady_epoch_s": statistics.median(per_epoch[1:] or per_epoch),
            "peak_mb": peak_kb / 1024, "full": hist[-1].get("full")}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", default="2048,2048,2048,4096")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    runs = []
    for _ in range(args.pairs):
        for net in ("regular", "spatial"):
            runs.append(one_run(net, args.hidden, args.epochs, args.data_dir, args.threads))
            print(json.dumps(runs[-1]), flush=True)
    today = dt.date.today().isoformat()
    med = {n: statistics.median(r["steady_epoch_s"] for r in runs if r["net"] == n) for n in ("regular", "spatial")}
    peak = {n: max(r["peak_mb"] for r in runs if r["net"] == n) for n in ("regular", "spatial")}
    meta = {"date": today, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "hidden": args.hidden,
            "epochs": args.epochs, "threads": args.threads, "load_avg": os.getloadavg()}
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"train-wide-{today}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": runs, "median_epoch_s": med,
                                                     "peak_mb": peak}, indent=1))
    md = [f"# Training a {args.hidden} net on the CPU, {today}", "",
          f"{meta['machine']}, {args.threads} thread(s) per run, concat, full data, the defaults with the width "
          f"rule; {args.epochs} epochs per run, the nets in turn ({args.pairs} pair(s)). "
          f"`python -m benchmarks.train_wide --hidden {args.hidden} --epochs {args.epochs}`.", "",
          "| net | time per epoch (median, first epoch left out) | peak resident memory |", "|---|---|---|",
          f"| regular | {med['regular']:.1f} s | {peak['regular']:.0f} MB |",
          f"| spatial | {med['spatial']:.1f} s | {peak['spatial']:.0f} MB |", "",
          f"Spatial over regular: {med['spatial'] / med['regular']:.3f}x per epoch, "
          f"{peak['spatial'] / peak['regular']:.3f}x in memory (the spatial process also holds numba's and "
          f"LLVM's code, about 150 MB). Load average at the end: "
          f"{meta['load_avg'][0]:.2f}/{meta['load_avg'][1]:.2f}/{meta['load_avg'][2]:.2f}.", ""]
    stem.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
