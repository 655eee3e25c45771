"""Table 1 of the paper: 3 input modes x variants x seeds, full vs split accuracy, and the controls,
at the paper's width or ``--width`` times it.

Variants (``VARIANTS``; ``--variants``): the spatial net, the regular net at its own settings
(the paper's lr 0.005 and Glorot gain 1, ``config.REGULAR_HPARAMS``; ``regular-same`` keeps the
spatial net's), and the controls: ``l1-matched`` (transport with every distance replaced by the
layer's mean, at the strength that gives the spatial net's dead fraction: ``L1_MATCHED``),
``l1-only`` (the same at the spatial net's strength), ``frozen`` (positions never move),
``offset-0`` / ``offset-1.6`` (heads started together or 1.6 apart). Every variant goes through
the width rule (``width.py``). The report seeds are 0-4 at 1x and 0-2 wider
(``REPORT_SEEDS``), read on the test sets (``--eval-split test``, the default here); settings are
chosen on the validation split with seeds >= 100 (``sweep.py``, ``l1_match.py``), never here.

``spatialnet study table1 [--width W]`` makes results/table1.* at 1x and results/table1-<W>x.*
wider. Runs live under ``runs_dir/<mode>-<variant>-seed<k>/`` (checkpoint, metrics,
result.json); a finished run with the same config is not retrained (a run read before a read-out
existed is re-read from its checkpoint) and a half-finished one resumes, so the study can be
killed and restarted. The record is rewritten atomically after every finished run. Every run
records the accuracy after every split and way of disabling (``evaluate.SPLIT_READOUTS``) and the
modularity of its greedy split, as lists over seeds; the tables are ``table1_tables.py``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .._io import write_json, write_text
from ..analysis.evaluate import RECORD
from ..config import REGULAR_HPARAMS, TrainConfig
from ..data import MODES
from ..flags import add_config_args, config_from_args, int_list, given_per_mode, str_list
from .registry import register_study
from .runs import cli_flags, machine, run_jobs, trained
from .table1_tables import PAPER, summarise, table_markdown, targets, targets_markdown  # noqa: F401

PAPER_HIDDEN = (128, 128, 128, 256)
REPORT_SEEDS = (0, 1, 2, 3, 4)
WIDE_REPORT_SEEDS = (0, 1, 2)
# The l1-matched control's transport weight over the spatial net's, per mode: the strength at
# which its dead fraction is the spatial net's, chosen on the validation split with selection
# seeds 100 and 101 at 1x (``spatialnet study l1-match``, results/l1-match.md) and carried to
# other widths by the width rule like every other strength.
L1_MATCHED = {"concat": 0.06, "mix": 0.075, "sequential": 2.0}

# the variants of the Table 1 study: the treatment, the paper's baseline and the controls, each as
# overrides of the base config (the regular net at its own, the paper's, lr and init: REGULAR_HPARAMS)
VARIANTS = {
    "spatial": {},
    "regular": {"net": "regular", **REGULAR_HPARAMS},
    "regular-same": {"net": "regular"},              # the regular net at the spatial net's settings
    "l1-matched": {"transport": "constant"},          # and alpha times L1_MATCHED[mode]
    "l1-only": {"transport": "constant"},             # every distance -> the layer's mean
    "frozen": {"freeze_positions": True},             # positions keep their initial values
    "offset-0": {"head_offset": 0.0},
    "offset-1.6": {"head_offset": 1.6},
}
VARIANT_DOC = {
    "spatial": "the spatial net with the base settings",
    "regular": f"the regular net at its own settings {REGULAR_HPARAMS} (the paper's lr)",
    "regular-same": "the regular net at the spatial net's lr and init",
    "l1-matched": "transport with every distance replaced by the layer's mean distance, at the strength that gives "
                  f"the spatial net's dead fraction (alpha times {L1_MATCHED}, chosen on validation seeds 100-101: "
                  "results/l1-match.md)",
    "l1-only": "transport with every distance replaced by the layer's mean distance, at the spatial net's alpha",
    "frozen": "positions frozen at their initial values", "offset-0": "heads not offset",
    "offset-1.6": "heads started 1.6 apart"}


def width_hidden(width: int) -> list[int]:
    """The paper's hidden widths times ``width``."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive int (times the paper's {list(PAPER_HIDDEN)}), got {width!r}")
    return [h * width for h in PAPER_HIDDEN]


def variant_config(base: TrainConfig, mode: str, variant: str, seed: int, given=()) -> TrainConfig:
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} is not one of {sorted(VARIANTS)}")
    cfg = base.for_mode(mode, given).replace(**{"net": "spatial", "seed": seed, **VARIANTS[variant]})
    if variant == "l1-matched":
        cfg = cfg.replace(alpha=cfg.alpha * L1_MATCHED[mode])
    return cfg


def record_name(width: int) -> str:
    """``table1`` at the paper's width, ``table1-<w>x`` wider."""
    return "table1" if width == 1 else f"table1-{width}x"


def reproduce(base: TrainConfig, out_dir, runs_dir, *, seeds=REPORT_SEEDS, modes=MODES, data_dir=None,
              workers: int = 2, figures: bool = True, device: str = "auto", variants=("regular", "spatial"),
              given=(), rerun: str | None = None, width: int = 1, finished_only: bool = False, log=print) -> dict:
    """Trains every mode x variant x seed (resumable) and writes ``<name>.md``, ``<name>.json``
    (``record_name(width)``) and each mode's figures to ``out_dir``; ``rerun`` is the command the
    table says remakes it. ``finished_only``: train nothing, read the runs that trained to the end
    and name the others."""
    out_dir, runs_dir = Path(out_dir), Path(runs_dir)
    name = record_name(width)
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
    planned = []
    if finished_only:
        planned = [Path(j[1]).name for j in jobs if not trained(Path(j[1]), TrainConfig.from_dict(j[0]))]
        jobs = [j for j in jobs if Path(j[1]).name not in planned]
    settings = {"config": {k: v for k, v in base.to_dict().items() if k not in ("mode", "net", "seed")},
                "width": width, "seeds": list(seeds), "modes": list(modes), "variants": list(variants),
                "data": base.data, "eval_split": base.eval_split,
                "val_size": base.val_size if base.val_size >= 0 else "auto (5000 full, 400 subset)",
                "variant_doc": "; ".join(f"{v}: {VARIANT_DOC[v]}" for v in variants),
                "overrides": {v: VARIANTS[v] for v in variants}, "l1_matched": L1_MATCHED, "workers": workers,
                "machine": machine(workers, base.threads, device), "torch": torch.__version__, "planned": planned,
                "rerun": rerun or (f"spatialnet study table1 --width {width} --seeds {','.join(map(str, seeds))} "
                                   f"--modes {','.join(modes)} --variants {','.join(variants)} --workers {workers} "
                                   f"--eval-split {base.eval_split} " + cli_flags(base, given=given))}
    results: dict = {}
    t0 = time.time()

    def write():
        settings["wall_seconds"] = time.time() - t0
        summary = summarise(results)
        write_json(out_dir / f"{name}.json", {"results": results, "summary": summary, "paper": PAPER,
                                               "settings": settings})
        write_text(out_dir / f"{name}.md", table_markdown(summary, {**settings, "results": results}))

    def record(cfg_dict, res, v):
        r = results.setdefault(cfg_dict["mode"], {}).setdefault(v, {"seeds": [], **{k: [] for k in RECORD}})
        r["seeds"].append(cfg_dict["seed"])
        for k in RECORD:
            r[k].append(res.get(k))
        write()
        nan = float("nan")
        log(f"[{time.time() - t0:6.0f}s] {cfg_dict['mode']:10s} {v:10s} seed {cfg_dict['seed']}: "
            f"full {res['full']:.4f} drop {res['drop']:.4f} balanced {res['drop_balanced']:.4f} "
            f"dead {res['dead_fraction'] if res['dead_fraction'] is not None else nan:.2f} "
            f"share/chance {res['share_norm'] if res['share_norm'] is not None else nan:.3f} "
            f"(train {res.get('train_seconds', 0):.0f}s)")

    if not jobs:
        write()
    run_jobs(jobs, workers, record)
    if figures and "spatial" in variants:  # Figures 1 and 2 of each mode's spatial net, first seed
        try:
            from ..analysis.figures import animate_positions, plot_figures
        except ImportError as exc:  # a bare GPU image may lack matplotlib: the table is written
            log(f"figures not drawn: {exc}")
            return results
        from ..training.checkpoint import load_run, model_from_checkpoint
        tag = "" if width == 1 else f"-{width}x"
        for mode in modes:
            for v in ("spatial", "l1-matched", "frozen"):
                run = runs_dir / f"{mode}-{v}-seed{seeds[0]}"
                if v not in variants or run.name in planned:
                    continue
                model, cfg, _ = model_from_checkpoint(run / "checkpoint.pt")
                vt = "" if v == "spatial" else f"-{v}"
                plot_figures(model, cfg.split_layers, out_dir, tasks=cfg.tasks,
                             title=f"{v} net, {width}x, {mode}, seed {seeds[0]}",
                             names=(f"figure1{tag}{vt}-{mode}.png", f"figure2{tag}{vt}-{mode}.png"))
                if v == "spatial" and (run / "positions.pt").is_file():
                    animate_positions(*load_run(run), out_dir / f"positions{tag}-{mode}.gif")
    return results


def arguments(p, *, out="results", runs_dir=None, variants="spatial,regular,l1-matched,frozen") -> None:
    """Table 1's flags (the defaults make results/table1.*), with every config flag."""
    p.add_argument("--out", default=out)
    p.add_argument("--width", type=int, default=None,
                   help=f"hidden widths this many times the paper's {','.join(map(str, PAPER_HIDDEN))} (each variant "
                        "through the width rule); the record is table1.* at 1, table1-<width>x.* wider (default: "
                        "--hidden's widths, the paper's unless given, in table1.*)")
    p.add_argument("--runs-dir", default=runs_dir,
                   help="checkpoints of every run (resumable; default runs/table1, or runs/table1-<width>x)")
    p.add_argument("--seeds", type=int_list("--seeds"), default=None,
                   help="report seeds (default 0-4 at width 1, 0-2 wider; selection uses seeds >= 100)")
    p.add_argument("--finished-only", action="store_true",
                   help="train nothing: write the record from the runs that trained to the end, naming the others")
    p.add_argument("--modes", type=str_list, default=list(MODES))
    p.add_argument("--variants", type=str_list, default=str_list(variants),
                   help="rows per mode: " + ", ".join(VARIANTS) + f" (default {variants})")
    p.add_argument("--workers", type=int, default=2,
                   help="runs trained in parallel (one thread each; on a GPU they share it)")
    p.add_argument("--device", default="auto", help="auto (cuda when CUDA is there, else cpu), cpu, cuda, ...")
    add_config_args(p, defaults={"eval_split": "test"})


@register_study("table1", question="Table 1 at the defaults, at the paper's width or --width times it: every mode, "
                                   "the spatial net beside the regular net, the sparsity-matched L1 control and frozen "
                                   "positions, on the greedy, balanced and mean splits, on the report seeds and the "
                                   "test sets.",
                outputs=("table1[-<w>x].md", "table1[-<w>x].json", "figure1[-<w>x]-<mode>.png", "figure2-<mode>.png",
                         "positions-<mode>.gif"), arguments=arguments)
def run(args) -> None:
    width = 1 if args.width is None else args.width
    if args.width is not None:
        hidden = width_hidden(args.width)
        if getattr(args, "hidden", None) is not None and list(args.hidden) != hidden:
            raise ValueError(f"--hidden {args.hidden} and --width {args.width} disagree; give one of them")
        args.hidden = hidden
    base = config_from_args(args, mode="concat", net="spatial", seed=0)
    seeds = args.seeds or list(REPORT_SEEDS if width == 1 else WIDE_REPORT_SEEDS)
    name = record_name(width)
    runs_dir = args.runs_dir or f"runs/{name}"
    if base.data == "subset":
        from ..data import SUBSET_BANNER
        print(SUBSET_BANNER)
    for m in args.modes:
        from ..data import check_mode
        check_mode(m)
    t0 = time.time()
    reproduce(base, args.out, runs_dir, seeds=seeds, modes=args.modes, data_dir=args.data_dir,
              workers=args.workers, device=args.device, variants=args.variants, given=given_per_mode(args),
              rerun=args.rerun, width=width, finished_only=args.finished_only)
    print(f"wrote {args.out}/{name}.md, {name}.json and the figures in {time.time() - t0:.0f} s")
    print((Path(args.out) / f"{name}.md").read_text())
