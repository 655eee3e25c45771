"""Sequential mode on ten report seeds: the split's drop per seed, its median and its worst, beside
the regular net's; and the failing seeds' figures, to see what they do.

    spatialnet study sequential-seeds       # seeds 0-9, test sets, the default setting

Runs are Table 1's (``table1.variant_config``): the spatial net at sequential's default
(``config.CHOSEN``) and the regular net at its own settings, every seed read on the test sets.
Writes ``OUT.json`` (every run's read-out), ``OUT.md`` (per seed, and the median and the worst
of each net) and, for the spatial net's seeds whose drop exceeds ``--fail`` (0.1), their Figures 1
and 2 under ``OUT/``.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from .._io import write_json, write_text
from ..analysis.evaluate import RECORD
from ..flags import add_config_args, config_from_args, int_list, given_per_mode
from .registry import register_study
from .runs import machine, run_jobs
from .table1 import variant_config

COLUMNS = ("full", "split", "drop", "silhouette", "ari", "share_norm", "dead_fraction", "stacked", "purity",
           "territory", "band", "out_silhouette")


def _arguments(p) -> None:
    p.add_argument("--seeds", type=int_list("--seeds"), default=list(range(10)))
    p.add_argument("--fail", type=float, default=0.1, help="a drop above this draws the seed's figures")
    p.add_argument("--out", default="results/sequential-seeds")
    p.add_argument("--runs-dir", default="runs/sequential-seeds")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    add_config_args(p, defaults={"eval_split": "test"})


def _fmt(v, spec=".3f") -> str:
    return "–" if v is None else format(v, spec)


def markdown(records: list, settings: dict) -> str:
    lines = ["# Sequential mode on the report seeds", "",
             f"Seeds {settings['seeds']}, read on the test sets; the spatial net at sequential's default "
             f"({settings['setting']}), the regular net at its own settings. Modularity and territories as in "
             f"results/table1.md and results/wide/table.md.", "",
             "| net | seed | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for r in sorted(records, key=lambda r: (r["net"], r["seed"])):
        lines.append(f"| {r['net']} | {r['seed']} | " + " | ".join(_fmt(r.get(k)) for k in COLUMNS) + " |")
    lines += ["", "| net | n | drop: median | worst | mean ± std | full: median |", "|---|---|---|---|---|---|"]
    for net in ("spatial", "regular"):
        drops = [r["drop"] for r in records if r["net"] == net]
        fulls = [r["full"] for r in records if r["net"] == net]
        if drops:
            lines.append(f"| {net} | {len(drops)} | {statistics.median(drops):.3f} | {max(drops):.3f} | "
                         f"{statistics.fmean(drops):.3f} ± {statistics.stdev(drops) if len(drops) > 1 else 0:.3f} | "
                         f"{statistics.median(fulls):.3f} |")
    lines += ["", f"Wall time {settings.get('wall_seconds', 0):.0f} s on {settings['machine']}.", "",
              f"Rerun: `{settings['rerun']}`", ""]
    return "\n".join(lines)


@register_study("sequential-seeds", question="Sequential mode on ten report seeds: the split's drop, its median and "
                                             "its worst, beside the regular net's, and what the failing seeds do?",
                outputs=("sequential-seeds.md", "sequential-seeds.json", "sequential-seeds/figure*-seed*.png"),
                arguments=_arguments)
def run(args) -> None:
    base = config_from_args(args, mode="sequential", net="spatial", seed=0)
    runs_dir, out = Path(args.runs_dir), Path(args.out)
    jobs = []
    for variant in ("spatial", "regular"):
        for seed in args.seeds:
            cfg = variant_config(base, "sequential", variant, seed, given_per_mode(args))
            jobs.append((cfg.to_dict(), str(runs_dir / f"sequential-{variant}-seed{seed}"), args.data_dir,
                         args.device, variant))
    records, t0 = [], time.time()
    settings = {"seeds": list(args.seeds), "machine": machine(args.workers, base.threads, args.device),
                "setting": {k: getattr(base.for_mode("sequential", given_per_mode(args)), k)
                            for k in ("alpha", "beta", "pos_lr_scale", "cost_warmup")}, "rerun": args.rerun}

    def record(cfg_dict, res, variant):
        records.append({"net": variant, "seed": cfg_dict["seed"], **{k: res.get(k) for k in RECORD}})
        settings["wall_seconds"] = time.time() - t0
        write_json(out.with_suffix(".json"), {"records": records, "settings": settings})
        write_text(out.with_suffix(".md"), markdown(records, settings))
        print(f"{variant} seed {cfg_dict['seed']}: full {res['full']:.3f} drop {res['drop']:.3f}", flush=True)

    run_jobs(jobs, args.workers, record)
    from ..analysis.figures import plot_figures
    from ..training.checkpoint import model_from_checkpoint
    for r in records:
        if r["net"] == "spatial" and r["drop"] > args.fail:
            model, cfg, _ = model_from_checkpoint(runs_dir / f"sequential-spatial-seed{r['seed']}" / "checkpoint.pt")
            plot_figures(model, cfg.split_layers, out, tasks=cfg.tasks,
                         title=f"sequential, seed {r['seed']}: drop {r['drop']:.3f}",
                         names=(f"figure1-seed{r['seed']}.png", f"figure2-seed{r['seed']}.png"))
    print(out.with_suffix(".md").read_text())
