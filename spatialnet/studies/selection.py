"""Which one setting (alpha, beta, the positions' lr, a cost warm-up) meets the targets in every
mode at 1x, on the validation split? A constrained multi-objective sweep (``spatialnet.sweep``)
over concat, mix and sequential, on the selection seeds; the defaults' source (``config.CHOSEN``)."""
from __future__ import annotations

from pathlib import Path

from ..flags import add_config_args, config_from_args, given_per_mode
from .sweep import parse_constraints, parse_space, run_sweep, write_report
from .registry import register_study

SPACE = ("alpha=0.3:10:log", "beta=0.3:30:log", "pos_lr_scale=0.3:10:log", "cost_warmup=0:10")
MODES = ("concat", "mix", "sequential")
OBJECTIVES = ("full", "drop", "silhouette", "nn")


def sweep_arguments(p, *, trials: int) -> None:
    """A declared sweep's flags: how many trials this process adds (it joins the stored study)."""
    p.add_argument("--trials", type=int, default=trials, help=f"trials this process runs (default {trials}; 0: "
                                                                "only the report)")
    p.add_argument("--storage", default=None, help="SQLAlchemy URL (default sqlite:///runs/sweeps/STUDY.db)")
    p.add_argument("--heartbeat", type=int, default=120)
    add_config_args(p, skip=("mode", "net", "seed"), defaults={"head_offset": 0.0})


def run_declared(args, study: str, space, modes, objectives, seeds=(100, 101)) -> None:
    """Runs (joins, resumes) the declared sweep ``study`` and writes its report under results/sweeps/."""
    base = config_from_args(args, mode=modes[0], net="spatial", seed=0)
    study_obj = run_sweep(base, study, args.storage, parse_space(space), trials=args.trials, seeds=list(seeds),
                          data_dir=args.data_dir, resume=True, heartbeat=args.heartbeat, objectives=list(objectives),
                          modes=list(modes), constraints=parse_constraints(["targets"], list(modes)),
                          given=given_per_mode(args))
    report = Path("results/sweeps") / f"{study}.md"
    rows = write_report(study_obj, report, report.with_suffix(".png"), rerun=args.rerun,
                        title=f"{','.join(modes)}/{base.net}")
    print(f"study {study}: {len(rows)} complete trials; wrote {report}, {report.with_suffix('.json')}, "
          f"{report.with_suffix('.png')}")


@register_study("selection", question="Which one setting (alpha, beta, the positions' lr, a cost warm-up) meets "
                                      "the targets in every mode at 1x, on the validation split?",
                outputs=("sweeps/one-setting-val.md", "sweeps/one-setting-val.json", "sweeps/one-setting-val.png"),
                arguments=lambda p: sweep_arguments(p, trials=22))
def run(args) -> None:
    run_declared(args, "one-setting-val", SPACE, MODES, OBJECTIVES)
