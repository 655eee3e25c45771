"""``spatialnet study grid``: a grid of runs, variants x modes x nets x seeds, one JSON record per run.

A variant is a hidden-width list (``--hidden-list``, the width study) or a task list
(``--tasks-list``, more than two tasks). Every run is a ``spatialnet train`` run under
``runs_dir/<variant>-<mode>-<net>-seed<k>``, resumable and skipped when already finished, as in
``reproduce``. Writes ``OUT/NAME.json`` (``{"records": [...], "settings": {...}}``, one record per
run: the variant, mode, net, seed, accuracies, drop, the modularity measures and the settings it
ran with, the width rule's effective values included) and ``OUT/NAME/table.md`` (means ± std
over seeds), rewritten atomically after every run, and Figure 1 and 2 of each variant's spatial
net (first seed) per mode under ``OUT/NAME/``. ``OUT/NAME.md`` is left to the write-up.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from .._io import write_json, write_text
from ..analysis.evaluate import RECORD
from ..analysis.stats import fmt_mean_std
from ..config import NETS, PAPER_MEAN_HIDDEN, REGULAR_HPARAMS, TrainConfig
from ..data.tasks import check_tasks, display_name
from ..flags import add_config_args, config_from_args, int_list, given_per_mode, str_list
from .registry import register_study
from .runs import cli_flags, finished_result, machine, run_jobs

RECORD_KEYS = (*RECORD, "train_seconds")


def width_of(hidden) -> float:
    """How many times the paper's mean hidden width ``hidden`` is."""
    return sum(hidden) / len(hidden) / PAPER_MEAN_HIDDEN


def variant_label(cfg: TrainConfig, axis: str) -> str:
    if axis == "hidden":
        return f"{width_of(cfg.hidden):g}x ({','.join(map(str, cfg.hidden))})"
    return f"M={cfg.num_tasks} ({','.join(cfg.tasks)})"


def _slug(cfg: TrainConfig, axis: str) -> str:
    return "-".join(map(str, cfg.hidden)) if axis == "hidden" else "-".join(cfg.tasks)


def grid_markdown(name: str, records: list[dict], settings: dict) -> str:
    axis = settings["axis"]
    lines = [f"# {name}: {'width study' if axis == 'hidden' else 'more than two tasks'}", "",
             f"Data: {settings['data']}, read on the {'test sets' if settings.get('eval_split') == 'test' else 'validation split'}. "
             f"Seeds per row: see n. Mean ± std over seeds. Modularity as in results/table1.md "
             f"(`spatialnet/analysis/modularity.py`): silhouette and ARI with their permutation nulls, the cross-task "
             f"share over its chance value, Newman's Q, the dead fraction of the hidden split layers; crowding "
             f"in the density's length unit (nn: median nearest live neighbour, with its uniform-sheet null; "
             f"stacked: within 0.1 of another live neuron); the territories (`analysis/territory.py`): purity, "
             f"the largest piece of each task, the band between the tasks (1: none), the output sheet's "
             f"silhouette by task.", "",
             "| variant | mode | net | n | full | split | drop | silhouette (null) | ARI (null) | nn (null) | stacked "
             "| share / chance | Newman Q | dead | purity | territory | band | output silhouette |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for r in records:
        groups.setdefault((r["variant"], r["mode"], r["net"]), []).append(r)
    order = {v: i for i, v in enumerate(settings["variants"])}
    keys = sorted(groups, key=lambda k: (order.get(k[0], 99), k[1], k[2]))
    for key in keys:
        rs = groups[key]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {len(rs)} | {fmt_mean_std([r['full'] for r in rs])} | "
                     f"{fmt_mean_std([r['split'] for r in rs])} | {fmt_mean_std([r['drop'] for r in rs])} | "
                     f"{fmt_mean_std([r['silhouette'] for r in rs])} ({fmt_mean_std([r['silhouette_null'] for r in rs])}) | "
                     f"{fmt_mean_std([r['ari'] for r in rs])} ({fmt_mean_std([r['ari_null'] for r in rs])}) | "
                     f"{fmt_mean_std([r.get('nn') for r in rs])} ({fmt_mean_std([r.get('nn_null') for r in rs])}) | "
                     f"{fmt_mean_std([r.get('stacked') for r in rs], '.2f')} | "
                     f"{fmt_mean_std([r['share_norm'] for r in rs])} | {fmt_mean_std([r['newman_q'] for r in rs])} | "
                     f"{fmt_mean_std([r['dead_fraction'] for r in rs], '.2f')} | "
                     f"{fmt_mean_std([r.get('purity') for r in rs], '.2f')} | "
                     f"{fmt_mean_std([r.get('territory') for r in rs], '.2f')} | "
                     f"{fmt_mean_std([r.get('band') for r in rs], '.2f')} | "
                     f"{fmt_mean_std([r.get('out_silhouette') for r in rs], '.2f')} |")
    if axis == "tasks":
        most = max(r["num_tasks"] for r in records)
        lines += ["", "Per task, full → split (mean over seeds):", "",
                  "| variant | mode | net | " + " | ".join(f"task {t}" for t in range(most)) + " |",
                  "|---|---|---|" + "---|" * most]
        for key in keys:
            rs = groups[key]
            cells = [f"{display_name(rs[0]['tasks'][t])} {statistics.fmean(r['full_per_task'][t] for r in rs):.3f} → "
                     f"{statistics.fmean(r['split_per_task'][t] for r in rs):.3f}" for t in range(rs[0]["num_tasks"])]
            cells += ["–"] * (most - len(cells))  # a variant with fewer tasks: every row has all columns
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
    trained = sum(r.get("train_seconds") or 0 for r in records)
    lines += ["", f"Training time summed over the runs: {trained:.0f} s. Wall time of the last invocation (runs "
              f"finished before it are read back): {settings.get('wall_seconds', 0):.0f} s on {settings['machine']}.",
              *([ "", "Planned but not run to the end (not in the table): "
                  + ", ".join(f"`{n}`" for n in settings["not_run"]) + "."] if settings.get("not_run") else []),
              "",
              f"Rerun: `{settings['rerun']}`", ""]
    return "\n".join(lines)


def run_grid(base: TrainConfig, name: str, out_dir, runs_dir, *, hidden_list=None, tasks_list=None,
             modes=("concat", "sequential"), nets=NETS, seeds=(0, 1), plan=None, data_dir=None, workers: int = 2,
             device: str = "auto", figures: bool = True, given=(), rerun: str | None = None,
             finished_only: bool = False, log=print) -> list[dict]:
    """Trains the grid (resumable) and writes its record, table and figures (module docstring).
    ``plan``: ``[(value, nets, seeds), ...]`` instead of every value of the list with every net and
    seed (the width study trains fewer seeds at the widest widths). ``finished_only``: train
    nothing; the record holds the runs that finished and names the others under ``not_run``."""
    if (hidden_list is None) == (tasks_list is None):
        raise ValueError("give exactly one of --hidden-list and --tasks-list")
    axis, values = ("hidden", hidden_list) if hidden_list is not None else ("tasks", tasks_list)
    plan = plan or [(v, nets, seeds) for v in values]
    out_dir, runs_dir = Path(out_dir), Path(runs_dir)
    variants, jobs = [], []
    for v, v_nets, v_seeds in plan:
        vcfg = base.replace(**{axis: list(v)})
        if variant_label(vcfg, axis) not in variants:
            variants.append(variant_label(vcfg, axis))
        for mode in modes:
            for net in v_nets:
                for seed in v_seeds:
                    # the regular net at its own settings (REGULAR_HPARAMS), a fair baseline
                    cfg = vcfg.for_mode(mode, given).replace(net=net, seed=seed,
                                                              **(REGULAR_HPARAMS if net == "regular" else {}))
                    run = runs_dir / f"{_slug(cfg, axis)}-{mode}-{net}-seed{seed}"
                    jobs.append((cfg.to_dict(), str(run), data_dir, device))
    not_run = []
    if finished_only:
        not_run = [Path(j[1]).name for j in jobs if finished_result(Path(j[1]), TrainConfig.from_dict(j[0])) is None]
        jobs = [j for j in jobs if Path(j[1]).name not in not_run]
    # the longest runs first (wide and sequential), so that the pool's tail is short
    jobs.sort(key=lambda j: -sum(j[0]["hidden"]) * len(j[0]["tasks"]) * (2 if j[0]["mode"] == "sequential" else 1))
    flag = "--hidden-list" if axis == "hidden" else "--tasks-list"
    settings = {"axis": axis, "variants": variants, "modes": list(modes), "nets": list(nets), "seeds": list(seeds),
                "plan": [[list(v), list(n), list(sd)] for v, n, sd in plan],
                "data": base.data, "eval_split": base.eval_split, "regular_hparams": REGULAR_HPARAMS,
                "machine": machine(workers, base.threads, device), "not_run": not_run,
                "rerun": rerun or (
                    f"spatialnet study grid --name {name} {flag} '{';'.join(','.join(map(str, v)) for v in values)}' "
                    f"--modes {','.join(modes)} --nets {','.join(nets)} --seeds {','.join(map(str, seeds))} "
                    f"--workers {workers} --eval-split {base.eval_split} "
                    + cli_flags(base, skip=("mode", "net", "seed", "data", axis), given=given))}
    records: list[dict] = []
    t0 = time.time()

    def record(cfg_dict, res):
        cfg = TrainConfig.from_dict(cfg_dict)
        records.append({"variant": variant_label(cfg, axis), "hidden": list(cfg.hidden), "tasks": list(cfg.tasks),
                        "num_tasks": cfg.num_tasks, "mode": cfg.mode, "net": cfg.net, "seed": cfg.seed,
                        **{k: res.get(k) for k in RECORD_KEYS}, "effective": cfg.per_layer_values().to_json(),
                        "settings": cfg.identity()})
        settings["wall_seconds"] = time.time() - t0
        write_json(out_dir / f"{name}.json", {"records": records, "settings": settings})
        write_text(out_dir / name / "table.md", grid_markdown(name, records, settings))
        log(f"[{time.time() - t0:6.0f}s] {records[-1]['variant']} {cfg.mode} {cfg.net} seed {cfg.seed}: "
            f"full {res['full']:.4f} drop {res['drop']:.4f} share/chance {res['share_norm'] or 0:.3f} "
            f"(train {res.get('train_seconds', 0):.0f}s)")

    run_jobs(jobs, workers, record)
    if figures:
        from ..analysis.figures import plot_figures
        from ..training.checkpoint import model_from_checkpoint
        for v, v_nets, v_seeds in plan:
            if "spatial" not in v_nets:
                continue
            for mode in modes:
                vcfg = base.replace(**{axis: list(v)}).for_mode(mode, given).replace(net="spatial", seed=v_seeds[0])
                slug = _slug(vcfg, axis)
                if f"{slug}-{mode}-spatial-seed{v_seeds[0]}" in not_run:
                    continue
                model, cfg, _ = model_from_checkpoint(runs_dir / f"{slug}-{mode}-spatial-seed{v_seeds[0]}" / "checkpoint.pt")
                plot_figures(model, cfg.split_layers, out_dir / name, tasks=cfg.tasks,
                             title=f"{variant_label(cfg, axis)}, {mode}, spatial, seed {v_seeds[0]}",
                             names=(f"figure1-{slug}-{mode}.png", f"figure2-{slug}-{mode}.png"))
    return records


def arguments(p) -> None:
    p.add_argument("--name", default="grid", help="OUT/NAME.json; the table and the figures under OUT/NAME/")
    p.add_argument("--hidden-list", default=None,
                   help="hidden widths per variant, e.g. '128,128,128,256;256,256,256,512'")
    p.add_argument("--tasks-list", default=None,
                   help="task lists per variant, e.g. 'mnist,fashion,pmnist1;mnist,fashion,pmnist1,pmnist2'")
    p.add_argument("--modes", type=str_list, default=["concat", "sequential"])
    p.add_argument("--nets", type=str_list, default=["spatial", "regular"])
    p.add_argument("--seeds", type=int_list("--seeds"), default=[0, 1])
    p.add_argument("--out", default="results")
    p.add_argument("--runs-dir", default=None, help="checkpoints of every run (default runs/NAME; resumable)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--finished-only", action="store_true",
                   help="train nothing: write the record from the runs that finished, naming the others")
    p.add_argument("--device", default="auto")
    add_config_args(p, defaults={"eval_split": "test"})


def parse_lists(args) -> tuple[list | None, list | None]:
    """``(hidden_list, tasks_list)`` from ``--hidden-list`` / ``--tasks-list`` (exactly one given)."""
    if (args.hidden_list is None) == (args.tasks_list is None):
        raise ValueError("grid: give exactly one of --hidden-list and --tasks-list")
    if args.hidden_list is not None:
        return [int_list("--hidden-list")(v) for v in args.hidden_list.split(";") if v.strip()], None
    return None, [list(check_tasks(v)) for v in args.tasks_list.split(";") if v.strip()]


@register_study("grid", question="What does a grid of runs give, over hidden widths or task lists x modes x nets "
                                 "x seeds (the machinery of the width and task studies)?",
                outputs=("NAME.json", "NAME/table.md", "NAME/figure1-*.png"), arguments=arguments)
def run(args) -> None:
    from ..data import SUBSET_BANNER, check_mode
    hidden_list, tasks_list = parse_lists(args)
    for m in args.modes:
        check_mode(m)
    base = config_from_args(args, mode=args.modes[0], net="spatial", seed=0)
    if base.data == "subset":
        print(SUBSET_BANNER)
    run_grid(base, args.name, args.out, args.runs_dir or f"runs/{args.name}", hidden_list=hidden_list,
             tasks_list=tasks_list, modes=args.modes, nets=args.nets, seeds=args.seeds, data_dir=args.data_dir,
             workers=args.workers, device=args.device, given=given_per_mode(args), rerun=args.rerun,
             finished_only=args.finished_only)
    print((Path(args.out) / args.name / "table.md").read_text())
