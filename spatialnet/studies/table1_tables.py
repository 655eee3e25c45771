"""Table 1's record as tables: the summary over seeds, the accuracy after every split, the matching
of the L1 control, the paired differences against it, the modularity and the targets."""
from __future__ import annotations

import statistics

from ..analysis.evaluate import READOUT, TARGETS, target_gap
from ..analysis.stats import ci95
from ..data import MODES

MEASURES = tuple(k for k in READOUT if k not in ("full", "split", "drop"))
# the drops the tables show: (read-out key, the split, how the other task's neurons are disabled)
DROPS = (("drop", "greedy", "outputs zeroed"), ("drop_greedy_inputs", "greedy", "inputs zeroed"),
         ("drop_balanced", "balanced", "outputs zeroed"), ("drop_balanced_inputs", "balanced", "inputs zeroed"),
         ("drop_mean", "mean", "outputs zeroed"))
PAPER = {  # Table 1: (mean, std) of full, split, drop
    "concat": {"regular": ((.92, .04), (.80, .13), (.11, .15)), "spatial": ((.92, .04), (.92, .04), (.00, .00))},
    "mix": {"regular": ((.88, .04), (.70, .17), (.19, .20)), "spatial": ((.89, .04), (.89, .03), (.00, .00))},
    "sequential": {"regular": ((.92, .05), (.33, .20), (.60, .20)), "spatial": ((.92, .05), (.84, .08), (.07, .07))},
}


def summarise(results: dict) -> dict:
    """Per mode and variant: ``(mean, 95 % half-width)`` of every read-out, the seeds, and the
    mean neurons per task in each split layer."""
    out = {}
    for mode, variants in results.items():
        for v, r in variants.items():
            drops = [f - s for f, s in zip(r["full"], r["split"])]
            row = {"full": ci95(r["full"]), "split": ci95(r["split"]), "drop": ci95(drops),
                   "n": len(r["full"]), "seeds": list(r["seeds"])}
            for k in MEASURES:
                row[k] = ci95(r.get(k, []))  # a record from before a measure existed: None
            sizes = {}
            for run in r["split_sizes"]:
                for l, n in run.items():
                    sizes.setdefault(l, []).append(n)
            row["sizes"] = {l: [round(statistics.fmean(c), 1) for c in zip(*ns)] for l, ns in sizes.items()}
            out.setdefault(mode, {})[v] = row
    return out


def paired(results: dict, mode: str, a: str, b: str, key: str):
    """``(mean, 95 % half-width)`` over the seeds both variants ran of ``key``(a) - ``key``(b)."""
    ra, rb = results.get(mode, {}).get(a), results.get(mode, {}).get(b)
    if not ra or not rb:
        return None
    va, vb = dict(zip(ra["seeds"], ra.get(key, []))), dict(zip(rb["seeds"], rb.get(key, [])))
    diffs = [va[s] - vb[s] for s in va if s in vb and va[s] is not None and vb[s] is not None]
    return ci95(diffs)


def _cell(ms, spec=".3f"):
    return "–" if ms is None else f"{ms[0]:{spec}} ± {ms[1]:{spec}}"


def _ratio(s: dict, ref: dict | None, key: str) -> str:
    if ref is None or s.get(key) is None or ref.get(key) is None or not ref[key][0]:
        return "–"
    return f"{s[key][0] / ref[key][0]:.2f}"


def table_markdown(summary: dict, settings: dict) -> str:
    split_name = "test sets" if settings.get("eval_split") == "test" else "validation split"
    variants = settings.get("variants", ["regular", "spatial"])
    results = settings.get("results") or {}
    lines = [f"# Table 1 at {settings.get('width', 1):g}× the paper's width: accuracy before and after splitting "
             "the network, with the controls", "",
             f"Net: {settings['config']['hidden']} hidden. Data: {settings['data']}, read on the **{split_name}** "
             f"(validation: {settings.get('val_size')} training images per dataset held out, "
             f"`spatialnet/data/read.py`). Seeds: {settings['seeds']}. Epochs: {settings['config']['epochs']}. Each "
             "number is the mean ± the half-width of the 95 % t-interval over seeds of the mean over the tasks "
             "(MNIST, Fashion-MNIST); 'paper' is Wołczyk et al. 2019, Table 1 (mean ± std), at 1× only. Variants: "
             f"{settings.get('variant_doc', '')}", "",
             "| mode | net | n | full (ours) | full (paper) | split (ours) | split (paper) | drop (ours) | drop (paper) |",
             "|---|---|---|---|---|---|---|---|---|"]
    paper = PAPER if settings.get("width", 1) == 1 else {}
    for mode in MODES:
        for v in variants:
            s = summary.get(mode, {}).get(v)
            p = paper.get(mode, {}).get(v)
            pc = (lambda i: f"{p[i][0]:.2f} ± {p[i][1]:.2f}") if p else (lambda i: "")
            if s is None:
                if mode in settings.get("modes", MODES):
                    lines.append(f"| {mode} | {v} | 0 | (not run) | {pc(0)} | | {pc(1)} | | {pc(2)} |")
                continue
            lines.append(f"| {mode} | {v} | {s['n']} | {_cell(s['full'])} | {pc(0)} | {_cell(s['split'])} | "
                         f"{pc(1)} | {_cell(s['drop'])} | {pc(2)} |")
    lines += ["", "The drop on every split (`spatialnet/analysis/task_split.py`): the paper's greedy split, which "
              "a net without modules can collapse (a layer given whole to one task); the balanced split, each "
              "task an equal share of each layer's live neurons, those that send it the most; the greedy split on "
              "strengths averaged over each task's neurons (mean). The other task's neurons disabled by zeroing "
              "their outputs (this project's read-out) or their incoming weights (the authors' code: a sigmoid "
              "unit still sends σ(b)).", "",
              "| mode | net | " + " | ".join(f"drop: {sp}, {d}" for _, sp, d in DROPS) + " |",
              "|---|---|" + "---|" * len(DROPS)]
    for mode in MODES:
        for v in variants:
            s = summary.get(mode, {}).get(v)
            if s is not None:
                lines.append(f"| {mode} | {v} | " + " | ".join(_cell(s.get(k)) for k, _, _ in DROPS) + " |")
    others = [v for v in variants if v != "spatial"]
    lines += ["", "Each control's drop against the spatial net's, paired by seed (spatial − control; "
              "mean ± 95 % half-width; negative: the spatial net loses less), and what the control is matched "
              "in: its dead fraction and Σ|w| (the weights into the split layers) over the spatial net's.", "",
              "| mode | control | " + " | ".join(f"Δ drop: {sp}, {d}" for _, sp, d in DROPS)
              + " | dead / spatial's | Σ|w| / spatial's |", "|---|---|" + "---|" * (len(DROPS) + 2)]
    for mode in MODES:
        ref = summary.get(mode, {}).get("spatial")
        for v in others:
            s = summary.get(mode, {}).get(v)
            if s is None or ref is None:
                continue
            diffs = []
            for k, _, _ in DROPS:
                if k == "drop":
                    full_split = {x: {"seeds": results[mode][x]["seeds"],
                                      "drop": [f - sp for f, sp in zip(results[mode][x]["full"],
                                                                       results[mode][x]["split"])]}
                                  for x in ("spatial", v)}
                    diffs.append(paired({mode: full_split}, mode, "spatial", v, "drop"))
                else:
                    diffs.append(paired(results, mode, "spatial", v, k))
            lines.append(f"| {mode} | {v} | " + " | ".join(_cell(d) for d in diffs)
                         + f" | {_ratio(s, ref, 'dead_fraction')} | {_ratio(s, ref, 'abs_w')} |")
    lines += ["", "Modularity of the greedy split (`spatialnet/analysis/modularity.py`, docs/measures.md): "
              "silhouette of the live neurons' positions by task and ARI of k-means (k = M) against the tasks, "
              "means over the hidden split layers, each beside its label-permutation null; the cross-task share "
              "of Σ|w| over its expectation under random relabelling with the same group sizes (1 = chance, 0 = "
              "disjoint); Newman's Q of the |W| graph under the split; dead neurons as a fraction of the hidden "
              "split layers, and the change of full accuracy when only they are silenced (Δ; above 0.002 they "
              "are not dead); Σ|w| of the weights into the split layers; crowding, in the density's length unit: "
              "nn, the median distance from a live neuron to the nearest live one of its layer (null: as many "
              "points uniform over the layer's hull), stacked, the fraction within 0.1 of another, on next, the "
              "fraction within 0.1 of a live neuron of the next layer; the territories: purity, the largest piece "
              "of each task, the band between the tasks (1: none), the output sheet's silhouette by task; "
              "neurons per task in each split layer under the greedy split (mean over seeds).", "",
              "| mode | net | silhouette | (null) | ARI | (null) | nn | (null) | stacked | on next | share / chance "
              "| share | Newman Q | dead | dead Δ | Σ|w| | purity | territory | band | output silhouette | "
              "neurons per task |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
              "---|---|"]
    for mode in MODES:
        for v in variants:
            s = summary.get(mode, {}).get(v)
            if s is None:
                continue
            sizes = "; ".join(f"{l}: {'/'.join(f'{x:g}' for x in n)}" for l, n in s["sizes"].items())
            lines.append(f"| {mode} | {v} | {_cell(s['silhouette'])} | {_cell(s['silhouette_null'])} | "
                         f"{_cell(s['ari'])} | {_cell(s['ari_null'])} | {_cell(s.get('nn'))} | "
                         f"{_cell(s.get('nn_null'))} | {_cell(s.get('stacked'), '.2f')} | {_cell(s.get('on_next'), '.2f')} | "
                         f"{_cell(s['share_norm'])} | "
                         f"{_cell(s['cross_task_share'])} | {_cell(s['newman_q'])} | {_cell(s['dead_fraction'], '.2f')} | "
                         f"{_cell(s['dead_delta'], '.4f')} | {_cell(s.get('abs_w'), '.0f')} | {_cell(s.get('purity'), '.2f')} | "
                         f"{_cell(s.get('territory'), '.2f')} | {_cell(s.get('band'), '.2f')} | "
                         f"{_cell(s.get('out_silhouette'), '.2f')} | {sizes} |")
    lines += targets_markdown(summary, settings.get("results"))
    if settings.get("planned"):
        lines += ["", "Planned but not run to the end (not in the tables): "
                  + ", ".join(f"`{p}`" for p in settings["planned"]) + "."]
    lines += ["", f"Wall time of the last invocation: {settings.get('wall_seconds', 0):.0f} s on "
              f"{settings['machine']} (runs finished before it are read back).", "",
              f"Rerun: `{settings['rerun']}`", ""]
    return "\n".join(lines)


def targets(mode: str, s: dict, runs: dict | None) -> list[tuple[str, bool]]:
    """The spatial net's targets in ``mode`` (``evaluate.TARGETS``) as ``(what, met)``: met when
    every seed meets it (``runs``: the per-seed lists), else by the mean (``s``: the summary)."""
    out = []
    for key, op, limit in TARGETS.get(mode, ()):
        if runs is None:
            seeds = []
        elif key == "drop":
            seeds = [f - sp for f, sp in zip(runs["full"], runs["split"])]
        else:
            seeds = list(runs.get(key, []))
        mean = None if s.get(key) is None else s[key][0]
        values = seeds or [mean]
        met = all(target_gap(v, op, limit) <= 0 for v in values)
        shown = ", ".join("–" if v is None else f"{v:.3f}" for v in values)
        out.append((f"{key} {'≤' if op == '<=' else '≥'} {limit:g} ({'every seed: ' if seeds else 'mean '}{shown})", met))
    return out


def targets_markdown(summary: dict, results: dict | None) -> list[str]:
    lines = []
    for mode in MODES:
        s = summary.get(mode, {}).get("spatial")
        if s is None:
            continue
        if not lines:
            lines = ["", "The spatial net's targets (`evaluate.TARGETS`; met only where every seed meets them):", ""]
        runs = (results or {}).get(mode, {}).get("spatial")
        lines.append(f"- {mode}: " + "; ".join(f"{w}: {'met' if m else '**NOT met**'}" for w, m in targets(mode, s, runs)))
    return lines
