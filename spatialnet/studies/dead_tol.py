"""How much each read-out hinges on the dead rule: the same trained runs re-read with the dead
tolerance at several multiples of the layer's 90th percentile (``split.DEAD_TOL`` is 0.1).

``spatialnet study dead-tol RUN... --tols 0.03,0.1,0.3 --out results/x`` writes ``x.json`` (one record
per run and tolerance: every ``evaluate.READOUT`` value) and ``x.md`` (the mean over the runs of
each group, per tolerance), reading each run on the split it names (``--eval-split``)."""
from __future__ import annotations

import statistics
from pathlib import Path

from .._io import write_json, write_text
from ..analysis.evaluate import READOUT, evaluate
from ..data import load_data
from ..training.checkpoint import model_from_checkpoint
from .registry import register_study

DEFAULT_TOLS = (0.03, 0.1, 0.3)
COLUMNS = ("drop", "silhouette", "ari", "share_norm", "newman_q", "dead_fraction", "dead_delta")


def dead_sensitivity(runs, tols=DEFAULT_TOLS, eval_split: str = "val", data_dir=None) -> list[dict]:
    records = []
    for run in runs:
        run = Path(run)
        model, cfg, _ = model_from_checkpoint(run / "checkpoint.pt" if run.is_dir() else run)
        cfg = cfg.replace(eval_split=eval_split)
        td = load_data(cfg, data_dir)
        for tol in tols:
            ev = evaluate(model, cfg, td, dead_tol=tol)
            records.append({"run": str(run), "mode": cfg.mode, "net": cfg.net, "seed": cfg.seed, "dead_tol": tol,
                            "group": f"{run.parent.name}/{run.name.rsplit('-seed', 1)[0]}", **{k: ev[k] for k in READOUT}})
    return records


def sensitivity_markdown(records: list[dict], rerun: str) -> str:
    split = "validation split" if records and "val" in rerun else "test sets"
    lines = ["# Sensitivity of the read-outs to the dead threshold", "",
             f"Each trained run re-read with the dead tolerance at {sorted({r['dead_tol'] for r in records})} x "
             f"the layer's 90th percentile of outgoing Σ|w| (the rule: 0.1); mean over the runs of a group "
             f"(n = runs), read on the {split}.", "",
             "| runs | n | dead tol | " + " | ".join(COLUMNS) + " |", "|---|---|---|" + "---|" * len(COLUMNS)]
    groups: dict = {}
    for r in records:
        groups.setdefault((r["group"], r["dead_tol"]), []).append(r)
    for (g, tol), rs in sorted(groups.items()):
        cells = []
        for k in COLUMNS:
            xs = [r[k] for r in rs if r[k] is not None]
            cells.append(f"{statistics.fmean(xs):.3f}" if xs else "–")
        lines.append(f"| {g} | {len(rs)} | {tol:g} | " + " | ".join(cells) + " |")
    lines += ["", f"Rerun: `{rerun}`", ""]
    return "\n".join(lines)


def run_sensitivity(runs, out, tols=DEFAULT_TOLS, eval_split: str = "val", data_dir=None,
                    rerun: str | None = None) -> list[dict]:
    records = dead_sensitivity(runs, tols, eval_split, data_dir)
    rerun = rerun or (f"spatialnet study dead-tol {' '.join(str(r) for r in runs)} --tols "
                      f"{','.join(map(str, tols))} --eval-split {eval_split} --out {out}")
    out = Path(out)
    write_json(out.with_suffix(".json"), {"records": records, "rerun": rerun})
    write_text(out.with_suffix(".md"), sensitivity_markdown(records, rerun))
    return records


def _arguments(p) -> None:
    p.add_argument("runs", nargs="+", help="run folders (or checkpoints)")
    p.add_argument("--tols", default="0.03,0.1,0.3")
    p.add_argument("--eval-split", choices=("val", "test"), default="val")
    p.add_argument("--out", default="results/dead-tol", help="OUT.md and OUT.json")


@register_study("dead-tol", question="How much does each read-out of trained runs hinge on the dead rule's "
                                     "threshold?", outputs=("OUT.md", "OUT.json"), arguments=_arguments)
def run(args) -> None:
    tols = [float(t) for t in args.tols.split(",") if t.strip()]
    run_sensitivity(args.runs, args.out, tols, args.eval_split, args.data_dir)
    print(Path(args.out).with_suffix(".md").read_text())
