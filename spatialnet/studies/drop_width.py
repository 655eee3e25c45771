"""The split's drop against width, read from the records: Table 1 at each width
(``results/table1.json``, ``results/table1-<w>x.json``: every net, every split) and the width
study (``results/wide.json``: the spatial net and the regular net, the greedy split only, which
is all its read-out had). Trains nothing.

    spatialnet study drop-width      # results/drop-width.{md,json,png}

Each point is one seed's drop (full - split accuracy, the mean over the tasks); the lines join
the means per width. Where a Table 1 record holds a mode's net at a width, its runs are used and
the width study's are not (the same net read twice would count twice); a record that holds only
some of them (a study run in parts) leaves the rest to the width study.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from .._io import atomic, write_json, write_text
from ..analysis.stats import ci95
from .registry import register_study

NETS = ("spatial", "regular", "l1-matched", "frozen")
SPLITS = (("drop", "greedy split"), ("drop_balanced", "balanced split"))
MODES = ("concat", "mix", "sequential")
PAPER_HIDDEN_SUM = 640  # 128 + 128 + 128 + 256


def _width(hidden) -> int:
    return round(sum(hidden) / PAPER_HIDDEN_SUM)


def collect(results_dir: Path) -> dict:
    """``{(mode, net, split key): {width: {seed: drop}}}`` and, per ``(mode, net, width)``, the
    record its runs came from."""
    points: dict = {}
    source: dict = {}
    for path in sorted(results_dir.glob("table1*.json")):
        rec = json.loads(path.read_text())
        w = rec["settings"].get("width") or _width(rec["settings"]["config"]["hidden"])
        for mode, variants in rec["results"].items():
            for net, r in variants.items():
                if not r["seeds"]:
                    continue
                source[(mode, net, w)] = path.name
                for key, _ in SPLITS:
                    values = ([f - s for f, s in zip(r["full"], r["split"])] if key == "drop" else r.get(key, []))
                    for seed, v in zip(r["seeds"], values):
                        if v is not None:
                            points.setdefault((mode, net, key), {}).setdefault(w, {})[seed] = v
    wide = results_dir / "wide.json"
    if wide.is_file():
        for r in json.loads(wide.read_text())["records"]:
            w = _width(r["hidden"])
            if source.setdefault((r["mode"], r["net"], w), "wide.json") != "wide.json":
                continue
            points.setdefault((r["mode"], r["net"], "drop"), {}).setdefault(w, {})[r["seed"]] = r["drop"]
    return {"points": points, "source": source}


def table(data: dict) -> list[dict]:
    rows = []
    for (mode, net, key), by_w in sorted(data["points"].items()):
        for w, seeds in sorted(by_w.items()):
            ms = ci95(list(seeds.values()))
            rows.append({"mode": mode, "net": net, "split": dict(SPLITS)[key], "width": w, "n": len(seeds),
                         "seeds": sorted(seeds), "mean": ms[0], "ci95": ms[1],
                         "source": data["source"][(mode, net, w)]})
    return rows


def draw(data: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in MODES if any(k[0] == m for k in data["points"])]
    fig, axes = plt.subplots(1, len(modes), figsize=(4.6 * len(modes), 3.8), squeeze=False)
    colours = dict(zip(NETS, ("tab:blue", "tab:red", "tab:green", "tab:grey")))
    for ax, mode in zip(axes[0], modes):
        for net in NETS:
            for key, label in SPLITS:
                by_w = data["points"].get((mode, net, key))
                if not by_w:
                    continue
                ws = sorted(by_w)
                style = "-" if key == "drop" else "--"
                ax.plot(ws, [statistics.fmean(by_w[w].values()) for w in ws], style, color=colours[net],
                        marker="o" if key == "drop" else "s", ms=3, label=f"{net}, {label}")
                for w in ws:
                    ax.scatter([w] * len(by_w[w]), list(by_w[w].values()), s=8, color=colours[net], alpha=0.4)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("width (× the paper's)")
        ax.set_title(mode)
        ax.axhline(0, color="k", lw=0.5)
    axes[0][0].set_ylabel("accuracy lost by the split")
    axes[0][-1].legend(fontsize=7, loc="upper left")
    fig.suptitle("The split's drop against width (points: seeds; solid: greedy split, dashed: balanced)", fontsize=9)
    fig.tight_layout()
    atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def _arguments(p) -> None:
    p.add_argument("--results", default="results", help="where the Table 1 records and wide.json are")
    p.add_argument("--out", default="results/drop-width")


@register_study("drop-width", question="How does the split's drop grow with width, per net and split? (reads the "
                                       "Table 1 records and the width study, trains nothing)",
                outputs=("drop-width.md", "drop-width.json", "drop-width.png"), arguments=_arguments)
def run(args) -> None:
    data = collect(Path(args.results))
    if not data["points"]:
        raise ValueError(f"--results {args.results}: no table1*.json or wide.json there")
    rows = table(data)
    out = Path(args.out)
    write_json(out.with_suffix(".json"), {"rows": rows})
    draw(data, out.with_suffix(".png"))
    lines = ["# The split's drop against width", "", "Test sets. Mean ± the 95 % half-width over the seeds (n); "
             "each net's runs at a width from one record (source). The width study's records hold the greedy split "
             "only.", "", f"![drop against width]({out.with_suffix('.png').name})", "",
             "| mode | net | split | width | n | drop | source |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['net']} | {r['split']} | {r['width']}× | {r['n']} | {r['mean']:.3f} ± "
              f"{r['ci95']:.3f} | {r['source']} |" for r in rows]
    lines += ["", f"Rerun: `{args.rerun}`", ""]
    write_text(out.with_suffix(".md"), "\n".join(lines))
    print("\n".join(lines))
