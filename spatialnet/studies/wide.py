"""Does the width rule carry the defaults to wider nets? The paper's net 1x to 16x as wide (every
hidden width times w), concat and mix, on the report seeds and the test sets, the spatial net
through the rule alone, and the regular net beside it at 2x and wider. One record
(``results/wide.json``), one table, the figures of each width's first seed."""
from __future__ import annotations

from pathlib import Path

from ..flags import add_config_args, config_from_args, int_list, str_list
from .grid import run_grid
from .registry import register_study

PAPER_HIDDEN = (128, 128, 128, 256)


def _arguments(p) -> None:
    p.add_argument("--widths", type=int_list("--widths"), default=[1, 2, 4, 8, 16])
    p.add_argument("--seeds", default="1:0,1,2;2:0,1,2;4:0,1,2;8:0,1,2;16:0,1",
                   help="report seeds per width, WIDTH:SEEDS;... (default: 0-2, and 0-1 at 16x)")
    p.add_argument("--regular-seeds", type=int_list("--regular-seeds"), default=[0],
                   help="seeds of the regular net at every width but 1x (Table 1 holds 1x's)")
    p.add_argument("--modes", type=str_list, default=["concat", "mix"])
    p.add_argument("--out", default="results")
    p.add_argument("--runs-dir", default="runs/wide")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    add_config_args(p, defaults={"eval_split": "test"})


def seeds_per_width(spec: str) -> dict[int, list[int]]:
    """``'1:0,1,2;16:0,1'`` -> ``{1: [0, 1, 2], 16: [0, 1]}``; a ValueError names a bad part."""
    out = {}
    for part in (p for p in spec.split(";") if p.strip()):
        w, sep, seeds = part.partition(":")
        try:
            out[int(w)] = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"--seeds: write WIDTH:SEED,SEED;..., got {part!r}") from None
        if not sep or not out[int(w)]:
            raise ValueError(f"--seeds: write WIDTH:SEED,SEED;..., got {part!r}")
    return out


@register_study("wide", question="Does the width rule carry the defaults to 2x, 4x, 8x and 16x the paper's widths "
                                 "(the spatial net beside the regular one)?",
                outputs=("wide.json", "wide/table.md", "wide/figure1-*.png", "wide/figure2-*.png"),
                arguments=_arguments)
def run(args) -> None:
    seeds = seeds_per_width(args.seeds)
    missing = [w for w in args.widths if w not in seeds]
    if missing:
        raise ValueError(f"--seeds names no seeds for widths {missing}")
    plan = []
    for w in args.widths:
        hidden = [h * w for h in PAPER_HIDDEN]
        plan.append((hidden, ["spatial"], seeds[w]))
        if w > 1 and args.regular_seeds:
            plan.append((hidden, ["regular"], args.regular_seeds))
    base = config_from_args(args, mode=args.modes[0], net="spatial", seed=0)
    run_grid(base, "wide", args.out, args.runs_dir, hidden_list=[list(v) for v, _, _ in plan], modes=args.modes,
             nets=["spatial", "regular"], seeds=sorted({s for v in seeds.values() for s in v}), plan=plan,
             data_dir=args.data_dir, workers=args.workers, device=args.device, rerun=args.rerun)
    print((Path(args.out) / "wide" / "table.md").read_text())
