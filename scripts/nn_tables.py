"""Markdown tables from the JSON of scripts/nn_vit_modules.py and scripts/nn_wide_mlp.py.

    python scripts/nn_tables.py results/vit-modules.json results/wide-torchvision-mlp.json
"""
from __future__ import annotations

import json
import sys


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


def mlp(d: dict) -> str:
    out = [timing(d["step_timing"]), ""]
    out.append("| net | MNIST | Fashion | share (chance) | share/chance | Newman Q | silhouette (null) | ARI (null) | dead | train s |\n"
               "|---|---|---|---|---|---|---|---|---|---|")
    for r in d["runs"]:
        m, a = r["measures"], r["accuracy"]
        out.append(f"| {r['variant']} | {a[0]:.4f} | {a[1]:.4f} | {f(m['cross_task_share'])} ({f(m['share_chance'])}) | "
                   f"{f(m['share_norm'])} | {f(m['newman_q'])} | {f(m['silhouette'])} ({f(m['silhouette_null'])}) | "
                   f"{f(m['ari'])} ({f(m['ari_null'])}) | {m['dead']} | {r['train_seconds']:.0f} |")
    return "\n".join(out)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        d = json.load(open(path))
        print(f"## {path}\n")
        print(vit(d) if "runs" in d and d["runs"] and "blocks" in d["runs"][0] else mlp(d))
        print()
