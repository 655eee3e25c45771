"""Does the width rule carry the defaults to wider nets? The paper's net 1x to 16x as wide (every
hidden width times w), concat and mix, on the report seeds and the test sets, the spatial net
through the rule alone, and the regular net beside it at 2x and wider. One record
(``results/wide.json``), one table, the figures of each width's first seed."""
from __future__ import annotations

import json
from pathlib import Path

from .._io import write_text
from ..analysis.evaluate import TARGETS, TERRITORY_TARGETS, target_gap
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
    p.add_argument("--finished-only", action="store_true",
                   help="train nothing: write the record from the runs that finished, naming the others")
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
             data_dir=args.data_dir, workers=args.workers, device=args.device, rerun=args.rerun,
             finished_only=args.finished_only)
    records = json.loads((Path(args.out) / "wide.json").read_text())["records"]
    write_text(Path(args.out) / "wide" / "targets.md", targets_markdown(records, args.rerun))
    print((Path(args.out) / "wide" / "table.md").read_text())
    print((Path(args.out) / "wide" / "targets.md").read_text())


def _live_per_task(r: dict) -> int:
    """The fewest live neurons a task has, summed over the hidden split layers."""
    sizes = [v for l, v in sorted(r["split_sizes"].items(), key=lambda kv: int(kv[0]))][:-1]
    return min(sum(layer[t] for layer in sizes) for t in range(r["num_tasks"]))


def targets_markdown(records: list, rerun: str) -> str:
    """Each target of the spatial net, per width and mode, met on every seed or not (the seeds'
    values): drop, full against the 1x net's, the clusters, the weights, crowding, dead (or, at 8x
    and wider, twice the 1x net's live neurons per task) and the territories."""
    spatial = [r for r in records if r["net"] == "spatial"]
    one = {m: [r for r in spatial if r["variant"].startswith("1x") and r["mode"] == m] for m in {r["mode"] for r in spatial}}
    lines = ["# The width study's targets, per width and mode (the spatial net, every seed)", "",
             "Met where every seed meets it; the seeds' values in brackets. full: against the 1x net's mean of the "
             "same mode − 0.01; dead: ≤ 50 %, or at 8x and wider at least twice the 1x net's live neurons per task "
             "(the fewest any task has, over the hidden split layers).", ""]
    groups: dict = {}
    for r in spatial:
        groups.setdefault((r["variant"], r["mode"]), []).append(r)
    for (variant, mode), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], sum(kv[1][0]["hidden"]))):
        w = sum(rs[0]["hidden"]) / len(rs[0]["hidden"]) / 160
        checks = [(k, op, v) for k, op, v in TARGETS[mode] if k not in ("full", "dead_fraction")] + list(TERRITORY_TARGETS)
        cells = []
        for key, op, limit in checks:
            vals = [r.get(key) for r in rs]
            met = all(target_gap(v, op, limit) <= 0 for v in vals)
            cells.append(f"{key} {op} {limit:g}: {'met' if met else '**not met**'} "
                         f"({', '.join('–' if v is None else f'{v:.3f}' for v in vals)})")
        ref = one.get(mode) or []
        if ref:
            floor = sum(r["full"] for r in ref) / len(ref) - 0.01
            vals = [r["full"] for r in rs]
            cells.append(f"full >= {floor:.3f}: {'met' if min(vals) >= floor else '**not met**'} "
                         f"({', '.join(f'{v:.3f}' for v in vals)})")
            live_ref = sum(_live_per_task(r) for r in ref) / len(ref)
            dead = [r["dead_fraction"] for r in rs]
            live = [_live_per_task(r) for r in rs]
            ok = [d <= 0.5 or (w >= 8 and n >= 2 * live_ref) for d, n in zip(dead, live)]
            cells.append(f"dead <= 50 % or (8x+) live per task >= {2 * live_ref:.0f}: "
                         f"{'met' if all(ok) else '**not met**'} (dead {', '.join(f'{d:.0%}' for d in dead)}; "
                         f"live per task {', '.join(map(str, live))})")
        lines += [f"## {variant}, {mode}", "", *[f"- {c}" for c in cells], ""]
    lines += [f"Rerun: `{rerun}`", ""]
    return "\n".join(lines)
