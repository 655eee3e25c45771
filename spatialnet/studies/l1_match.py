"""The sparsity-matched L1 control's strength: at which transport weight does the L1-only net
(every distance replaced by the layer's mean) have the spatial net's dead fraction?

    spatialnet study l1-match     # per mode: the spatial net and the L1 net at FACTORS, seeds 100-101

Chosen on the validation split with selection seeds (100, 101), never on the report seeds. The
L1 net's alpha is ``factor`` times the spatial net's (``config.CHOSEN``); per mode, the chosen
factor is the one whose dead fraction (mean over the seeds) is nearest the spatial net's,
relative to it; the record says whether it lands within ``TOLERANCE`` (10 %) and how Σ|w| of the
weights into the split layers compares, which one strength cannot match at the same time. The
chosen factors go into ``table1.L1_MATCHED`` by hand, so that the report runs cannot move them.
Writes ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from .._io import write_json, write_text
from ..config import TrainConfig
from ..data import MODES
from ..flags import int_list, str_list
from .registry import register_study
from .runs import machine, run_jobs

FACTORS = {"concat": (0.03, 0.06, 0.12, 0.25, 0.45), "mix": (0.03, 0.06, 0.075, 0.12, 0.25), "sequential": (1.0, 2.0, 4.0)}
TOLERANCE = 0.10
KEYS = ("full", "drop", "drop_balanced", "dead_fraction", "abs_w", "share_norm")


def _factors(s: str) -> dict:
    out = {}
    for part in s.split(";"):
        mode, _, values = part.partition("=")
        if mode.strip() not in MODES or not values:
            raise ValueError(f"--factors: 'mode=f1,f2;...' with modes of {MODES}, got {s!r}")
        try:
            out[mode.strip()] = tuple(float(v) for v in values.split(",") if v.strip())
        except ValueError:
            raise ValueError(f"--factors: factors must be numbers, got {values!r}") from None
    return out


def _arguments(p) -> None:
    p.add_argument("--seeds", type=int_list("--seeds"), default=[100, 101])
    p.add_argument("--modes", type=str_list, default=list(MODES))
    p.add_argument("--factors", type=_factors, default=None,
                   help="per mode, the L1 net's alpha over the spatial net's: 'concat=0.1,0.2;sequential=2,4' "
                        f"(default {';'.join(f'{m}=' + ','.join(f'{f:g}' for f in v) for m, v in FACTORS.items())})")
    p.add_argument("--hidden", type=int_list("--hidden"), default=[128, 128, 128, 256])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--data", default="full", help="full, subset or auto (TrainConfig.data)")
    p.add_argument("--max-train", type=int, default=0, help="training images per dataset (0: all; probes)")
    p.add_argument("--runs-dir", default="runs/l1-match")
    p.add_argument("--out", default="results/l1-match")
    p.add_argument("--workers", type=int, default=2)


def _ratio(x: float, ref: float) -> float | None:
    return x / ref if ref else (1.0 if x == 0 else None)


def choose(spatial: list[dict], by_factor: dict[float, list[dict]]) -> dict:
    """The factor whose mean dead fraction is nearest the spatial net's, with both matched
    quantities' ratios to the spatial net's and whether each is within ``TOLERANCE``."""
    mean = lambda rs, k: statistics.fmean(r[k] for r in rs)  # noqa: E731
    dead, abs_w = mean(spatial, "dead_fraction"), mean(spatial, "abs_w")
    rows = {f: {"dead": mean(rs, "dead_fraction"), "dead_ratio": _ratio(mean(rs, "dead_fraction"), dead),
                "abs_w_ratio": _ratio(mean(rs, "abs_w"), abs_w)} for f, rs in by_factor.items()}
    best = min(rows, key=lambda f: abs(rows[f]["dead"] - dead))
    within = lambda r: r is not None and abs(r - 1) <= TOLERANCE  # noqa: E731
    return {"factor": best, **rows[best], "dead_within": within(rows[best]["dead_ratio"]),
            "abs_w_within": within(rows[best]["abs_w_ratio"]), "rows": rows}


@register_study("l1-match", question="At which strength does the L1-only control have the spatial net's dead "
                                     "fraction (validation, selection seeds)?",
                outputs=("l1-match.md", "l1-match.json"), arguments=_arguments)
def run(args) -> None:
    if min(args.seeds) < 100:
        raise ValueError(f"--seeds: selection seeds are >= 100, got {args.seeds}")
    factors = {**FACTORS, **(args.factors or {})}
    runs_dir, out = Path(args.runs_dir), Path(args.out)
    jobs = []
    for mode in args.modes:
        for seed in args.seeds:
            cfg = TrainConfig(mode=mode, seed=seed, eval_split="val", hidden=list(args.hidden), epochs=args.epochs,
                              data=args.data, max_train=args.max_train).validate()
            jobs.append((cfg.to_dict(), str(runs_dir / f"{mode}-spatial-seed{seed}"), args.data_dir, "cpu",
                         "spatial"))
            for f in factors[mode]:
                c = cfg.replace(transport="constant", alpha=cfg.alpha * f)
                jobs.append((c.to_dict(), str(runs_dir / f"{mode}-l1x{f:g}-seed{seed}"), args.data_dir, "cpu", f))
    results: dict = {}
    run_jobs(jobs, args.workers, lambda cfg, res, tag: results.setdefault(cfg["mode"], {}).setdefault(
        tag, []).append({"seed": cfg["seed"], **{k: res.get(k) for k in KEYS}}))
    chosen = {m: choose(r["spatial"], {f: r[f] for f in factors[m]}) for m, r in results.items()}
    write_json(out.with_suffix(".json"), {"results": {m: {str(k): v for k, v in r.items()} for m, r in results.items()},
                                          "chosen": {m: {**c, "rows": {str(f): v for f, v in c["rows"].items()}}
                                                     for m, c in chosen.items()},
                                          "seeds": args.seeds, "hidden": args.hidden, "epochs": args.epochs,
                                          "machine": machine(args.workers, 1, "cpu"), "rerun": args.rerun})
    lines = ["# The sparsity-matched L1 control's strength", "",
             f"Validation split, selection seeds {args.seeds}, {args.epochs} epochs, hidden {args.hidden}. The L1 net: "
             "every distance in the transport replaced by the layer's mean, its alpha `factor` times the spatial net's. "
             "Dead: the fraction of the hidden split layers' neurons that the split finds dead; Σ|w|: of the "
             "weights into the split layers. Means over the seeds (each seed in the JSON).", "",
             "| mode | net | dead | Σ\\|w\\| | full | drop (greedy) | drop (balanced) | share / chance |",
             "|---|---|---|---|---|---|---|---|"]
    for mode in args.modes:
        for tag in ["spatial", *factors[mode]]:
            rs = results[mode][tag]
            m = lambda k: statistics.fmean(r[k] for r in rs if r[k] is not None)  # noqa: E731
            name = "spatial" if tag == "spatial" else f"L1 × {tag:g}"
            lines.append(f"| {mode} | {name} | {m('dead_fraction'):.3f} | {m('abs_w'):.0f} | {m('full'):.3f} | "
                         f"{m('drop'):.3f} | {m('drop_balanced'):.3f} | {m('share_norm'):.3f} |")
    lines += ["", f"Chosen (the dead fraction nearest the spatial net's; within {TOLERANCE:.0%} or not):", ""]
    for mode, c in chosen.items():
        fmt = lambda r: "–" if r is None else f"{r:.2f}"  # noqa: E731
        lines.append(f"- {mode}: factor **{c['factor']:g}**: dead {fmt(c['dead_ratio'])} of the spatial net's "
                     f"({'within' if c['dead_within'] else '**not** within'}), Σ|w| {fmt(c['abs_w_ratio'])} "
                     f"({'within' if c['abs_w_within'] else '**not** within'})")
    lines += ["", f"Machine: {machine(args.workers, 1, 'cpu')}.", "", f"Rerun: `{args.rerun}`", ""]
    write_text(out.with_suffix(".md"), "\n".join(lines))
    print("\n".join(lines))
