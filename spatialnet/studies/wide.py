"""Does the width rule carry the defaults to wider nets? The paper's net 1x to 16x as wide (every
hidden width times w), concat and mix, on the report seeds and the test sets, the spatial net
through the rule alone, and the regular net beside it at 2x and wider. One record
(``results/wide.json``), one table, the figures of each width's first seed."""
from __future__ import annotations

import json
from pathlib import Path

from .._io import atomic, write_text
from ..analysis.evaluate import TARGETS, TERRITORY_TARGETS, target_gap
from ..flags import add_config_args, config_from_args, int_list, str_list
from .grid import run_grid, width_of
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
                outputs=("wide.json", "wide/table.md", "wide/targets.md", "wide/trajectories.md", "wide/trajectories.png",
             "wide/figure1-*.png", "wide/figure2-*.png"),
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
    tracks = trajectories(records, Path(args.runs_dir))
    write_text(Path(args.out) / "wide" / "trajectories.md", trajectories_markdown(tracks, args.rerun))
    plot_trajectories(tracks, Path(args.out) / "wide" / "trajectories.png")
    for f in ("table.md", "targets.md", "trajectories.md"):
        print((Path(args.out) / "wide" / f).read_text())


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
        w = width_of(rs[0]["hidden"])
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


def trajectories(records: list, runs_dir: Path) -> dict:
    """``{(width, mode): {seed: picture_trajectory rows}}`` for every spatial run of the record,
    read from its positions after every epoch (``studies/trajectory.py``)."""
    from .trajectory import picture_trajectory
    out: dict = {}
    for r in records:
        if r["net"] != "spatial":
            continue
        run = runs_dir / f"{'-'.join(map(str, r['hidden']))}-{r['mode']}-spatial-seed{r['seed']}"
        w = width_of(r["hidden"])
        out.setdefault((w, r["mode"]), {})[r["seed"]] = picture_trajectory(run)
    return out


def trajectories_markdown(tracks: dict, rerun: str) -> str:
    """Per width, mode and seed: silhouette / band / output silhouette at six epochs evenly through
    training, the time to form, and how much the silhouette and the band still moved over the
    last sixth of training (a wide net may still be changing when training stops)."""
    from .trajectory import time_to_form
    last = max((rows[-1]["epoch"] for seeds in tracks.values() for rows in seeds.values()), default=0)
    cols = sorted({max(1, round(last * k / 6)) for k in range(1, 7)})
    tail = last - cols[-2] if len(cols) > 1 else last
    lines = ["# The width study's picture epoch by epoch", "",
             "Each spatial run's positions after every epoch, read with its final split (`studies/trajectory.py`): "
             "silhouette / band / output silhouette over the hidden split layers' live neurons. Time to form: the "
             "epoch by which the silhouette has made 90 % of its change. The last column: how far the silhouette "
             f"and the band moved over the last {tail} epochs (still forming where the silhouette rises or the "
             "band falls).", "",
             "| width | mode | seed | " + " | ".join(f"e{e}" for e in cols)
             + f" | time to form | last {tail} epochs: Δ silhouette / Δ band |",
             "|---|---|---|" + "---|" * len(cols) + "---|---|"]
    for (w, mode), seeds in sorted(tracks.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        for seed, rows in sorted(seeds.items()):
            at = {row["epoch"]: row for row in rows}
            cells = []
            for e in cols:
                row = at.get(e)
                cells.append("–" if row is None else " / ".join(
                    "–" if row.get(k) is None else f"{row[k]:.2f}" for k in ("silhouette", "band", "out_silhouette")))
            epochs = [row["epoch"] for row in rows]
            tf = time_to_form(epochs, [row["silhouette"] for row in rows])
            end, before = rows[-1], at.get(rows[-1]["epoch"] - tail)
            moved = "–" if before is None else " / ".join(
                "–" if end[k] is None or before[k] is None else f"{end[k] - before[k]:+.2f}" for k in ("silhouette", "band"))
            lines.append(f"| {w:g}x | {mode} | {seed} | " + " | ".join(cells)
                         + f" | {'–' if tf is None else f'{tf:g}'} | {moved} |")
    lines += ["", f"Rerun: `{rerun}`", ""]
    return "\n".join(lines)


def plot_trajectories(tracks: dict, path: Path) -> None:
    """The silhouette and the band against the epoch, a panel per mode, a line per run coloured
    by width."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    modes = sorted({m for _, m in tracks})
    widths = sorted({w for w, _ in tracks})
    colours = dict(zip(widths, plt.cm.viridis(np.linspace(0, 0.9, len(widths)))))
    fig, axes = plt.subplots(2, len(modes), figsize=(4.2 * len(modes), 6), squeeze=False)
    for j, mode in enumerate(modes):
        for (w, m), seeds in sorted(tracks.items()):
            if m != mode:
                continue
            for k, (seed, rows) in enumerate(sorted(seeds.items())):
                for i, key in enumerate(("silhouette", "band")):
                    axes[i, j].plot([r["epoch"] for r in rows], [np.nan if r[key] is None else r[key] for r in rows],
                                    color=colours[w], lw=1.2, label=f"{w:g}x" if k == 0 else None)
        axes[0, j].set_title(mode)
        axes[0, j].set_ylabel("silhouette")
        axes[1, j].set_ylabel("band (1: none)")
        axes[1, j].set_xlabel("epoch")
        axes[0, j].legend(fontsize=7)
    fig.tight_layout()
    atomic(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)
