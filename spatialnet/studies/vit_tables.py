"""Markdown tables of the ViT study's record (``vit_modules.py``): per run, and per net and block
over the seeds."""
from __future__ import annotations

from ..analysis.stats import mean, present


def f(x, d=3):
    return "–" if x is None else f"{x:.{d}f}"


def timing(t: dict) -> str:
    return (f"| step without costs | step with costs | added | costs alone (fwd+bwd) | pairs |\n|---|---|---|---|---|\n"
            f"| {t['plain'] * 1e3:.1f} ms | {t['spatial'] * 1e3:.1f} ms | {100 * t['added_share']:+.1f} % | "
            f"{t['costs_only'] * 1e3:.1f} ms | {t['pairs']} |")


def vit(d: dict) -> str:
    out = []
    out.append("| net | seed | MNIST | Fashion | MNIST, MLP split | Fashion, MLP split | train s |\n|---|---|---|---|---|---|---|")
    for r in d["runs"]:
        a, s = r["accuracy"], r["mlp_split_accuracy"]
        out.append(f"| {r['variant']} | {r['seed']} | {a[0]:.4f} | {a[1]:.4f} | {s[0]:.4f} | {s[1]:.4f} | "
                   f"{r['train_seconds']:.0f} |")
    out.append("")
    out.append("| net | seed | block | hidden per task (dead) | share fc2 (chance) | share/chance | Newman Q | "
               "silhouette (null) | ARI (null) |\n|---|---|---|---|---|---|---|---|---|")
    for r in d["runs"]:
        for b, m in enumerate(r["blocks"]):
            h, res = m["per_layer"]["hidden"], m["per_layer"]["residual"]
            out.append(f"| {r['variant']} | {r['seed']} | {b} | {h['sizes'][0]}/{h['sizes'][1]} ({h['dead']}) | "
                       f"{f(res.get('share_in'))} ({f(res.get('share_in_chance'))}) | "
                       f"{f(res['share_in'] / res['share_in_chance'] if res.get('share_in') is not None and res.get('share_in_chance') else None)} | "
                       f"{f(m.get('newman_q'))} | {f(h.get('silhouette'))} ({f(h.get('silhouette_null'))}) | "
                       f"{f(h.get('ari'))} ({f(h.get('ari_null'))}) |")
    for r in d["runs"]:
        if "step_timing" in r:
            out.append(f"\nStep timing, {r['variant']} net, seed {r['seed']}:\n\n" + timing(r["step_timing"]))
    return "\n".join(out)


def _ratio(res):
    if res.get("share_in") is None or not res.get("share_in_chance"):
        return None
    return res["share_in"] / res["share_in_chance"]


def _mean_range(xs, d=3) -> str:
    xs = present(xs)
    if not xs:
        return "–"
    m = mean(xs)
    return f"{m:.{d}f}" if len(xs) == 1 else f"{m:.{d}f} ({min(xs):.{d}f}–{max(xs):.{d}f})"


def vit_summary(d: dict) -> str:
    """Per net and block, the mean over seeds (and the range): the question's table."""
    seeds = sorted({r["seed"] for r in d["runs"]})
    out = [f"Mean over seeds {', '.join(map(str, seeds))} (min–max in brackets):", "",
           "| net | block | MNIST / Fashion hidden | dead | share/chance | Newman Q | silhouette | its null | ARI |",
           "|---|---|---|---|---|---|---|---|---|"]
    for variant in dict.fromkeys(r["variant"] for r in d["runs"]):
        runs = [r for r in d["runs"] if r["variant"] == variant]
        for b in range(len(runs[0]["blocks"])):
            hs = [r["blocks"][b]["per_layer"]["hidden"] for r in runs]
            res = [r["blocks"][b]["per_layer"]["residual"] for r in runs]
            sizes = "; ".join(f"{h['sizes'][0]}/{h['sizes'][1]}" for h in hs)
            out.append(f"| {variant} | {b} | {sizes} | {_mean_range([h['dead'] for h in hs], 0)} | "
                       f"{_mean_range([_ratio(x) for x in res])} | "
                       f"{_mean_range([r['blocks'][b].get('newman_q') for r in runs])} | "
                       f"{_mean_range([h.get('silhouette') for h in hs])} | "
                       f"{_mean_range([h.get('silhouette_null') for h in hs])} | "
                       f"{_mean_range([h.get('ari') for h in hs])} |")
    out += ["", "| net | MNIST | Fashion | MNIST, MLP split | Fashion, MLP split |", "|---|---|---|---|---|"]
    for variant in dict.fromkeys(r["variant"] for r in d["runs"]):
        runs = [r for r in d["runs"] if r["variant"] == variant]
        cells = [_mean_range([r[k][t] for r in runs], 4) for k in ("accuracy", "mlp_split_accuracy") for t in (0, 1)]
        out.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(out)
