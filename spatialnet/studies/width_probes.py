"""The cheap tests of what makes the picture form late at 4x and 8x, each a suspected cause imposed at
1x (does the failure appear?) or its 1x value imposed at the wider width (does it go away?):

- the weights' clock (a weight moves by its own size in E|w| / lr steps): at 1x the spatial
  layers' lr over 2.83 (8x's clock); at 4x and 8x their lr times sqrt(w) (1x's clock by the lr);
  at 4x and 8x the rule's start at the trained size (1x's clock by the start: the rule);
- the positions' jitter against the density length: at 1x the positions' lr times 2.83 (8x's
  jitter / length); at 4x their lr over 2 (1x's) and times 2;
- under the rule, the positions' speed: their lr times sqrt(w) at 4x and 8x (their drift towards
  their task's side per epoch falls with width under the rule: results/width-forces.md);
- the trained pressure on a weight, which at 8x falls to about 0.6 of the 1x net's from epoch 10
  on (results/width-forces.md): at 1x alpha times 0.6;
- the contracted hidden sheets (0.55-0.83 of the 1x radius at 8x): at 1x beta times 0.5, the
  density's push halved;
- the late output sheet (its silhouette at epoch 5 is 0.19-0.35 at 1x, -0.04-0.20 at 8x): at 1x
  the output layer's positions at a quarter of the positions' lr.

    spatialnet study width-probes
    spatialnet study width-probes --only '1x-*alpha*'   # those runs; the record keeps the others

Each probe is a ``spatialnet train`` run on the validation split (selection seeds 100, 101), 40
epochs at 1x and 30 wider; the record reads each run's picture epoch by epoch (``trajectory.py``:
silhouette, band and output silhouette with its final split), its time to form and its end.
Writes ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

from .._io import write_json, write_text
from ..config import CHOSEN, TrainConfig
from .registry import register_study
from .runs import machine, run_jobs
from .trajectory import picture_trajectory, time_to_form

PAPER_HIDDEN = (128, 128, 128, 256)
# (name, width, mode, seeds, overrides): what each probe changes against its base run
PROBES = (
    ("base", 1, "concat", (100, 101), {}),
    ("weights' lr / 2.83 (8x's clock)", 1, "concat", (100, 101), {"spatial_lr_scale": 0.3536}),
    ("positions' lr x 2.83 (8x's jitter)", 1, "concat", (100, 101), {"pos_lr_scale": 16.49}),
    ("base", 1, "mix", (100, 101), {}),
    ("earlier rule", 4, "mix", (100, 101), {"width_rule": "glorot"}),
    ("earlier rule, weights' lr x 2 (1x's clock)", 4, "mix", (100, 101),
     {"width_rule": "glorot", "spatial_lr_scale": 2.0}),
    ("earlier rule, positions' lr / 2 (1x's jitter)", 4, "mix", (100, 101), {"width_rule": "glorot", "pos_lr_scale": 2.915}),
    ("earlier rule, positions' lr x 2", 4, "mix", (100, 101), {"width_rule": "glorot", "pos_lr_scale": 11.66}),
    ("the rule (trained start)", 4, "mix", (100, 101), {}),
    ("earlier rule", 4, "concat", (100, 101), {"width_rule": "glorot"}),
    ("earlier rule, weights' lr x 2 (1x's clock)", 4, "concat", (100,), {"width_rule": "glorot", "spatial_lr_scale": 2.0}),
    ("the rule (trained start)", 4, "concat", (100, 101), {}),
    ("earlier rule", 8, "concat", (100,), {"width_rule": "glorot"}),
    ("earlier rule, weights' lr x 2.83 (1x's clock)", 8, "concat", (100,),
     {"width_rule": "glorot", "spatial_lr_scale": 2.828}),
    ("the rule (trained start)", 8, "concat", (100,), {}),
    ("the rule (trained start)", 8, "mix", (100,), {}),
    ("the rule, positions' lr x sqrt(w)", 4, "concat", (100, 101), {"pos_lr_scale": 11.66}),
    ("the rule, positions' lr x sqrt(w)", 8, "concat", (100,), {"pos_lr_scale": 16.49}),
    ("alpha x 0.6 (8x's trained pressure)", 1, "concat", (100, 101), {"alpha": CHOSEN["concat"]["alpha"] * 0.6}),
    ("alpha x 0.6 (8x's trained pressure)", 1, "mix", (100, 101), {"alpha": CHOSEN["mix"]["alpha"] * 0.6}),
    ("beta x 0.5 (8x's contracted sheets)", 1, "concat", (100, 101), {"beta": CHOSEN["concat"]["beta"] * 0.5}),
    ("output positions' lr / 4 (8x's late output sheet)", 1, "concat", (100, 101), {"output_pos_lr_scale": 0.25}),
    ("output positions' lr / 4 (8x's late output sheet)", 1, "mix", (100, 101), {"output_pos_lr_scale": 0.25}),
)


def probe_config(width: int, mode: str, seed: int, overrides: dict) -> TrainConfig:
    return TrainConfig(hidden=[h * width for h in PAPER_HIDDEN], mode=mode, seed=seed, eval_split="val",
                       epochs=40 if width == 1 else 30, **overrides).validate()


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def _arguments(p) -> None:
    p.add_argument("--runs-dir", default="runs/width-probes")
    p.add_argument("--out", default="results/width-probes")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--only", default=None,
                   help="train and read only the runs whose names match these comma-separated globs "
                        "(e.g. '1x-*alpha*'); the record keeps what it held of the others")


@register_study("width-probes", question="What makes the picture form late at 4x and 8x: the weights' clock or the "
                                         "positions' jitter (each imposed at 1x, or its 1x value imposed wider)?",
                outputs=("width-probes.md", "width-probes.json"), arguments=_arguments)
def run(args) -> None:
    runs_dir, out = Path(args.runs_dir), Path(args.out)
    only = [g for g in (args.only or "").split(",") if g]
    held = {}
    if only and out.with_suffix(".json").is_file():
        held = {(r["probe"], r["width"], r["mode"], r["seed"]): r
                for r in json.loads(out.with_suffix(".json").read_text())["records"]}
    jobs, runs = [], []
    for name, w, mode, seeds, over in PROBES:
        for seed in seeds:
            d = runs_dir / f"{w}x-{mode}-{_slug(name)}-seed{seed}"
            if only and not any(fnmatch.fnmatchcase(d.name, g) for g in only):
                runs.append((name, w, mode, seed, None))
                continue
            jobs.append((probe_config(w, mode, seed, over).to_dict(), str(d), args.data_dir, "cpu"))
            runs.append((name, w, mode, seed, d))
    if only and not jobs:
        raise ValueError(f"--only {args.only!r} matches no run (names: <width>x-<mode>-<probe>-seed<seed>)")
    run_jobs(jobs, args.workers, lambda *a: None)
    records = []
    for name, w, mode, seed, d in runs:
        if d is None:
            if (name, w, mode, seed) in held:
                records.append(held[(name, w, mode, seed)])
            continue
        pic = picture_trajectory(d)
        epochs = [r["epoch"] for r in pic]
        records.append({"probe": name, "width": w, "mode": mode, "seed": seed, "picture": pic,
                        "time_to_form": time_to_form(epochs, [r["silhouette"] for r in pic])})
    lines = ["# What makes the picture form late at 4x and 8x: the cheap tests", "",
             "Each probe a `spatialnet train` run (validation split, selection seeds; 40 epochs at 1x, 30 wider); "
             "silhouette / band / output silhouette with the run's final split, at epochs 5, 10, 20 and the last; "
             "time to form: the epoch by which the silhouette has made 90 % of its change.", "",
             "| width | mode | probe | seed | e5 | e10 | e20 | end | time to form |", "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        at = {p["epoch"]: p for p in r["picture"]}
        cell = lambda p: f"{p['silhouette']:.2f} / {p['band']:.2f} / {p['out_silhouette']:.2f}"  # noqa: E731
        lines.append(f"| {r['width']}x | {r['mode']} | {r['probe']} | {r['seed']} | {cell(at[5])} | {cell(at[10])} | "
                     f"{cell(at[20])} | {cell(r['picture'][-1])} | {r['time_to_form']} |")
    # the record holds every probe: what remakes it is the study without --only
    rerun = re.sub(r" --only(=| )('[^']*'|\S+)", "", args.rerun)
    lines += ["", f"Machine: {machine(args.workers, 1, 'cpu')}.", "", f"Rerun: `{rerun}`", ""]
    write_json(out.with_suffix(".json"), {"records": records, "probes": [list(p[:4]) + [p[4]] for p in PROBES]})
    write_text(out.with_suffix(".md"), "\n".join(lines))
    print("\n".join(lines))
