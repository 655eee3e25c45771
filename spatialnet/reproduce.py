"""Table 1 of the paper: 3 input modes x {regular, spatial} x seeds, full vs split accuracy.

Runs live under ``runs_dir/<mode>-<net>-seed<k>/`` (checkpoint, metrics, result.json); a finished
run with the same config is not retrained and a half-finished one resumes, so ``reproduce`` can be
killed and restarted. ``table1.json`` and ``table1.md`` are rewritten atomically after every
finished run. Besides full and split accuracy, every run records the modularity of its split
(``cross_task_share``, ``segregation``, ``dead``: ``modularity.py``), as lists over seeds.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from ._io import write_json, write_text
from .data import MODES
from .config import NETS, TrainConfig
from .train import train

PAPER = {  # Table 1: (mean, std) of full, split, drop
    "concat": {"regular": ((.92, .04), (.80, .13), (.11, .15)), "spatial": ((.92, .04), (.92, .04), (.00, .00))},
    "mix": {"regular": ((.88, .04), (.70, .17), (.19, .20)), "spatial": ((.89, .04), (.89, .03), (.00, .00))},
    "sequential": {"regular": ((.92, .05), (.33, .20), (.60, .20)), "spatial": ((.92, .05), (.84, .08), (.07, .07))},
}


def run_name(cfg: TrainConfig) -> str:
    return f"{cfg.mode}-{cfg.net}-seed{cfg.seed}"


def _finished(run_dir: Path, cfg: TrainConfig) -> dict | None:
    try:
        res = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    try:
        old = TrainConfig.from_dict(res.get("config", {})).identity()
    except (TypeError, ValueError):
        return None
    return res if old == cfg.identity() and "cross_task_share" in res else None


def _worker(args):
    cfg_dict, run_dir, data_dir, device = args
    cfg = TrainConfig.from_dict(cfg_dict)
    res = _finished(Path(run_dir), cfg)
    if res is None:
        res = train(cfg, run_dir, resume=True, data_dir=data_dir, progress=False, device=device,
                    log=lambda *a: None)
    return cfg_dict, res


def run_jobs(jobs, workers: int, record) -> None:
    """Trains ``jobs`` (``(config dict, run dir, data dir, device)``, runs already finished are read
    back) on ``workers`` processes, calling ``record(config dict, result)`` as each one ends."""
    if workers > 1:
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, maxtasksperchild=1) as pool:
            for cfg_dict, res in pool.imap_unordered(_worker, jobs):
                record(cfg_dict, res)
    else:
        for job in jobs:
            record(*_worker(job))


def machine(workers: int, threads: int, device: str) -> str:
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, {workers} runs at a time, {threads} thread(s) each, "
            f"device {device}" + (f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else ""))


def cli_flags(cfg: TrainConfig, skip=("mode", "net", "seed", "data")) -> str:
    """The command-line flags that give ``cfg`` (its identity), for the rerun lines."""
    return " ".join(f"--{k.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, list) else v}"
                    for k, v in cfg.identity().items() if k not in skip)


def _mean_std(xs):
    return (statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0)


MEASURES = ("cross_task_share", "segregation", "dead")
PER_RUN = ("full", "split", "full_per_task", "split_per_task", "split_sizes", *MEASURES)


def summarise(results: dict) -> dict:
    out = {}
    for mode, nets in results.items():
        for net, r in nets.items():
            drops = [f - s for f, s in zip(r["full"], r["split"])]
            row = {"full": _mean_std(r["full"]), "split": _mean_std(r["split"]),
                   "drop": _mean_std(drops), "seeds": len(r["full"])}
            for k in MEASURES:
                xs = [x for x in r[k] if x is not None]
                row[k] = _mean_std(xs) if xs else None
            out.setdefault(mode, {})[net] = row
    return out


def table_markdown(summary: dict, settings: dict) -> str:
    def cell(ms, spec=".3f"):
        return "–" if ms is None else f"{ms[0]:{spec}} ± {ms[1]:{spec}}"

    lines = ["# Table 1: accuracy before and after splitting the network", "",
             f"Data: {settings['data']}. Seeds: {settings['seeds']}. Epochs: {settings['config']['epochs']}. "
             f"Each number is the mean ± std over seeds of the mean accuracy of the two tasks "
             f"(MNIST, Fashion-MNIST); 'paper' is Wołczyk et al. 2019, Table 1.", "",
             "| mode | net | full (ours) | full (paper) | split (ours) | split (paper) | drop (ours) | drop (paper) |",
             "|---|---|---|---|---|---|---|---|"]
    modularity = ["", "Modularity of the split (`spatialnet/modularity.py`): cross-task share of Σ|w| between "
                  "the split layers (0 = disjoint subnetworks, 0.5 = no structure), segregation of the "
                  "positions (chance-corrected same-task share of each neuron's 5 nearest neighbours; "
                  "0 = interleaved, 1 = separate clusters; spatial nets only) and dead neurons (negligible "
                  "outgoing weights; left out of both).", "",
                  "| mode | net | cross-task share | segregation | dead neurons |", "|---|---|---|---|---|"]
    for mode in MODES:
        for net in NETS:
            s = summary.get(mode, {}).get(net)
            p = PAPER[mode][net]
            if s is None:
                lines.append(f"| {mode} | {net} | (not run) | {p[0][0]:.2f} ± {p[0][1]:.2f} | | "
                             f"{p[1][0]:.2f} ± {p[1][1]:.2f} | | {p[2][0]:.2f} ± {p[2][1]:.2f} |")
                continue
            lines.append(f"| {mode} | {net} | {cell(s['full'])} | {p[0][0]:.2f} ± {p[0][1]:.2f} | "
                         f"{cell(s['split'])} | {p[1][0]:.2f} ± {p[1][1]:.2f} | {cell(s['drop'])} | "
                         f"{p[2][0]:.2f} ± {p[2][1]:.2f} |")
            modularity.append(f"| {mode} | {net} | {cell(s['cross_task_share'])} | {cell(s['segregation'])} | "
                              f"{cell(s['dead'], '.1f')} |")
    lines += modularity
    lines += ["", f"Total wall time: {settings.get('wall_seconds', 0):.0f} s on {settings['machine']}.", "",
              f"Rerun: `{settings['rerun']}`", ""]
    return "\n".join(lines)


def reproduce(base: TrainConfig, out_dir, runs_dir, *, seeds=(0, 1, 2), modes=MODES, data_dir=None,
              workers: int = 2, figures: bool = True, device: str = "auto", log=print) -> dict:
    out_dir, runs_dir = Path(out_dir), Path(runs_dir)
    jobs = []
    for mode in modes:
        for net in NETS:
            for seed in seeds:
                cfg = TrainConfig.from_dict({**base.to_dict(), "mode": mode, "net": net, "seed": seed})
                jobs.append((cfg.to_dict(), str(runs_dir / run_name(cfg)), data_dir, device))
    # sequential epochs see both training sets: twice the steps, so start them first
    jobs.sort(key=lambda j: j[0]["mode"] != "sequential")
    settings = {"config": {k: v for k, v in base.to_dict().items() if k not in ("mode", "net", "seed")},
                "seeds": list(seeds), "modes": list(modes), "data": base.data, "workers": workers,
                "machine": machine(workers, base.threads, device), "torch": torch.__version__,
                "rerun": f"spatialnet reproduce --seeds {','.join(map(str, seeds))} --workers {workers} "
                         + cli_flags(base)}
    results: dict = {}
    t0 = time.time()

    def record(cfg_dict, res):
        r = results.setdefault(cfg_dict["mode"], {}).setdefault(
            cfg_dict["net"], {"seeds": [], **{k: [] for k in PER_RUN}})
        r["seeds"].append(cfg_dict["seed"])
        for k in PER_RUN:
            r[k].append(res[k])
        settings["wall_seconds"] = time.time() - t0
        summary = summarise(results)
        write_json(out_dir / "table1.json", {"results": results, "summary": summary, "paper": PAPER,
                                             "settings": settings})
        write_text(out_dir / "table1.md", table_markdown(summary, settings))
        log(f"[{time.time() - t0:6.0f}s] {cfg_dict['mode']:10s} {cfg_dict['net']:7s} seed {cfg_dict['seed']}: "
            f"full {res['full']:.4f} split {res['split']:.4f} (train {res.get('train_seconds', 0):.0f}s)")

    run_jobs(jobs, workers, record)
    if figures:  # Figures 1 and 2 of each mode's spatial net, first seed
        try:
            from .plots import plot_figures
        except ImportError as exc:  # a bare GPU image may lack matplotlib: the table is written
            log(f"figures not drawn: {exc}")
            return results
        from .checkpoint import model_from_checkpoint
        for mode in modes:
            model, cfg, _ = model_from_checkpoint(runs_dir / f"{mode}-spatial-seed{seeds[0]}" / "checkpoint.pt")
            plot_figures(model, cfg.split_layers, out_dir, tasks=cfg.tasks, title=f"spatial net, {mode}, seed {seeds[0]}",
                         names=(f"figure1-{mode}.png", f"figure2-{mode}.png"))
    return results
