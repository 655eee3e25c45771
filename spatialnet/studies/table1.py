"""Table 1 of the paper: 3 input modes x variants x seeds, full vs split accuracy, and the controls.

Variants (``VARIANTS``; ``--variants``): the spatial net, the regular net at its own settings
(the paper's lr 0.005 and Glorot gain 1, ``config.REGULAR_HPARAMS``; ``regular-same`` keeps the
spatial net's), and the controls: ``l1-only`` (transport with every distance
replaced by the layer's mean), ``frozen`` (positions never move), ``offset-0`` / ``offset-1.6``
(heads started together or 1.6 apart). The report seeds are 0-4 (``REPORT_SEEDS``), read on the
test sets (``--eval-split test``, the default here); settings are chosen on the validation split
with seeds >= 100 (``sweep.py``), never here.

``spatialnet study table1`` makes results/table1.* (``spatialnet reproduce``, its old name, still
runs it). Runs live under ``runs_dir/<mode>-<variant>-seed<k>/`` (checkpoint, metrics,
result.json); a finished run with the same config is not retrained and a half-finished one
resumes, so the study can be killed and restarted. ``table1.json`` and ``table1.md`` are rewritten atomically after every
finished run. Besides full and split accuracy, every run records the modularity of its split
(``evaluate.READOUT``: ``modularity.py``), as lists over seeds, with 95 % t-intervals in the table.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from .._io import write_json, write_text
from ..analysis.evaluate import READOUT, RECORD, TARGETS, target_gap
from ..analysis.stats import ci95
from ..config import REGULAR_HPARAMS, TrainConfig
from ..data import MODES
from ..flags import add_config_args, config_from_args, int_list, given_per_mode, str_list
from .registry import register_study
from .runs import cli_flags, machine, run_jobs

REPORT_SEEDS = (0, 1, 2, 3, 4)
PAPER = {  # Table 1: (mean, std) of full, split, drop
    "concat": {"regular": ((.92, .04), (.80, .13), (.11, .15)), "spatial": ((.92, .04), (.92, .04), (.00, .00))},
    "mix": {"regular": ((.88, .04), (.70, .17), (.19, .20)), "spatial": ((.89, .04), (.89, .03), (.00, .00))},
    "sequential": {"regular": ((.92, .05), (.33, .20), (.60, .20)), "spatial": ((.92, .05), (.84, .08), (.07, .07))},
}


# the variants of the Table 1 study: the treatment, the paper's baseline and the controls, each as
# overrides of the base config (the regular net at its own, the paper's, lr and init: REGULAR_HPARAMS)
VARIANTS = {
    "spatial": {},
    "regular": {"net": "regular", **REGULAR_HPARAMS},
    "regular-same": {"net": "regular"},              # the regular net at the spatial net's settings
    "l1-only": {"transport": "constant"},             # every distance -> the layer's mean
    "frozen": {"freeze_positions": True},             # positions keep their initial values
    "offset-0": {"head_offset": 0.0},
    "offset-1.6": {"head_offset": 1.6},
}
MEASURES = tuple(k for k in READOUT if k not in ("full", "split", "drop"))


def variant_config(base: TrainConfig, mode: str, variant: str, seed: int, given=()) -> TrainConfig:
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} is not one of {sorted(VARIANTS)}")
    return base.for_mode(mode, given).replace(**{"net": "spatial", "seed": seed, **VARIANTS[variant]})


def summarise(results: dict) -> dict:
    """Per mode and variant: ``(mean, 95 % half-width)`` of every read-out, the seeds, and the
    mean neurons per task in each split layer."""
    out = {}
    for mode, variants in results.items():
        for v, r in variants.items():
            drops = [f - s for f, s in zip(r["full"], r["split"])]
            row = {"full": ci95(r["full"]), "split": ci95(r["split"]), "drop": ci95(drops),
                   "n": len(r["full"]), "seeds": list(r["seeds"])}
            for k in MEASURES:
                row[k] = ci95(r.get(k, []))  # a record from before a measure existed: None
            sizes = {}
            for run in r["split_sizes"]:
                for l, n in run.items():
                    sizes.setdefault(l, []).append(n)
            row["sizes"] = {l: [round(statistics.fmean(c), 1) for c in zip(*ns)] for l, ns in sizes.items()}
            out.setdefault(mode, {})[v] = row
    return out


def _cell(ms, spec=".3f"):
    return "–" if ms is None else f"{ms[0]:{spec}} ± {ms[1]:{spec}}"


def table_markdown(summary: dict, settings: dict) -> str:
    split_name = "test sets" if settings.get("eval_split") == "test" else "validation split"
    lines = ["# Table 1: accuracy before and after splitting the network, with the controls", "",
             f"Data: {settings['data']}, read on the **{split_name}** (validation: {settings.get('val_size')} "
             f"training images per dataset held out, `spatialnet/data/read.py`). Seeds: {settings['seeds']}. Epochs: "
             f"{settings['config']['epochs']}. Each number is the mean ± the half-width of the 95 % "
             f"t-interval over seeds of the mean over the tasks (MNIST, Fashion-MNIST); 'paper' is "
             f"Wołczyk et al. 2019, Table 1 (mean ± std). Variants: {settings.get('variant_doc', '')}", "",
             "| mode | net | n | full (ours) | full (paper) | split (ours) | split (paper) | drop (ours) | drop (paper) |",
             "|---|---|---|---|---|---|---|---|---|"]
    variants = settings.get("variants", ["regular", "spatial"])
    for mode in MODES:
        for v in variants:
            s = summary.get(mode, {}).get(v)
            p = PAPER[mode].get(v)
            pc = (lambda i: f"{p[i][0]:.2f} ± {p[i][1]:.2f}") if p else (lambda i: "")
            if s is None:
                if mode in settings.get("modes", MODES):
                    lines.append(f"| {mode} | {v} | 0 | (not run) | {pc(0)} | | {pc(1)} | | {pc(2)} |")
                continue
            lines.append(f"| {mode} | {v} | {s['n']} | {_cell(s['full'])} | {pc(0)} | {_cell(s['split'])} | "
                         f"{pc(1)} | {_cell(s['drop'])} | {pc(2)} |")
    lines += ["", "Modularity of the split (`spatialnet/analysis/modularity.py`): silhouette of the live neurons' "
              "positions by task and ARI of k-means (k = M) against the tasks, means over the hidden split "
              "layers, each beside its label-permutation null; the cross-task share of Σ|w| over its "
              "expectation under random relabelling with the same group sizes (1 = chance, 0 = disjoint); "
              "Newman's Q of the |W| graph under the split; dead neurons as a fraction of the hidden split "
              "layers, and the change of full accuracy when only they are silenced (Δ; above 0.002 they are "
              "not dead); crowding, in the density's length unit: nn, the median distance from a live neuron "
              "to the nearest live one of its layer (null: as many points uniform over the layer's hull), "
              "stacked, the fraction within 0.1 of another, on next, the fraction within 0.1 of a live "
              "neuron of the next layer; the territories (docs/measures.md): purity, the largest piece of each "
              "task, the band between the tasks (1: none), the output sheet's silhouette by task; neurons per task "
              "in each split layer (mean over seeds).", "",
              "| mode | net | silhouette | (null) | ARI | (null) | nn | (null) | stacked | on next | share / chance "
              "| share | Newman Q | dead | dead Δ | purity | territory | band | output silhouette | neurons per task |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for mode in MODES:
        for v in variants:
            s = summary.get(mode, {}).get(v)
            if s is None:
                continue
            sizes = "; ".join(f"{l}: {'/'.join(f'{x:g}' for x in n)}" for l, n in s["sizes"].items())
            lines.append(f"| {mode} | {v} | {_cell(s['silhouette'])} | {_cell(s['silhouette_null'])} | "
                         f"{_cell(s['ari'])} | {_cell(s['ari_null'])} | {_cell(s.get('nn'))} | "
                         f"{_cell(s.get('nn_null'))} | {_cell(s.get('stacked'), '.2f')} | {_cell(s.get('on_next'), '.2f')} | "
                         f"{_cell(s['share_norm'])} | "
                         f"{_cell(s['cross_task_share'])} | {_cell(s['newman_q'])} | {_cell(s['dead_fraction'], '.2f')} | "
                         f"{_cell(s['dead_delta'], '.4f')} | {_cell(s.get('purity'), '.2f')} | "
                         f"{_cell(s.get('territory'), '.2f')} | {_cell(s.get('band'), '.2f')} | "
                         f"{_cell(s.get('out_silhouette'), '.2f')} | {sizes} |")
    lines += targets_markdown(summary, settings.get("results"))
    lines += ["", f"Total wall time: {settings.get('wall_seconds', 0):.0f} s on {settings['machine']}.", "",
              f"Rerun: `{settings['rerun']}`", ""]
    return "\n".join(lines)


def targets(mode: str, s: dict, runs: dict | None) -> list[tuple[str, bool]]:
    """The spatial net's targets in ``mode`` (``evaluate.TARGETS``) as ``(what, met)``: met when
    every seed meets it (``runs``: the per-seed lists), else by the mean (``s``: the summary)."""
    out = []
    for key, op, limit in TARGETS.get(mode, ()):
        if runs is None:
            seeds = []
        elif key == "drop":
            seeds = [f - sp for f, sp in zip(runs["full"], runs["split"])]
        else:
            seeds = list(runs.get(key, []))
        mean = None if s.get(key) is None else s[key][0]
        values = seeds or [mean]
        met = all(target_gap(v, op, limit) <= 0 for v in values)
        shown = ", ".join("–" if v is None else f"{v:.3f}" for v in values)
        out.append((f"{key} {'≤' if op == '<=' else '≥'} {limit:g} ({'every seed: ' if seeds else 'mean '}{shown})", met))
    return out


def targets_markdown(summary: dict, results: dict | None) -> list[str]:
    lines = []
    for mode in MODES:
        s = summary.get(mode, {}).get("spatial")
        if s is None:
            continue
        if not lines:
            lines = ["", "The spatial net's targets (`evaluate.TARGETS`; met only where every seed meets them):", ""]
        runs = (results or {}).get(mode, {}).get("spatial")
        lines.append(f"- {mode}: " + "; ".join(f"{w}: {'met' if m else '**NOT met**'}" for w, m in targets(mode, s, runs)))
    return lines


def reproduce(base: TrainConfig, out_dir, runs_dir, *, seeds=REPORT_SEEDS, modes=MODES, data_dir=None,
              workers: int = 2, figures: bool = True, device: str = "auto", variants=("regular", "spatial"),
              given=(), rerun: str | None = None, log=print) -> dict:
    """Trains every mode x variant x seed (resumable) and writes ``table1.md``, ``table1.json``
    and each mode's figures to ``out_dir``; ``rerun`` is the command the table says remakes it."""
    out_dir, runs_dir = Path(out_dir), Path(runs_dir)
    jobs, seen = [], {}
    for mode in modes:
        for v in variants:
            for seed in seeds:
                cfg = variant_config(base, mode, v, seed, given)
                key = json.dumps(cfg.identity(), sort_keys=True)
                if key in seen:  # e.g. offset-1.6 when the base already starts the heads 1.6 apart
                    raise ValueError(f"variants {seen[key]!r} and {v!r} are the same config; drop one")
                seen[key] = v
                jobs.append((cfg.to_dict(), str(runs_dir / f"{mode}-{v}-seed{seed}"), data_dir, device, v))
    # sequential epochs see both training sets: twice the steps, so start them first; then mode by
    # mode, seed by seed, so that a stopped study has every variant at its first seeds
    seed_rank = {s: i for i, s in enumerate(seeds)}
    jobs.sort(key=lambda j: (j[0]["mode"] != "sequential", list(modes).index(j[0]["mode"]), seed_rank[j[0]["seed"]]))
    doc = {"spatial": "the spatial net with the base settings", "regular": (
        f"the regular net at its own settings {REGULAR_HPARAMS} (the paper's lr)"),
        "regular-same": "the regular net at the spatial net's lr and init",
        "l1-only": "transport with every distance replaced by the layer's mean distance",
        "frozen": "positions frozen at their initial values", "offset-0": "heads not offset",
        "offset-1.6": "heads started 1.6 apart"}
    settings = {"config": {k: v for k, v in base.to_dict().items() if k not in ("mode", "net", "seed")},
                "seeds": list(seeds), "modes": list(modes), "variants": list(variants), "data": base.data,
                "eval_split": base.eval_split, "val_size": base.val_size if base.val_size >= 0 else "auto (5000 full, 400 subset)",
                "variant_doc": "; ".join(f"{v}: {doc[v]}" for v in variants),
                "overrides": {v: VARIANTS[v] for v in variants}, "workers": workers,
                "machine": machine(workers, base.threads, device), "torch": torch.__version__,
                "rerun": rerun or (f"spatialnet study table1 --seeds {','.join(map(str, seeds))} --modes "
                                   f"{','.join(modes)} --variants {','.join(variants)} --workers {workers} "
                                   f"--eval-split {base.eval_split} " + cli_flags(base, given=given))}
    results: dict = {}
    t0 = time.time()

    def record(cfg_dict, res, v):
        r = results.setdefault(cfg_dict["mode"], {}).setdefault(v, {"seeds": [], **{k: [] for k in RECORD}})
        r["seeds"].append(cfg_dict["seed"])
        for k in RECORD:
            r[k].append(res.get(k))
        settings["wall_seconds"] = time.time() - t0
        summary = summarise(results)
        write_json(out_dir / "table1.json", {"results": results, "summary": summary, "paper": PAPER,
                                             "settings": settings})
        write_text(out_dir / "table1.md", table_markdown(summary, {**settings, "results": results}))
        log(f"[{time.time() - t0:6.0f}s] {cfg_dict['mode']:10s} {v:10s} seed {cfg_dict['seed']}: "
            f"full {res['full']:.4f} split {res['split']:.4f} sil {res['silhouette'] if res['silhouette'] is not None else float('nan'):.3f} "
            f"share/chance {res['share_norm'] if res['share_norm'] is not None else float('nan'):.3f} "
            f"(train {res.get('train_seconds', 0):.0f}s)")

    run_jobs(jobs, workers, record)
    if figures and "spatial" in variants:  # Figures 1 and 2 of each mode's spatial net, first seed
        try:
            from ..analysis.figures import animate_positions, plot_figures
        except ImportError as exc:  # a bare GPU image may lack matplotlib: the table is written
            log(f"figures not drawn: {exc}")
            return results
        from ..training.checkpoint import load_run, model_from_checkpoint
        for mode in modes:
            run = runs_dir / f"{mode}-spatial-seed{seeds[0]}"
            model, cfg, _ = model_from_checkpoint(run / "checkpoint.pt")
            plot_figures(model, cfg.split_layers, out_dir, tasks=cfg.tasks, title=f"spatial net, {mode}, seed {seeds[0]}",
                         names=(f"figure1-{mode}.png", f"figure2-{mode}.png"))
            if (run / "positions.pt").is_file():
                animate_positions(*load_run(run), out_dir / f"positions-{mode}.gif")
    return results


def arguments(p, *, out="results", runs_dir="runs/table1", variants="spatial,regular,l1-only,frozen") -> None:
    """Table 1's flags (the defaults make results/table1.*), with every config flag."""
    p.add_argument("--out", default=out)
    p.add_argument("--runs-dir", default=runs_dir, help="checkpoints of every run (resumable)")
    p.add_argument("--seeds", type=int_list("--seeds"), default=list(REPORT_SEEDS),
                   help="report seeds (default 0-4; selection uses seeds >= 100, in sweeps)")
    p.add_argument("--modes", type=str_list, default=list(MODES))
    p.add_argument("--variants", type=str_list, default=str_list(variants),
                   help="rows per mode: " + ", ".join(VARIANTS) + f" (default {variants})")
    p.add_argument("--workers", type=int, default=2,
                   help="runs trained in parallel (one thread each; on a GPU they share it)")
    p.add_argument("--device", default="auto", help="auto (cuda when CUDA is there, else cpu), cpu, cuda, ...")
    add_config_args(p, defaults={"eval_split": "test"})


@register_study("table1", question="Table 1 at the defaults: every mode, the spatial net beside the regular net, "
                                   "L1 only and frozen positions, on the report seeds and the test sets.",
                outputs=("table1.md", "table1.json", "figure1-<mode>.png", "figure2-<mode>.png",
                         "positions-<mode>.gif"), arguments=arguments)
def run(args) -> None:
    base = config_from_args(args, mode="concat", net="spatial", seed=0)
    if base.data == "subset":
        from ..data import SUBSET_BANNER
        print(SUBSET_BANNER)
    for m in args.modes:
        from ..data import check_mode
        check_mode(m)
    t0 = time.time()
    reproduce(base, args.out, args.runs_dir, seeds=args.seeds, modes=args.modes, data_dir=args.data_dir,
              workers=args.workers, device=args.device, variants=args.variants, given=given_per_mode(args),
              rerun=args.rerun)
    print(f"wrote {args.out}/table1.md, table1.json and figure1-/figure2-<mode>.png in {time.time() - t0:.0f} s")
    print((Path(args.out) / "table1.md").read_text())
