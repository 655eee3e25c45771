"""The width rule's quantities in training: which one drifts with width, and from which epoch.

    spatialnet study width-forces          # 1x-8x, concat and mix, selection seed 100, both rules

Runs: the paper's net 1x, 2x, 4x and 8x as wide (``--widths``; 16x with ``--wide-epochs`` fewer
epochs), concat and mix, on the selection seed(s), read on the validation split, under the width
rule (``auto``) and under its earlier form (``glorot``: every width starts from the
initialiser's scale), each keeping its checkpoints at epochs 0, 1, 3, 10, 30 (and its last).

Read at each kept checkpoint (``analysis.invariants.rule_quantities``, the run's final split
naming live neurons and tasks):

- per spatial layer, the transport's pressure on a weight against the task gradient;
- per sheet, the mean radial pull and push and their ratio, the sheet's radius, its spacing
  against its density length, and the positions' Adam step against that length;
- per hidden layer, how many next-layer neurons a live neuron feeds, and how task-specific its
  outgoing weights are (the share of its |w| to its own task);

and every epoch, from the positions file: the picture (silhouette, band, output silhouette, with
the final split), its time to form (the epoch by which it has made 90 % of its change and stays
there), and how fast each sheet's live neurons move towards their own task's side.

Writes ``OUT.json`` (every number), ``OUT.md`` (the table of each quantity against the 1x run's,
epoch by epoch) and ``OUT/<quantity>.png`` (a panel per layer or sheet, a line per width; solid:
the rule, dashed: its earlier form).
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

from .._io import atomic, write_json, write_text
from ..config import TrainConfig
from ..flags import int_list, str_list
from .registry import register_study
from .runs import machine, run_jobs
from .trajectory import time_to_form

PAPER_HIDDEN = (128, 128, 128, 256)
KEEP = (0, 1, 3, 10, 30)
# (key prefix, what it is) of the quantities read at each kept checkpoint, one figure each
QUANTITIES = (("pressure", "transport pressure on a weight / task gradient"),
              ("pull_push", "pull / push on a position"),
              ("radius", "sheet radius (median distance from the centroid)"),
              ("spacing_length", "spacing / density length"),
              ("step_length", "positions' Adam step / density length"),
              ("feeds", "next-layer neurons a live neuron feeds"),
              ("own_share", "share of a neuron's |w| to its own task"))
PICTURE = ("silhouette", "band", "out_silhouette")


def run_config(width: int, mode: str, seed: int, rule: str, epochs: int) -> TrainConfig:
    return TrainConfig(hidden=[h * width for h in PAPER_HIDDEN], mode=mode, seed=seed, width_rule=rule,
                       epochs=epochs, eval_split="val", keep_epochs=sorted({*KEEP, epochs})).validate()


def drift(track: dict, assignment: dict, layers) -> dict:
    """Per layer, per epoch e: the mean distance a live neuron moved from epoch e to e + 1 along
    the line from the other task's centroid to its own (final split), and that separation."""
    out = {}
    for l in layers:
        P, g = track["layers"][str(l)], assignment[l]
        live = g >= 0
        rows = []
        for e in range(len(P) - 1):
            p0, p1, gl = P[e][live], P[e + 1][live], g[live]
            c = torch.stack([p0[gl == t].mean(0) for t in (0, 1)])
            sep = float((c[0] - c[1]).norm())
            unit = (c[0] - c[1]) / max(sep, 1e-12)
            toward = torch.where((gl == 0)[:, None], unit, -unit)
            rows.append({"epoch": track["epochs"][e], "drift": float(((p1 - p0) * toward).sum(1).mean()),
                         "separation": sep})
        out[str(l)] = rows
    return out


def measure_run(run_dir: Path, data_dir=None) -> dict:
    """Every quantity of one run (see the module docstring)."""
    from ..analysis.invariants import rule_quantities
    from ..analysis.task_split import model_split
    from ..data import load_data
    from ..model import build_model
    from ..training.checkpoint import load_checkpoint, load_run
    from ..training.loop import _make_optimizer
    from .trajectory import picture_trajectory

    final, cfg, track = load_run(run_dir)
    assignment = model_split(final, cfg.split_layers, cfg.num_tasks)
    td = load_data(cfg, data_dir)
    batches = list(itertools.islice(td.epoch_batches(1, 256), 4))
    at = {}
    for e in cfg.keep_epochs:
        path = run_dir / f"checkpoint-e{e}.pt"
        if not path.is_file():
            continue
        ck = load_checkpoint(path)
        model = build_model(cfg)
        model.load_state_dict(ck["model"])
        opt = None
        if e > 0:
            opt, _ = _make_optimizer(model, cfg, 1)
            opt.load_state_dict(ck["optimizer"])
        at[str(e)] = rule_quantities(model, cfg, batches, opt, assignment)
    picture = picture_trajectory(run_dir)
    epochs = [r["epoch"] for r in picture]
    return {"width": cfg.width_factor, "mode": cfg.mode, "seed": cfg.seed, "rule": cfg.width_rule,
            "at": at, "picture": picture,
            "time_to_form": {k: time_to_form(epochs, [r.get(k) for r in picture]) for k in PICTURE},
            "drift": drift(track, assignment, [l for l in cfg.split_layers if str(l) in track["layers"]])}


def _arguments(p) -> None:
    p.add_argument("--widths", type=int_list("--widths"), default=[1, 2, 4, 8])
    p.add_argument("--modes", type=str_list, default=["concat", "mix"])
    p.add_argument("--seeds", type=int_list("--seeds"), default=[100])
    p.add_argument("--rules", type=str_list, default=["auto", "glorot"])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--wide-epochs", type=int, default=10, help="epochs at 16x (an hour at 30 on one core)")
    p.add_argument("--runs-dir", default="runs/width-forces")
    p.add_argument("--out", default="results/width-forces")
    p.add_argument("--workers", type=int, default=2)


@register_study("width-forces", question="Which of the width rule's quantities drifts with width in training, "
                                         "and from which epoch (1x-8x, concat and mix, both forms of the rule)?",
                outputs=("width-forces.json", "width-forces.md", "width-forces/*.png"), arguments=_arguments)
def run(args) -> None:
    runs_dir, out = Path(args.runs_dir), Path(args.out)
    jobs, dirs = [], []
    for rule, w, mode, seed in itertools.product(args.rules, args.widths, args.modes, args.seeds):
        if w == 1 and rule != args.rules[0]:
            continue  # at 1x every form of the rule is the flags
        cfg = run_config(w, mode, seed, rule, args.wide_epochs if w >= 16 else args.epochs)
        d = runs_dir / f"{rule}-{w}x-{mode}-seed{seed}"
        jobs.append((cfg.to_dict(), str(d), args.data_dir, "cpu"))
        dirs.append(d)
    jobs.sort(key=lambda j: -sum(j[0]["hidden"]))  # the widest first: the pool's tail stays short
    run_jobs(jobs, args.workers, lambda *a: print(f"trained {a[0]['width_rule']} {a[0]['hidden']} {a[0]['mode']} "
                                                   f"seed {a[0]['seed']}", flush=True))
    records = []
    for d in dirs:
        rec = measure_run(d, args.data_dir)
        print(f"measured {d.name}: time to form {rec['time_to_form']}", flush=True)
        # the 1x run stands for every form of the rule
        records += [{**rec, "rule": rule} for rule in (args.rules if rec["width"] == 1 else [rec["rule"]])]
    settings = {"widths": args.widths, "modes": args.modes, "seeds": args.seeds, "rules": args.rules,
                "epochs": args.epochs, "keep": list(KEEP), "machine": machine(args.workers, 1, "cpu"),
                "rerun": args.rerun}
    write_json(out.with_suffix(".json"), {"records": records, "settings": settings})
    write_text(out.with_suffix(".md"), markdown(records, settings))
    for key, label in (*QUANTITIES, *((k, k) for k in PICTURE), ("drift", "drift towards own task per epoch")):
        figure(records, key, label, out / f"{key}.png")
    print((out.with_suffix(".md")).read_text())


def _series(rec: dict, key: str) -> dict[str, tuple[list, list]]:
    """``{panel: (epochs, values)}`` of one record for a quantity (per layer or sheet)."""
    if key in PICTURE:
        return {"": ([r["epoch"] for r in rec["picture"]], [r.get(key) for r in rec["picture"]])}
    if key == "drift":
        return {f"layer {l}": ([r["epoch"] for r in rows], [r["drift"] for r in rows]) for l, rows in rec["drift"].items()}
    panels: dict = {}
    for e, q in sorted(rec["at"].items(), key=lambda kv: int(kv[0])):
        for k, v in q.items():
            if k.startswith(key + "/"):
                xs, ys = panels.setdefault(f"layer {k.split('/')[1]}", ([], []))
                xs.append(int(e))
                ys.append(v)
    return panels


def figure(records: list, key: str, label: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = sorted({r["mode"] for r in records})
    panels = sorted({p for r in records for p in _series(r, key)})
    if not panels:
        return
    fig, axes = plt.subplots(len(modes), len(panels), figsize=(3.6 * len(panels), 2.8 * len(modes)), squeeze=False)
    widths = sorted({r["width"] for r in records})
    colours = dict(zip(widths, plt.cm.viridis(np.linspace(0, 0.9, len(widths)))))
    for i, mode in enumerate(modes):
        for j, panel in enumerate(panels):
            ax = axes[i][j]
            for r in (r for r in records if r["mode"] == mode):
                xs, ys = _series(r, key).get(panel, ([], []))
                pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
                if pts:
                    ax.plot(*zip(*pts), "-" if r["rule"] == "auto" else "--", c=colours[r["width"]], marker=".",
                            label=f"{r['width']:g}x {r['rule']}")
            ax.set_title(f"{mode} {panel}".strip(), fontsize=8)
            ax.set_xlabel("epoch", fontsize=7)
            if key in ("pressure", "step_length", "feeds"):
                ax.set_yscale("log")
    axes[0][-1].legend(fontsize=6)
    import textwrap
    fig.suptitle(textwrap.fill(label + " (solid: the rule; dashed: its earlier form, every width from the "
                               "initialiser's scale)", width=max(50, 55 * len(panels))), fontsize=9)
    fig.tight_layout()
    atomic(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    plt.close(fig)


def markdown(records: list, settings: dict) -> str:
    lines = ["# The width rule's quantities in training", "",
             f"Seeds {settings['seeds']} (selection), validation split, {settings['epochs']} epochs; each quantity "
             f"against the 1x run's of the same mode, at epochs {settings['keep']} (1 = held). Figures: "
             f"`width-forces/<quantity>.png`.", ""]
    one = {(r["mode"], r["seed"]): r for r in records if r["width"] == 1}
    for key, label in QUANTITIES:
        lines += [f"## {label} (`{key}`), over 1x", "", "| mode | rule | width | layer | " +
                  " | ".join(f"e{e}" for e in settings["keep"]) + " |", "|---|---|---|---|" + "---|" * len(settings["keep"])]
        for r in sorted(records, key=lambda r: (r["mode"], r["rule"], r["width"])):
            ref = one.get((r["mode"], r["seed"]))
            if ref is None or r["width"] == 1:
                continue
            for panel, (xs, ys) in _series(r, key).items():
                rx, ry = _series(ref, key).get(panel, ([], []))
                base = dict(zip(rx, ry))
                cells = []
                for e in settings["keep"]:
                    v = dict(zip(xs, ys)).get(e)
                    b = base.get(e)
                    cells.append("–" if v is None or not b else f"{v / b:.2f}")
                lines.append(f"| {r['mode']} | {r['rule']} | {r['width']:g}x | {panel} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## The picture: time to form (epoch by which 90 % of the change is made), and at the end", "",
              "| mode | rule | width | silhouette | band | output silhouette | end: silhouette / band / output |",
              "|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r["mode"], r["rule"], r["width"])):
        t, end = r["time_to_form"], r["picture"][-1]
        lines.append(f"| {r['mode']} | {r['rule']} | {r['width']:g}x | {t['silhouette']} | {t['band']} | "
                     f"{t['out_silhouette']} | {end['silhouette']:.2f} / {end['band']:.2f} / "
                     f"{end['out_silhouette']:.2f} |")
    lines += ["", f"Machine: {settings['machine']}.", "", f"Rerun: `{settings['rerun']}`", ""]
    return "\n".join(lines)

