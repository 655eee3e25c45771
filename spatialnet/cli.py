"""``spatialnet`` command line: train, split, plot, reproduce, grid, sweep, dead-tol, demo, study.

Layer indices (``--spatial-layers``) count the Linear layers from 1 at the input; layer l is also
the layer of neurons it produces. ``--hidden 128,128,128,256 --spatial-layers 3,4,5`` is the
paper's net: costs on the third hidden layer, the fourth and the output (layer 5).

The defaults (``config.TrainConfig``, ``config.CHOSEN`` per mode; README.md): transport as the
mean over connections (``--transport-norm per_connection``; the paper prints 1/N_l, ``per_out``),
V over pairs, lr 0.005, Glorot gain 1, no head offset, a constant lr, 30 epochs, and the mode's
chosen alpha, beta, positions' lr multiple and cost warm-up, carried to other widths by the
width rule. ``--preset paper|recipe-2025`` runs an earlier setting.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from . import data as data_mod
from .config import CHOSEN, PER_MODE, PRESETS, TrainConfig
from .analysis.printout import print_eval as _print_eval
from .studies.sweep import DEFAULT_SPACE


def _int_list(name):
    def parse(s: str) -> list[int]:
        try:
            return [int(v) for v in s.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be comma-separated ints, got {s!r}") from None
    return parse


def _str_list(s: str) -> list[str]:
    return [v.strip() for v in s.split(",") if v.strip()]


def _flag_type(f: dataclasses.Field):
    """The argparse type of a config field, from its default (or its metadata's type)."""
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    if default is None:
        return f.metadata["type"]
    if isinstance(default, list):
        return _int_list(f"--{f.name.replace('_', '-')}") if all(isinstance(v, int) for v in default) else _str_list
    return type(default)


# flags a command sets itself, or leaves out: per command, the config fields it does not expose
PER_RUN_FIELDS = ("mode", "net", "seed")


def _add_config_args(p: argparse.ArgumentParser, *, skip=PER_RUN_FIELDS, defaults: dict | None = None,
                     helps: dict | None = None) -> None:
    """One flag per ``TrainConfig`` field (its metadata's help and choices), except ``skip``.

    The flags' argparse defaults are suppressed, so that ``_config`` can tell a flag given from
    one left out: a left-out field takes ``defaults`` (the command's own), else ``--preset``'s
    value, else the config's default."""
    d = TrainConfig()
    defaults = defaults or {}
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        name = f"--{f.name.replace('_', '-')}"
        shown = defaults.get(f.name, getattr(d, f.name))
        shown = ",".join(map(str, shown)) if isinstance(shown, list) else shown
        if f.name in PER_MODE and f.name not in defaults:
            shown = "the mode's chosen setting: " + ", ".join(f"{m} {v[f.name]:g}" for m, v in CHOSEN.items())
        help_ = (helps or {}).get(f.name) or f.metadata["help"] + f" (default {shown})"
        if isinstance(getattr(d, f.name), bool):
            p.add_argument(name, action="store_true", default=argparse.SUPPRESS, help=help_)
            continue
        # choices are checked by TrainConfig.validate (a one-line error naming them), shown here
        choices = f.metadata["choices"]
        p.add_argument(name, type=_flag_type(f), default=argparse.SUPPRESS, metavar="|".join(choices) if choices else None,
                       help=help_)
    p.add_argument("--preset", choices=sorted(PRESETS), default=argparse.SUPPRESS,
                   help="start from an earlier setting instead of the defaults (flags given still win): "
                        + "; ".join(f"{k}: {' '.join(f'{n}={v}' for n, v in sorted(vals.items()))}"
                                    for k, vals in sorted(PRESETS.items())))
    p.add_argument("--data-dir", default=None, help="data folder (else $SPATIALNET_DATA, else ~/.cache/spatialnet)")
    p.set_defaults(_config_defaults=defaults)


def _pinned(args) -> frozenset:
    """The per-mode fields a flag or the preset gives (the rest take each mode's chosen setting)."""
    preset = PRESETS.get(getattr(args, "preset", None), {})
    return frozenset(k for k in PER_MODE if hasattr(args, k) or k in preset)


def _config(args, **over) -> TrainConfig:
    """The run's config: the field's default, then ``--preset``, then the command's defaults, then
    the flags given, then ``over`` (what the command fixes)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    kw = {**PRESETS.get(getattr(args, "preset", None), {}), **getattr(args, "_config_defaults", {}), **given,
          **over}
    return TrainConfig(**kw).validate()


def cmd_train(args) -> int:
    from .training import init_distributed_from_env, train
    cfg = _config(args)
    own = {k: CHOSEN[cfg.mode][k] for k in PER_MODE if k not in _pinned(args)}
    if own and any(CHOSEN[cfg.mode][k] != CHOSEN["concat"][k] for k in own):
        print(f"{cfg.mode} mode runs its own default setting ({', '.join(f'{k} {v:g}' for k, v in own.items())}): "
              f"no single setting met every mode's targets (README.md)")
    started = init_distributed_from_env(args.device)
    try:
        res = train(cfg, args.out, resume=args.resume, data_dir=args.data_dir, progress=not args.no_progress,
                    device=args.device)
    finally:
        if started:
            import torch.distributed as dist
            dist.destroy_process_group()
    if res.get("full") is not None:
        _print_eval(res, f"{cfg.mode}/{cfg.net} seed {cfg.seed} ({res['data']} data), {args.out}/checkpoint.pt")
    return 0


def cmd_split(args) -> int:
    from .training.checkpoint import model_from_checkpoint
    from .analysis.evaluate import evaluate
    from .data import load_data
    model, cfg, _ = model_from_checkpoint(args.checkpoint)
    data = args.data or cfg.data
    if data == "subset":
        print(data_mod.SUBSET_BANNER)
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "data": data, "eval_split": args.eval_split or cfg.eval_split})
    td = load_data(cfg, args.data_dir)
    ev = evaluate(model, cfg, td, dead_tol=args.dead_tol)
    _print_eval(ev, f"{args.checkpoint}: {cfg.mode}/{cfg.net}, split layers {cfg.split_layers} ({td.source} data)")
    if args.json:
        from ._io import write_json
        write_json(args.json, ev)
    return 0


def cmd_plot(args) -> int:
    from .studies.plots import animate_positions, plot_figures
    from .training.checkpoint import model_from_checkpoint
    if args.animate:
        gif = animate_positions(args.checkpoint, Path(args.out) / "positions.gif" if args.out else None)
        print(f"wrote {gif}")
        return 0
    model, cfg, _ = model_from_checkpoint(args.checkpoint)
    out = args.out or str(Path(args.checkpoint).parent)
    for p in plot_figures(model, cfg.split_layers, out, tasks=cfg.tasks, title=f"{cfg.mode}/{cfg.net} seed {cfg.seed}"):
        print(f"wrote {p}")
    return 0


def cmd_reproduce(args) -> int:
    from .studies.table1 import reproduce
    base = _config(args, mode="concat", net="spatial", seed=0)
    if base.data == "subset":
        print(data_mod.SUBSET_BANNER)
    for m in args.modes:
        data_mod.check_mode(m)
    t0 = time.time()
    reproduce(base, args.out, args.runs_dir, seeds=args.seeds, modes=args.modes, data_dir=args.data_dir,
              workers=args.workers, device=args.device, variants=args.variants, pinned=_pinned(args))
    print(f"wrote {args.out}/table1.md, table1.json and figure1-/figure2-<mode>.png in {time.time() - t0:.0f} s")
    print((Path(args.out) / "table1.md").read_text())
    return 0


def cmd_dead_tol(args) -> int:
    from .studies.dead_tol import run_sensitivity
    tols = [float(t) for t in args.tols.split(",") if t.strip()]
    run_sensitivity(args.runs, args.out, tols, args.eval_split, args.data_dir)
    print(Path(args.out).with_suffix(".md").read_text())
    return 0


def cmd_demo(args) -> int:
    from .studies.demo import run_demo
    data = getattr(args, "data", "auto")
    if data == "auto" and not data_mod.full_data_present(args.data_dir):
        print(f"full data not found under {data_mod.default_data_dir(args.data_dir)}; using the embedded subset")
    ds = data_mod.load(data, args.data_dir)
    # the subset has 8 steps per epoch: 200 of them are 1 600 steps
    epochs = getattr(args, "epochs", 30 if ds.source == "full" else 200)
    base = _config(args, mode="concat", net="spatial", seed=args.seed, data=ds.source, epochs=epochs)
    run_demo(base, args.out, ds, data_dir=args.data_dir, progress=not args.no_progress)
    return 0


def cmd_grid(args) -> int:
    from .studies.grid import run_grid
    from .data.tasks import check_tasks
    if (args.hidden_list is None) == (args.tasks_list is None):
        raise ValueError("grid: give exactly one of --hidden-list and --tasks-list")
    hidden_list = tasks_list = None
    if args.hidden_list is not None:
        hidden_list = [_int_list("--hidden-list")(v) for v in args.hidden_list.split(";") if v.strip()]
    else:
        tasks_list = [list(check_tasks(v)) for v in args.tasks_list.split(";") if v.strip()]
    for m in args.modes:
        data_mod.check_mode(m)
    base = _config(args, mode=args.modes[0], net="spatial", seed=0)
    if base.data == "subset":
        print(data_mod.SUBSET_BANNER)
    run_grid(base, args.name, args.out, args.runs_dir or f"runs/{args.name}", hidden_list=hidden_list,
             tasks_list=tasks_list, modes=args.modes, nets=args.nets, seeds=args.seeds, data_dir=args.data_dir,
             workers=args.workers, device=args.device, pinned=_pinned(args))
    print((Path(args.out) / args.name / "table.md").read_text())
    return 0


def cmd_sweep(args) -> int:
    from .studies.sweep import parse_constraints, parse_space, run_sweep, write_report
    params = parse_space(args.param or DEFAULT_SPACE)
    first = _config(args, seed=0)
    modes = args.modes or [first.mode]
    for m in modes:
        data_mod.check_mode(m)
    constraints = parse_constraints(args.constraint, modes)
    base = _config(args, mode=modes[0], seed=0)
    if base.data == "subset":
        print(data_mod.SUBSET_BANNER)
    study = run_sweep(base, args.study, args.storage, params, trials=args.trials, seeds=args.seeds,
                      runs_dir=args.runs_dir, data_dir=args.data_dir, resume=args.resume,
                      heartbeat=args.heartbeat, sampler_seed=args.sampler_seed, objectives=args.objectives,
                      modes=modes, constraints=constraints, pinned=_pinned(args))
    report = Path(args.report.format(study=args.study))
    import shlex

    from .studies.runs import rerun_line
    rows = write_report(study, report, report.with_suffix(".png"), min_full=args.min_full,
                        rerun=rerun_line("spatialnet " + shlex.join(a for a in args._argv if a != "--resume")),
                        title=f"{','.join(modes)}/{base.net}")
    print(f"study {args.study}: {len(rows)} complete trials; wrote {report}, {report.with_suffix('.json')}, "
          f"{report.with_suffix('.png')}")
    return 0


def run_study(name: str, extra: list[str] | None = None, data_dir=None, log=print) -> None:
    """Runs every step of study ``name``: ``extra`` (e.g. ``--workers 1``) is appended to each
    ``spatialnet`` step, ``data_dir`` reaches every step as $SPATIALNET_DATA. The tables it
    writes name the study in their "Rerun:" line."""
    import os
    import runpy
    import sys

    from .studies import runs
    from .studies.catalog import study

    s = study(name)
    env = os.environ.get("SPATIALNET_DATA")
    if data_dir:
        os.environ["SPATIALNET_DATA"] = str(data_dir)
    runs.CURRENT_STUDY = name
    try:
        for words, step in zip(s.commands(), s.steps):
            log(f"[study {name}] {step}")
            if words[0] == "spatialnet":
                if main(words[1:] + list(extra or [])) != 0:
                    raise ValueError(f"study {name!r}: this step failed: {step}")
            else:
                argv = sys.argv
                sys.argv = [words[2], *words[3:]]
                try:
                    runpy.run_module(words[2], run_name="__main__", alter_sys=True)
                except SystemExit as exc:  # a module's main() may end in sys.exit: only a failure stops the study
                    if exc.code not in (None, 0):
                        raise ValueError(f"study {name!r}: this step failed (exit {exc.code}): {step}") from None
                finally:
                    sys.argv = argv
    finally:
        runs.CURRENT_STUDY = None
        if data_dir:
            if env is None:
                os.environ.pop("SPATIALNET_DATA", None)
            else:
                os.environ["SPATIALNET_DATA"] = env


def cmd_study(args) -> int:
    from .studies.catalog import STUDIES
    if args.list or not args.name:
        for s in STUDIES.values():
            print(f"{s.name}: {s.question}")
            for step in s.steps:
                print(f"    {step}")
            print(f"    writes results/{{{', '.join(s.outputs)}}}")
        return 0
    run_study(args.name, args.extra, data_dir=args.data_dir)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="spatialnet", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one net (torchrun --nproc-per-node=N -m spatialnet train for DDP)")
    p.add_argument("--out", default="runs/train", help="folder for checkpoint.pt, metrics.json, result.json")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--device", default="auto", help="auto (cuda:$LOCAL_RANK when CUDA is there, else cpu), cpu, cuda:0, ...")
    p.add_argument("--no-progress", action="store_true")
    _add_config_args(p, skip=())
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("split", help="split a trained net and compare each task's subnetwork with the full net")
    p.add_argument("checkpoint")
    p.add_argument("--data", choices=("full", "subset", "auto"), default=None,
                   help="default: the data the checkpoint was trained on")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    p.add_argument("--eval-split", choices=("val", "test"), default=None,
                   help="read on the validation split or the test sets (default: what the run was read on)")
    p.add_argument("--dead-tol", type=float, default=None,
                   help="dead rule: outgoing sum |w| below this x the layer's 90th percentile (default 0.1)")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("dead-tol", help="re-read trained runs with several dead thresholds (how much each "
                                        "measure hinges on the rule)")
    p.add_argument("runs", nargs="+", help="run folders (or checkpoints)")
    p.add_argument("--tols", default="0.03,0.1,0.3")
    p.add_argument("--eval-split", choices=("val", "test"), default="val")
    p.add_argument("--out", default="results/dead-tol", help="OUT.md and OUT.json")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_dead_tol)

    p = sub.add_parser("plot", help="Figures 1 and 2 from a spatial checkpoint; --animate RUN: a GIF of its positions")
    p.add_argument("checkpoint", help="a checkpoint.pt, or with --animate its run folder")
    p.add_argument("--animate", action="store_true",
                   help="write OUT/positions.gif (default: in the run folder): the positions epoch by "
                        "epoch, coloured by the final split")
    p.add_argument("--out", default=None, help="folder for figure1.png and figure2.png (default: beside the checkpoint)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("reproduce", help="Table 1: 3 modes x {regular, spatial} x seeds on the full data")
    p.add_argument("--out", default="results")
    p.add_argument("--runs-dir", default="runs/reproduce", help="checkpoints of every run (resumable)")
    p.add_argument("--seeds", type=_int_list("--seeds"), default=[0, 1, 2, 3, 4],
                   help="report seeds (default 0-4; selection uses seeds >= 100, in sweeps)")
    p.add_argument("--modes", type=lambda s: s.split(","), default=list(data_mod.MODES))
    p.add_argument("--variants", type=_str_list, default=["regular", "spatial"],
                   help="rows per mode: spatial, regular (the paper's lr 0.005, gain 1), regular-same (the "
                        "spatial net's lr and init), l1-only, frozen, offset-0, offset-1.6 (default regular,spatial)")
    p.add_argument("--workers", type=int, default=2,
                   help="runs trained in parallel (one thread each; on a GPU they share it)")
    p.add_argument("--device", default="auto", help="auto (cuda when CUDA is there, else cpu), cpu, cuda, ...")
    _add_config_args(p, defaults={"eval_split": "test"})
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("grid", help="a grid of runs: hidden widths or task lists x modes x nets x seeds, "
                                    "one JSON record per run (the width and M-task studies)")
    p.add_argument("--name", default="grid", help="OUT/NAME.json; the table and the figures under OUT/NAME/")
    p.add_argument("--hidden-list", default=None, help="hidden widths per variant, e.g. '128,128,128,256;256,256,256,512'")
    p.add_argument("--tasks-list", default=None, help="task lists per variant, e.g. 'mnist,fashion,pmnist1;mnist,fashion,pmnist1,pmnist2'")
    p.add_argument("--modes", type=lambda s: s.split(","), default=["concat", "sequential"])
    p.add_argument("--nets", type=lambda s: s.split(","), default=["spatial", "regular"])
    p.add_argument("--seeds", type=_int_list("--seeds"), default=[0, 1])
    p.add_argument("--out", default="results")
    p.add_argument("--runs-dir", default=None, help="checkpoints of every run (default runs/NAME; resumable)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    _add_config_args(p, defaults={"eval_split": "test"})
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("sweep", help="search hyper-parameters with Optuna for full accuracy and a small split drop",
                       description="Each trial trains a config on --seeds and reports the mean full accuracy "
                                   "(maximised) and the mean drop after the split (minimised). The study is "
                                   "stored in --storage; several processes can run `spatialnet sweep ... "
                                   "--resume` on one study at once.")
    p.add_argument("--modes", type=_str_list, default=None,
                   help="train every trial in each of these modes (one setting for all), e.g. concat,mix,sequential; "
                        "the objectives are then means over the modes (default: --mode alone)")
    p.add_argument("--constraint", action="append", default=None, metavar="[MODE.]KEY<=V|KEY>=V|targets",
                   help="a constraint on a read-out, met by the worst seed of each mode (repeatable); 'targets': "
                        "the spatial net's targets of each mode (evaluate.TARGETS), e.g. nn>=0.4, stacked<=0.3, "
                        "sequential.drop<=0.05")
    p.add_argument("--study", default="sequential", help="study name")
    p.add_argument("--storage", default=None,
                   help="SQLAlchemy URL of the study's database (default sqlite:///runs/sweeps/STUDY.db)")
    p.add_argument("--param", action="append", default=None, metavar="NAME=LOW:HIGH[:log]|NAME=A|B",
                   help="a searched parameter, repeatable; default: " + " ".join(DEFAULT_SPACE))
    p.add_argument("--trials", type=int, default=20, help="trials this process runs (0: only write the report)")
    p.add_argument("--seeds", type=_int_list("--seeds"), default=[100, 101],
                   help="selection seeds each trial averages over (>= 2 of them, each >= 100; default 100,101)")
    p.add_argument("--runs-dir", default=None, help="checkpoints of every trial's runs (default runs/sweeps/STUDY)")
    p.add_argument("--resume", action="store_true", help="continue (or join) an existing study")
    p.add_argument("--report", default="results/sweeps/{study}.md",
                   help="markdown report; .json and .png (Pareto plot) beside it")
    p.add_argument("--min-full", type=float, default=0.91, help="full-accuracy floor for the report's best trials")
    p.add_argument("--heartbeat", type=int, default=60,
                   help="seconds between a running trial's heartbeats; a trial silent for 3x this "
                        "(its worker killed) is failed and retried with the same parameters")
    p.add_argument("--sampler-seed", type=int, default=None)
    p.add_argument("--objectives", type=_str_list, default=["full", "drop"],
                   help="what the sweep optimises, full and drop first, then any of silhouette, ari, "
                        "share_norm, dead_fraction, newman_q, nn, stacked, on_next (e.g. full,drop,silhouette,nn)")
    _add_config_args(p, skip=("seed",), defaults={"mode": "sequential"})
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("study", help="run a study of results/ as it is declared (spatialnet/studies/catalog.py)")
    p.add_argument("name", nargs="?", default=None, help="the study (see --list)")
    p.add_argument("--list", action="store_true", help="list the studies, their commands and outputs")
    p.add_argument("--data-dir", default=None, help="data folder for every step (as $SPATIALNET_DATA)")
    p.add_argument("extra", nargs=argparse.REMAINDER,
                   help="further flags for every spatialnet step, after --, e.g. -- --workers 1")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("demo", help="train the spatial and the regular net (concat), split both, print "
                                    "their table and modularity, draw the spatial net's figures")
    p.add_argument("--out", default="spatialnet-demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    _add_config_args(p, skip=PER_RUN_FIELDS, defaults={"data": "auto"},
                     helps={"epochs": "epochs (default 30 on the full data, 200 on the embedded subset)"})
    p.set_defaults(func=cmd_demo)
    return ap


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args._argv = argv
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"spatialnet {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
