"""A sweep's report: the best trials (feasible by margin, or lowest drops), the Pareto front and its
plot, as markdown, JSON and PNG."""
from __future__ import annotations

from pathlib import Path

from ..._io import atomic, write_json, write_text
from ...analysis.evaluate import READOUT
from ...analysis.stats import mean
from .constraints import OBJECTIVES, constraint_margin, parse_constraints


def trial_rows(study) -> list[dict]:
    """One row per complete trial: its number, objectives, drop std, parameters, per-seed numbers
    (``per_mode[mode][key]``: a list over seeds; ``per_seed``: the same for a one-mode study) and
    the constraints' smallest margin (overall, and per mode: ``mode_margin``)."""
    from optuna.trial import TrialState

    constraints = parse_constraints(study.user_attrs.get("constraints", []), study.user_attrs.get("modes") or
                                    [study.user_attrs.get("fixed", {}).get("mode", "concat")])
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        per_mode = t.user_attrs.get("per_mode")
        if per_mode is None:  # made before studies had several modes: one mode, flat lists
            mode = study.user_attrs.get("fixed", {}).get("mode", "concat")
            n = len(t.user_attrs.get("full") or [])
            per_mode = {mode: [{k: (t.user_attrs.get(k) or [None] * n)[i] for k in READOUT} for i in range(n)]}
        lists = {m: {k: [r.get(k) for r in rs] for k in READOUT} for m, rs in per_mode.items()}
        rows.append({"number": t.number, "full": t.values[0], "drop": t.values[1], "values": list(t.values),
                     "drop_std": t.user_attrs.get("drop_std"), "params": dict(t.params),
                     "per_seed": next(iter(lists.values())) if len(lists) == 1 else None, "per_mode": lists,
                     "margin": constraint_margin(per_mode, constraints),
                     "mode_margin": {m: constraint_margin(per_mode, constraints, [m]) for m in per_mode},
                     "group_margin": {",".join(g): constraint_margin(per_mode, constraints, list(g))
                                      for g in _groups(list(per_mode))}})
    return rows


def pareto(rows: list[dict]) -> list[dict]:
    """Trials no other trial beats on both full (higher) and drop (lower), by full."""
    front = [r for r in rows if not any(o["full"] >= r["full"] and o["drop"] <= r["drop"] and
                                        (o["full"] > r["full"] or o["drop"] < r["drop"]) for o in rows)]
    return sorted(front, key=lambda r: -r["full"])


def _groups(modes: list[str]) -> list[tuple[str, ...]]:
    """The groups of all modes but one (when there are three or more): where one setting might
    serve several modes though not every one."""
    import itertools
    return list(itertools.combinations(modes, len(modes) - 1)) if len(modes) >= 3 else []


def _feasible(row: dict) -> bool:
    return row["margin"] is not None and row["margin"] >= 0


REPORT_KEYS = ("full", "drop", "silhouette", "ari", "nn", "stacked", "band", "out_silhouette", "share_norm",
               "dead_fraction")


def write_report(study, out_md, out_png=None, *, min_full: float = 0.91, title: str = "", rerun: str = "") -> list[dict]:
    """Writes the best trials, the Pareto front and (when ``out_png``) its plot; returns the rows.

    With constraints, the best trials are the feasible ones (every constraint met by the worst
    seed of every mode) by their smallest relative margin, and for each mode the trials feasible
    in that mode alone; without, the lowest drops with full >= ``min_full``."""
    rows = trial_rows(study)
    front = pareto(rows)
    modes = list(rows[0]["per_mode"]) if rows else list(study.user_attrs.get("modes") or [])
    objectives = study.user_attrs.get("objectives", list(OBJECTIVES))
    constraints = study.user_attrs.get("constraints", [])

    def fmt(v, spec=".3f"):
        return "–" if v is None else f"{v:{spec}}"

    def line(r):
        p = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(r["params"].items()))
        cells = [fmt(v) for v in r["values"]] + ([fmt(r["margin"], "+.3f")] if constraints else [])
        for m in modes:
            cells += [fmt(mean(r["per_mode"][m].get(k))) for k in REPORT_KEYS]
        return f"| {r['number']} | " + " | ".join(cells) + f" | {p} |"

    head_cells = list(objectives) + (["margin"] if constraints else [])
    for m in modes:
        head_cells += [f"{m[:3]} {k}" for k in REPORT_KEYS]
    head = ["| trial | " + " | ".join(head_cells) + " | parameters |", "|---|" + "---|" * (len(head_cells) + 1)]
    md = [f"# Sweep {study.study_name}" + (f": {title}" if title else ""), "",
          f"{len(rows)} complete trials in {', '.join(modes)}, each read on the validation split on seeds "
          f"{study.user_attrs.get('seeds')}; objectives ({', '.join(objectives)}) are the means over the modes of "
          f"the means over the seeds, the per-mode columns the means over the seeds. "
          f"Search space: `{' '.join(study.user_attrs.get('space', {}).values())}`."]
    if constraints:
        md += ["", f"Constraints, met by the worst seed of each mode: `{' '.join(constraints)}`. margin: the "
               "smallest of (limit − value) / |limit| over them (≥ 0: every one met).", "",
               "## Feasible trials by margin", "", *head,
               *map(line, sorted((r for r in rows if _feasible(r)), key=lambda r: -r["margin"])[:10])]
        for g in _groups(modes):
            key = ",".join(g)
            best = sorted(rows, key=lambda r: -(r["group_margin"][key] if r["group_margin"][key] is not None else -9))[:5]
            md += ["", f"## {' and '.join(g)}: the best margins on their constraints", "",
                   *[f"- trial {r['number']}: margin {r['group_margin'][key]:+.3f}" for r in best]]
        for m in modes:
            best = sorted(rows, key=lambda r: -(r["mode_margin"][m] if r["mode_margin"][m] is not None else -9))[:5]
            md += ["", f"## {m}: the best margins on its own constraints", "", *head, *map(line, best)]
    else:
        ok = sorted((r for r in rows if r["full"] >= min_full), key=lambda r: r["drop"])
        md += ["", f"## Lowest drops with full accuracy ≥ {min_full}", "", *head, *map(line, ok[:10])]
    md += ["", "## Pareto front (full accuracy against drop)", "", *head, *map(line, front), ""]
    if rerun:
        md += [f"Rerun (each worker; add `--resume` to join): `{rerun}`", ""]
    write_text(out_md, "\n".join(md))
    write_json(Path(out_md).with_suffix(".json"), {"study": study.study_name, "space": study.user_attrs.get("space"),
                                                   "fixed": study.user_attrs.get("fixed"), "modes": modes,
                                                   "objectives": objectives, "constraints": constraints,
                                                   "trials": rows})
    if out_png and rows:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8))
        feas = [r for r in rows if constraints and _feasible(r)]
        ax.scatter([r["drop"] for r in rows], [r["full"] for r in rows], s=18, c="0.6", label="trial")
        if feas:
            ax.scatter([r["drop"] for r in feas], [r["full"] for r in feas], s=30, c="tab:green",
                       label="meets every constraint")
        ax.plot([r["drop"] for r in front], [r["full"] for r in front], "o-", c="tab:red", ms=5, label="Pareto front")
        ax.axhline(min_full, ls=":", c="k", lw=0.8)
        ax.set_xlabel("drop after the split (mean over modes and seeds)")
        ax.set_ylabel("full accuracy (mean over modes and seeds)")
        ax.set_title(title or f"sweep {study.study_name}")
        ax.legend()
        # the clusters against the crowding, per mode: the trade the targets sit on
        for m, marker in zip(modes, "osD^v"):
            pts = [(mean(r["per_mode"][m].get("nn")), mean(r["per_mode"][m].get("silhouette"))) for r in rows]
            pts = [(x, y) for x, y in pts if x is not None and y is not None]
            bx.scatter([x for x, _ in pts], [y for _, y in pts], s=20, marker=marker, alpha=0.75, label=m)
        bx.axvline(0.4, ls=":", c="k", lw=0.8)
        bx.axhline(0.5, ls=":", c="k", lw=0.8)
        bx.set_xscale("symlog", linthresh=0.01)
        bx.set_xlim(left=0)
        bx.set_xlabel("nearest live neighbour, in the density's length (mean over seeds; target >= 0.4)")
        bx.set_ylabel("silhouette (mean over seeds; target >= 0.5)")
        bx.set_title("clusters against crowding, per trial and mode")
        bx.legend()
        fig.tight_layout()
        atomic(out_png, lambda f: fig.savefig(f, dpi=130, format="png"))
        plt.close(fig)
    return rows
