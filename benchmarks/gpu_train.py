"""Training on a GPU, timed: the paper net per mode, Table 1 through ``spatialnet reproduce``, and a
wide net in bfloat16 weights. Run by ``benchmarks/gpu_check.sh``; every run is a ``spatialnet``
command in its own process, under a time limit, and what it left behind is read back.

    python -m benchmarks.gpu_train pack [SRC]          # $SPATIALNET_DATA's idx files -> data/*/raw/*.gz
    python -m benchmarks.gpu_train unpack SRC DST     # data/*.gz (carried to the device) -> DST
    python -m benchmarks.gpu_train paper OUT LIMIT    # the 3 modes at once, recipe epochs
    python -m benchmarks.gpu_train table OUT LIMIT    # spatialnet study table1 --device cuda (18 runs)
    python -m benchmarks.gpu_train wide OUT LIMIT [HIDDEN]   # one wide concat run, bf16 weights
    python -m benchmarks.gpu_train render OUT         # markdown of all of the above

Arguments after ``--`` go to every ``spatialnet`` command of paper/table/wide and override
theirs (tests/spatial_kernels/test_gpu_train.py runs them on the CPU with ``-- --device cpu --epochs 1 ...``).

A run stopped by its limit keeps its per-epoch checkpoint; ``render`` then splits that
checkpoint (``spatialnet split``) and reports the read-out at the epoch it reached, with the
number of epochs, so a partial run still gives seconds per epoch and a read-out. The data are
the full MNIST/Fashion-MNIST when ``$SPATIALNET_DATA`` has them (``unpack``), else the embedded
subset, and the report says which.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

PY = sys.executable
WIDE_HIDDEN = "2048,2048,2048,4096"  # 16x the paper's widths


def pack(src: str | None = None, dst: str = "data") -> None:
    """The full datasets' idx files, gzipped under ``dst`` (36 MB: small enough to carry)."""
    from spatialnet.data import DATASETS, RAW_FILES, default_data_dir, missing_files

    root = default_data_dir(src)
    if missing_files(root):
        raise SystemExit(f"no full MNIST/Fashion-MNIST under {root}: pass the folder that has them")
    for name in DATASETS:
        for f in RAW_FILES:
            out = Path(dst) / name / "raw" / f"{f}.gz"
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(root / name / "raw" / f, "rb") as a, gzip.open(out, "wb", compresslevel=9) as b:
                shutil.copyfileobj(a, b)
    print(f"packed {len(DATASETS) * len(RAW_FILES)} files from {root} into {dst}")


def unpack(src: str, dst: str) -> None:
    """``src/{MNIST,FashionMNIST}/raw/*.gz`` -> uncompressed idx files under ``dst``."""
    n = 0
    for gz in Path(src).glob("*/raw/*.gz"):
        out = Path(dst) / gz.parent.relative_to(src) / gz.stem
        out.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(gz, "rb") as f, open(out, "wb") as g:
            shutil.copyfileobj(f, g)
        n += 1
    print(f"unpacked {n} files from {src} to {dst}")


EXTRA: list[str] = []  # appended to every spatialnet command (see the module docstring)


def _spatialnet(args: list[str], log: Path) -> subprocess.Popen:
    # its own process group, so that a stopped reproduce takes its worker processes with it
    return subprocess.Popen([PY, "-m", "spatialnet", *args, *EXTRA], stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _wait(procs: list[subprocess.Popen], limit: float) -> float:
    t0 = time.time()
    for p in procs:
        try:
            p.wait(timeout=max(0.0, limit - (time.time() - t0)))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return time.time() - t0


def paper(out: str, limit: float) -> None:
    """The paper's net, spatial, one run per mode, all three at once on the GPU."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    procs = [_spatialnet(["train", "--mode", mode, "--net", "spatial", "--device", "cuda", "--data", "auto",
                          "--no-progress", "--out", str(out / f"paper-{mode}")], out / f"paper-{mode}.log")
             for mode in ("concat", "mix", "sequential")]
    wall = _wait(procs, limit)
    (out / "paper.json").write_text(json.dumps({"wall_s": wall, "limit_s": limit, "parallel": 3}))


def table(out: str, limit: float, workers: int = 6) -> None:
    """``spatialnet study table1 --device cuda``, spatial and regular on seeds 0-2: as many of the 18
    runs as the limit allows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    p = _spatialnet(["study", "table1", "--variants", "spatial,regular", "--seeds", "0,1,2", "--device", "cuda",
                     "--workers", str(workers), "--data", "auto",
                     "--out", str(out / "table1"), "--runs-dir", str(out / "table1-runs")], out / "table.log")
    wall = _wait([p], limit)
    (out / "table.json").write_text(json.dumps({"wall_s": wall, "limit_s": limit, "workers": workers}))


def wide(out: str, limit: float, hidden: str = WIDE_HIDDEN) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    p = _spatialnet(["train", "--mode", "concat", "--net", "spatial", "--hidden", hidden, "--weight-dtype",
                     "bfloat16", "--device", "cuda", "--data", "auto", "--no-progress", "--out", str(out / "wide")],
                    out / "wide.log")
    wall = _wait([p], limit)
    (out / "wide.json").write_text(json.dumps({"wall_s": wall, "limit_s": limit, "hidden": hidden}))


def _readout(run: Path) -> dict | None:
    """The run's result.json, or the read-out of its last checkpoint when it was stopped early."""
    if (run / "result.json").is_file():
        return json.loads((run / "result.json").read_text())
    if not (run / "checkpoint.pt").is_file():
        return None
    split = run / "split.json"
    subprocess.run([PY, "-m", "spatialnet", "split", str(run / "checkpoint.pt"), "--json", str(split)],
                   capture_output=True, timeout=120)
    return json.loads(split.read_text()) if split.is_file() else None


def _row(name: str, run: Path) -> str:
    try:
        metrics = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return f"| {name} | (no epoch finished) | | | | | | | | |"
    hist, cfg = metrics["history"], metrics["config"]
    secs = [b["seconds"] - a["seconds"] for a, b in zip([{"seconds": 0.0}] + hist, hist)]
    ev = _readout(run) or {}

    def f(k, spec=".3f"):
        return "–" if ev.get(k) is None else format(ev[k], spec)
    return (f"| {name} | {cfg['mode']} {','.join(map(str, cfg['hidden']))} {cfg.get('weight_dtype', 'float32')} "
            f"({metrics['data']} data) | {len(hist)}/{cfg['epochs']} | {statistics.median(secs):.2f} | "
            f"{f('full')} | {f('split')} | {f('drop')} | {f('silhouette')} | {f('ari')} | {f('share_norm')} |")


HEAD = ["| run | net | epochs done | s/epoch (median) | full | split | drop | silhouette | ARI | share / chance |",
        "|---|---|---|---|---|---|---|---|---|---|"]


def render(out: str) -> str:
    out = Path(out)
    lines = []
    runs = [(f"paper {m}", out / f"paper-{m}") for m in ("concat", "mix", "sequential")] + [("wide", out / "wide")]
    lines += ["### Training runs (one process each)", "", *HEAD]
    lines += [_row(name, run) for name, run in runs if run.exists()]
    for what in ("paper", "wide"):
        if (out / f"{what}.json").is_file():
            info = json.loads((out / f"{what}.json").read_text())
            lines.append(f"\n{what}: {info['wall_s']:.0f} s wall (limit {info['limit_s']:.0f} s)"
                         + (", the three modes at once on the GPU" if what == "paper" else ""))
    lines += ["", "### Table 1 on the GPU (`spatialnet study table1 --device cuda`)", ""]
    if (out / "table.json").is_file():
        info = json.loads((out / "table.json").read_text())
        done = 0
        if (out / "table1" / "table1.json").is_file():
            res = json.loads((out / "table1" / "table1.json").read_text())["results"]
            done = sum(len(r["full"]) for nets in res.values() for r in nets.values())
            lines += [l for l in (out / "table1" / "table1.md").read_text().splitlines() if l.startswith("|")]
        proj = f"; projected for all 18: {info['wall_s'] * 18 / done:.0f} s" if 0 < done < 18 else ""
        lines.append(f"\n{done} of 18 runs in {info['wall_s']:.0f} s with {info['workers']} runs at a time on the GPU "
                     f"(limit {info['limit_s']:.0f} s){proj}. Goal: the whole table in <= 180 s.")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if "--" in argv:
        EXTRA[:] = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    cmd, *rest = argv or ["help"]
    if cmd == "pack" and len(rest) <= 1:
        pack(*rest)
    elif cmd == "unpack" and len(rest) == 2:
        unpack(*rest)
    elif cmd in ("paper", "table") and len(rest) == 2:
        {"paper": paper, "table": table}[cmd](rest[0], float(rest[1]))
    elif cmd == "wide" and len(rest) in (2, 3):
        wide(rest[0], float(rest[1]), *rest[2:])
    elif cmd == "render" and len(rest) == 1:
        print(render(rest[0]))
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
