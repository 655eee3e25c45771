"""``spatialnet`` command line: train, split, plot, demo, sweep, study.

The parser is built for the command given only, and nothing heavier than argparse is imported
before it is needed: ``spatialnet --help`` answers without loading torch. ``DESCRIPTION`` is the
help's text, plain (argparse prints it as written).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

DESCRIPTION = """\
Layer indices (--spatial-layers) count the Linear layers from 1 at the input; layer l is also the
layer of neurons it produces. --hidden 128,128,128,256 --spatial-layers 3,4,5 is the paper's net:
costs on the third hidden layer, the fourth and the output (layer 5).

The defaults (README.md, docs/protocol.md): transport as the mean over connections
(--transport-norm per_connection; the paper prints 1/N_l, per_out), density over pairs, lr 0.005,
Glorot gain 1, no head offset, a constant lr, 30 epochs, and the mode's chosen alpha, beta,
positions' lr multiple and cost warm-up, carried to other widths by the width rule.
--preset paper|recipe-2025 runs an earlier setting. The studies of results/ (Table 1, the width
study, ...) run as: spatialnet study NAME. The old commands reproduce, grid and dead-tol still work.

spatialnet COMMAND --help lists a command's flags."""

# the commands and their one-line help (the parser of the command given is built in full)
COMMANDS = {
    "train": "train one net (torchrun --nproc-per-node=N -m spatialnet train for DDP)",
    "split": "split a trained net and compare each task's subnetwork with the full net",
    "plot": "Figures 1 and 2 from a spatial checkpoint; --animate RUN: a GIF of its positions",
    "demo": "train the spatial and the regular net (concat), split both, print their table and modularity, draw "
            "the spatial net's figures (into ./spatialnet-demo/)",
    "sweep": "search hyper-parameters with Optuna for full accuracy and a small split drop (needs optuna, from "
             "the [paper] extra)",
    "study": "run a study of results/ (spatialnet study --list): its arguments' defaults make its results; "
             "spatialnet study NAME --help lists them",
}
NO_PROGRESS_HELP = "no progress bar (the epoch lines are still printed)"

# old commands, now studies: ``spatialnet reproduce ARGS`` runs ``spatialnet study table1 ARGS``
STUDY_ALIASES = {"reproduce": "table1", "grid": "grid", "dead-tol": "dead-tol"}


def cmd_train(args) -> int:
    from .analysis.printout import print_eval
    from .config import CHOSEN, PER_MODE
    from .flags import config_from_args, given_per_mode
    from .training import init_distributed_from_env, train
    cfg = config_from_args(args)
    own = {k: CHOSEN[cfg.mode][k] for k in PER_MODE if k not in given_per_mode(args)}
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
        print_eval(res, f"{cfg.mode}/{cfg.net} seed {cfg.seed} ({res['data']} data), {args.out}/checkpoint.pt")
    return 0


def cmd_split(args) -> int:
    from . import data as data_mod
    from .analysis.evaluate import evaluate
    from .analysis.printout import print_eval
    from .data import load_data
    from .training.checkpoint import model_from_checkpoint
    model, cfg, _ = model_from_checkpoint(args.checkpoint)
    data = args.data or cfg.data
    if data == "subset":
        print(data_mod.SUBSET_BANNER)
    cfg = cfg.replace(data=data, eval_split=args.eval_split or cfg.eval_split)
    td = load_data(cfg, args.data_dir)
    ev = evaluate(model, cfg, td, dead_tol=args.dead_tol)
    print_eval(ev, f"{args.checkpoint}: {cfg.mode}/{cfg.net}, split layers {cfg.split_layers} ({td.source} data)")
    if args.json:
        from ._io import write_json
        write_json(args.json, ev)
    return 0


def cmd_plot(args) -> int:
    from .analysis.figures import animate_positions, plot_figures
    from .training.checkpoint import load_run, model_from_checkpoint
    if args.animate:
        run = Path(args.checkpoint)
        run = run.parent if run.is_file() else run
        gif = animate_positions(*load_run(run), Path(args.out or run) / "positions.gif")
        print(f"wrote {gif}")
        return 0
    model, cfg, _ = model_from_checkpoint(args.checkpoint)
    out = args.out or str(Path(args.checkpoint).parent)
    for p in plot_figures(model, cfg.split_layers, out, tasks=cfg.tasks, title=f"{cfg.mode}/{cfg.net} seed {cfg.seed}"):
        print(f"wrote {p}")
    return 0


def cmd_demo(args) -> int:
    from . import data as data_mod
    from .flags import config_from_args
    from .studies.demo import run_demo
    data = getattr(args, "data", "auto")
    if data == "auto" and not data_mod.full_data_present(args.data_dir):
        print(f"full data not found under {data_mod.default_data_dir(args.data_dir)}; using the embedded subset")
    ds = data_mod.load(data, args.data_dir)
    # the subset has 8 steps per epoch: 200 of them are 1 600 steps
    epochs = getattr(args, "epochs", 30 if ds.source == "full" else 200)
    base = config_from_args(args, mode="concat", net="spatial", seed=args.seed, data=ds.source, epochs=epochs)
    run_demo(base, args.out, ds, data_dir=args.data_dir, progress=not args.no_progress)
    return 0


def cmd_sweep(args) -> int:
    from . import data as data_mod
    from .flags import config_from_args, given_per_mode
    from .studies.sweep import DEFAULT_SPACE, parse_constraints, parse_space, require_optuna, run_sweep, write_report
    require_optuna()
    params = parse_space(args.param or DEFAULT_SPACE)
    first = config_from_args(args, seed=0)
    modes = args.modes or [first.mode]
    for m in modes:
        data_mod.check_mode(m)
    constraints = parse_constraints(args.constraint, modes)
    base = config_from_args(args, mode=modes[0], seed=0)
    if base.data == "subset":
        print(data_mod.SUBSET_BANNER)
    study = run_sweep(base, args.study, args.storage, params, trials=args.trials, seeds=args.seeds,
                      runs_dir=args.runs_dir, data_dir=args.data_dir, resume=args.resume,
                      heartbeat=args.heartbeat, sampler_seed=args.sampler_seed, objectives=args.objectives,
                      modes=modes, constraints=constraints, given=given_per_mode(args))
    report = Path(args.report.format(study=args.study))
    import shlex
    rows = write_report(study, report, report.with_suffix(".png"), min_full=args.min_full,
                        rerun="spatialnet " + shlex.join(a for a in args._argv if a != "--resume"),
                        title=f"{','.join(modes)}/{base.net}")
    print(f"study {args.study}: {len(rows)} complete trials; wrote {report}, {report.with_suffix('.json')}, "
          f"{report.with_suffix('.png')}")
    return 0


def cmd_study(args) -> int:
    from .studies.catalog import all_studies, run_study
    if args.list or not args.name:
        if args.markdown:  # README's table
            print("| study | question | writes under results/ |\n|---|---|---|")
        for s in all_studies():
            if args.markdown:
                print(f"| `spatialnet study {s.name}` | {s.question} | {', '.join(f'`{o}`' for o in s.outputs)} |")
            else:
                print(f"{s.name}: {s.question}\n    spatialnet study {s.name}\n    writes results/{{{', '.join(s.outputs)}}}")
        return 0
    run_study(args.name, args.rest)
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; in full for ``command`` (every command when None), the others by name and
    help line alone (``""``: every one so, and ``spatialnet --help`` loads nothing but argparse)."""
    ap = argparse.ArgumentParser(prog="spatialnet", description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for name, help_ in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if command is None or command == name:
            BUILDERS[name](p)
    return ap


def _train_args(p) -> None:
    from .flags import add_config_args
    p.add_argument("--out", default="runs/train", help="folder for checkpoint.pt, metrics.json, result.json")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt (with more --epochs: past its end, on a constant schedule)")
    p.add_argument("--device", default="auto", help="auto (cuda:$LOCAL_RANK when CUDA is there, else cpu), cpu, cuda:0, ...")
    p.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    add_config_args(p, skip=())
    p.set_defaults(func=cmd_train)


def _split_args(p) -> None:
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


def _plot_args(p) -> None:
    p.add_argument("checkpoint", help="a checkpoint.pt, or with --animate its run folder")
    p.add_argument("--animate", action="store_true",
                   help="write OUT/positions.gif (default: in the run folder): the positions epoch by "
                        "epoch, coloured by the final split")
    p.add_argument("--out", default=None, help="folder for figure1.png and figure2.png (default: beside the checkpoint)")
    p.set_defaults(func=cmd_plot)


def _demo_args(p) -> None:
    from .flags import PER_RUN_FIELDS, add_config_args
    p.add_argument("--out", default="spatialnet-demo", help="output folder (default ./spatialnet-demo/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    add_config_args(p, skip=PER_RUN_FIELDS, defaults={"data": "auto"},
                    helps={"epochs": "epochs (default 30 on the full data, 200 on the embedded subset)"})
    p.set_defaults(func=cmd_demo)


def _sweep_args(p) -> None:
    from .flags import add_config_args, int_list, str_list
    from .studies.sweep.space import DEFAULT_SPACE
    p.description = ("Each trial trains a config on --seeds and reports the mean full accuracy (maximised) and the "
                     "mean drop after the split (minimised). The study is stored in --storage; several processes "
                     "can run 'spatialnet sweep ... --resume' on one study at once. Needs optuna (the [paper] extra).")
    p.add_argument("--modes", type=str_list, default=None,
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
    p.add_argument("--seeds", type=int_list("--seeds"), default=[100, 101],
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
    p.add_argument("--objectives", type=str_list, default=["full", "drop"],
                   help="what the sweep optimises, full and drop first, then any of silhouette, ari, "
                        "share_norm, dead_fraction, newman_q, nn, stacked, on_next, purity, territory, band, "
                        "out_silhouette (e.g. full,drop,silhouette,nn)")
    add_config_args(p, skip=("seed",), defaults={"mode": "sequential"})
    p.set_defaults(func=cmd_sweep)


def _study_args(p) -> None:
    p.add_argument("name", nargs="?", default=None, help="the study (see --list)")
    p.add_argument("--list", action="store_true", help="list the studies, their questions and outputs")
    p.add_argument("--markdown", action="store_true", help="with --list: as a markdown table (README's)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the study's own flags")
    p.set_defaults(func=cmd_study)


BUILDERS = {"train": _train_args, "split": _split_args, "plot": _plot_args, "demo": _demo_args,
            "sweep": _sweep_args, "study": _study_args}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in STUDY_ALIASES:
        warnings.warn(f"`spatialnet {argv[0]}` is deprecated: it runs `spatialnet study {STUDY_ALIASES[argv[0]]}` "
                      f"(the same flags)", DeprecationWarning, stacklevel=2)
        print(f"spatialnet {argv[0]}: deprecated, runs `spatialnet study {STUDY_ALIASES[argv[0]]}`", file=sys.stderr)
        argv = ["study", STUDY_ALIASES[argv[0]], *argv[1:]]
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else "").parse_args(argv)
    args._argv = argv
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        print(f"spatialnet {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
