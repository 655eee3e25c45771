"""Silhouette, share / chance and drop every 10 epochs of the 60-epoch runs (does the head offset
only speed the clusters up?), from the runs' metrics.json: writes val-offset-60/trajectory.{md,json}.

    python results/controls/trajectory.py [RUNS_DIR]     # default runs/issue14/val-offset-60
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/issue14/val-offset-60")
rows = []
for d in sorted(runs.iterdir()):
    m = json.loads((d / "metrics.json").read_text())
    c = m["config"]
    variant = "offset-0" if c["head_offset"] == 0 else "spatial"
    for h in m["history"]:
        if h.get("full") is not None:  # an evaluated epoch
            rows.append({"mode": c["mode"], "variant": variant, "seed": c["seed"], "epoch": h["epoch"],
                         "full": h["full"], "drop": h["full"] - h["split"], "silhouette": h["silhouette"],
                         "share_norm": h["share_norm"]})
out = HERE / "val-offset-60"
out.mkdir(exist_ok=True)
(out / "trajectory.json").write_text(json.dumps(rows, indent=1))
epochs = sorted({r["epoch"] for r in rows})
lines = ["# The clusters epoch by epoch (validation split, seeds 100 and 101)", "",
         "Silhouette of the live neurons' positions by task (mean over the hidden split layers), read every 10 "
         "epochs of 60-epoch runs; `spatial`: heads 1.6 apart, `offset-0`: heads together. Last column: share / "
         "chance and drop at epoch 60.", "",
         "| mode | variant | seed | " + " | ".join(f"ep {e}" for e in epochs) + " | share / chance, drop at 60 |",
         "|---|---|---|" + "---|" * (len(epochs) + 1)]
for key in sorted({(r["mode"], r["variant"], r["seed"]) for r in rows}):
    rs = {r["epoch"]: r for r in rows if (r["mode"], r["variant"], r["seed"]) == key}
    last = rs[max(rs)]
    lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(
        f"{rs[e]['silhouette']:.3f}" if e in rs and rs[e]["silhouette"] is not None else "–" for e in epochs)
        + f" | {last['share_norm']:.3f}, {last['drop']:.3f} |")
(out / "trajectory.md").write_text("\n".join(lines) + "\n")
print(f"wrote {out / 'trajectory.md'}")
