"""The pool that trains a study's runs: each run a ``train`` run in its own folder, resumable, and
read back instead of retrained when it already finished with the same config; several at a
time in spawned processes. Also what a study writes about itself: the machine, and the
command-line flags that give a config."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
from pathlib import Path

import torch

from ..analysis.evaluate import READOUT
from ..config import PER_MODE, TrainConfig
from ..training import train

def finished_result(run_dir: Path, cfg: TrainConfig) -> dict | None:
    """The run's result when it finished with this config, was read on the same split and holds
    every read-out (else None; a finished run read on the other split, or before a read-out
    existed, is re-read from its checkpoint)."""
    try:
        res = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    try:
        old = TrainConfig.from_dict(res.get("config", {})).identity()
    except (TypeError, ValueError):
        return None
    return res if (old == cfg.identity() and all(k in res for k in READOUT)
                   and res.get("eval_split") == cfg.eval_split) else None


def trained(run_dir: Path, cfg: TrainConfig) -> bool:
    """Whether the run in ``run_dir`` trained to its last epoch with this config (its read-out
    may still be missing or older: :func:`finished_result`)."""
    try:
        m = json.loads((Path(run_dir) / "metrics.json").read_text())
        done = TrainConfig.from_dict(m["config"]).identity() == cfg.identity()
        return done and bool(m["history"]) and m["history"][-1]["epoch"] == cfg.epochs
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _worker(args):
    cfg_dict, run_dir, data_dir, device, *tag = args
    cfg = TrainConfig.from_dict(cfg_dict)
    res = finished_result(Path(run_dir), cfg)
    if res is None:
        res = train(cfg, run_dir, resume=True, data_dir=data_dir, progress=False, device=device,
                    log=lambda *a: None)
    return (cfg_dict, res, *tag)


def run_jobs(jobs, workers: int, record) -> None:
    """Trains ``jobs`` (``(config dict, run dir, data dir, device[, tag])``, runs already finished
    are read back) on ``workers`` processes, calling ``record(config dict, result[, tag])`` as each
    one ends."""
    if workers > 1:
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, maxtasksperchild=1) as pool:
            for out in pool.imap_unordered(_worker, jobs):
                record(*out)
    else:
        for job in jobs:
            record(*_worker(job))


def machine(workers: int, threads: int, device: str) -> str:
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, {workers} runs at a time, {threads} thread(s) each, "
            f"device {device}" + (f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else ""))


def cli_flags(cfg: TrainConfig, skip=("mode", "net", "seed", "data"), given=None) -> str:
    """The command-line flags that give ``cfg`` (its identity), for the rerun lines; with
    ``given``, the per-mode fields not in it are left out (each mode takes its own)."""
    if given is not None:
        skip = (*skip, *(k for k in PER_MODE if k not in given))
    def flag(k, v):
        name = f"--{k.replace('_', '-')}"
        if isinstance(v, bool):  # store_true flags
            return name if v else ""
        return f"{name} {','.join(map(str, v)) if isinstance(v, list) else v}"
    return " ".join(f for f in (flag(k, v) for k, v in cfg.identity().items() if k not in skip) if f)
