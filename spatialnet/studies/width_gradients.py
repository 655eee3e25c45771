"""How a weight's task gradient scales with width, at initialisation and once trained: the
premise of the width rule's pressure term (``width.py``, docs/width-rule.md).

    spatialnet study width-gradients [--widths 1,2,4,8] [--seed 100] [--workers 2]

Regular nets (no costs, so no L1 kills neurons and confounds the mean) n times the paper's
width train 30 epochs in concat mode at the rule's learning rates (validation split, a selection
seed); for each, the RMS over a layer's weights of the task loss's gradient, averaged over 8
batches of 256, at initialisation and at the end, against the 1x net's. Writes
``results/width-rule-gradients.{md,json}``.
"""
from __future__ import annotations

import itertools
from pathlib import Path

from .._io import write_json, write_text
from ..analysis.invariants import rms_task_gradients
from ..config import TrainConfig
from ..data import load as load_dataset, load_data, task_loss_sum
from ..model import build_model
from .registry import register_study
from .runs import machine, run_jobs

LAYERS = (2, 3, 4, 5)


def layer_gradients(model, cfg: TrainConfig, dataset, batches: int = 8) -> dict[int, float]:
    """RMS of the task loss's gradient over each of ``LAYERS``'s weights, 8 batches of 256."""
    td = load_data(cfg, dataset=dataset)
    return rms_task_gradients(model, {l: model.layer(l).weight for l in LAYERS},
                              itertools.islice(td.epoch_batches(1, 256), batches),
                              lambda m, x, y, task: task_loss_sum(m(x), y, task) / len(x))


def _arguments(ap) -> None:
    ap.add_argument("--widths", default="1,2,4,8")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs-dir", default="runs/width-gradients")
    ap.add_argument("--out", default="results/width-rule-gradients")


@register_study("width-gradients", question="How does a weight's task gradient scale with width, at "
                                            "initialisation and once trained (the width rule's premise)?",
                outputs=("width-rule-gradients.md", "width-rule-gradients.json"), arguments=_arguments)
def run(args) -> None:
    from ..training.checkpoint import model_from_checkpoint

    widths = [int(w) for w in args.widths.split(",")]
    cfgs = {n: TrainConfig(net="regular", mode="concat", seed=args.seed, hidden=[128 * n, 128 * n, 128 * n, 256 * n])
            for n in widths}
    jobs = [(cfg.to_dict(), str(Path(args.runs_dir) / f"{n}x"), args.data_dir, "cpu") for n, cfg in cfgs.items()]
    run_jobs(jobs, args.workers, lambda *a: None)
    ds = load_dataset("full", args.data_dir)
    rows = {}
    for n, cfg in cfgs.items():
        trained, _, _ = model_from_checkpoint(Path(args.runs_dir) / f"{n}x" / "checkpoint.pt")
        rows[n] = {"init": layer_gradients(build_model(cfg), cfg, ds), "trained": layer_gradients(trained, cfg, ds)}
    base = rows[widths[0]]
    lines = ["# How a weight's task gradient scales with width", "",
             f"Regular nets n x the paper's width, concat, 30 epochs at the width rule's learning rates, seed "
             f"{args.seed}, validation split; the RMS of the task loss's gradient over a layer's weights (8 batches "
             f"of 256) against the {widths[0]}x net's, at initialisation and once trained. Layer 5 is the readout, "
             f"3 and 4 hidden-to-hidden, 2 pixels-to-hidden. The rule's pressure term (docs/width-rule.md) "
             f"takes the trained column: 1/n for hidden layers, 1 for the readout.", "",
             "| n | when | " + " | ".join(f"layer {l}" for l in LAYERS) + " | 1/sqrt(n) | 1/n |",
             "|---|---|" + "---|" * (len(LAYERS) + 2)]
    for n, r in rows.items():
        for when in ("init", "trained"):
            cells = " | ".join(f"{r[when][l] / base[when][l]:.3f}" for l in LAYERS)
            lines.append(f"| {n} | {when} | {cells} | {n ** -0.5:.3f} | {1 / n:.3f} |")
    lines += ["", f"Machine: {machine(args.workers, 1, 'cpu')}.", "",
              f"Rerun: `{args.rerun}`", ""]
    write_text(Path(args.out).with_suffix(".md"), "\n".join(lines))
    write_json(Path(args.out).with_suffix(".json"), {"widths": widths, "seed": args.seed,
                                                      "rows": {str(n): r for n, r in rows.items()}})
    print("\n".join(lines))
