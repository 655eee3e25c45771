"""Writes results/controls.md from results/controls/prose.md, replacing each line
``{{include DIR}}`` with the generated tables of results/controls/DIR/table1.md, and
``{{include NAME.md}}`` with results/controls/NAME.md (everything after the title line),
``{{seeds DIR}}`` with a per-run table of DIR/table1.json, and ``[[DIR MODE VARIANT KEY]]`` with
that summary's mean, so that no number in the write-up's tables is typed by hand.

    python results/controls/build.py
"""
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEYS = ("full", "drop", "silhouette", "silhouette_null", "ari", "share_norm", "newman_q", "dead_fraction", "dead_delta")


def per_seed(name: str) -> list[str]:
    """One row per run of results/controls/NAME/table1.json."""
    path = HERE / name / "table1.json"
    if not path.is_file():
        return ["", f"({name}: not run)"]
    t = json.loads(path.read_text())
    rows = [f"Per run (`controls/{name}/table1.json`):", "",
            "| mode | variant | seed | " + " | ".join(KEYS) + " | neurons per task (layer 3; 4) |",
            "|---|---|---|" + "---|" * (len(KEYS) + 1)]
    for mode, variants in t["results"].items():
        for v, r in variants.items():
            for i, seed in enumerate(r["seeds"]):
                vals = {k: (r["full"][i] - r["split"][i]) if k == "drop" else r[k][i] for k in KEYS}
                sizes = r["split_sizes"][i]
                cells = ["–" if vals[k] is None else f"{vals[k]:.4f}" if k == "dead_delta" else f"{vals[k]:.3f}"
                         for k in KEYS]
                rows.append(f"| {mode} | {v} | {seed} | " + " | ".join(cells)
                            + f" | {'/'.join(map(str, sizes['3']))}; {'/'.join(map(str, sizes['4']))} |")
    return rows


def values(line: str) -> str:
    """``[[DIR MODE VARIANT KEY]]`` -> the mean over seeds from DIR/table1.json's summary (.3f)."""
    def sub(m):
        d, mode, v, k = m.group(1).split()
        if not (HERE / d / "table1.json").is_file():
            return "(not run)"
        row = json.loads((HERE / d / "table1.json").read_text())["summary"].get(mode, {}).get(v)
        if row is None or row.get(k) is None:
            return "(not run)"
        return f"{row[k][0]:.3f}".replace("-", "−")
    return re.sub(r"\[\[([^\]]+)\]\]", sub, line)


out = []
for line in (HERE / "prose.md").read_text().splitlines():
    line = values(line)
    if line.startswith("{{seeds ") and line.endswith("}}"):
        out += per_seed(line[len("{{seeds "):-2].strip())
    elif line.startswith("{{include ") and line.endswith("}}"):
        name = line[len("{{include "):-2].strip()
        table = HERE / name if name.endswith(".md") else HERE / name / "table1.md"
        body = table.read_text().splitlines()[1:] if table.is_file() else ["", f"({name}: not run)"]
        out += [f"<!-- generated from {table.relative_to(HERE.parent)} -->", *body]
    else:
        out.append(line)
(HERE.parent / "controls.md").write_text("\n".join(out) + "\n")
print(f"wrote {HERE.parent / 'controls.md'}")
