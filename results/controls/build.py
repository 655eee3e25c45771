"""Writes results/controls.md from results/controls/prose.md, replacing each line
``{{include DIR}}`` with the generated tables of results/controls/DIR/table1.md, and
``{{include NAME.md}}`` with results/controls/NAME.md (everything after the title line), so that no number in the write-up's tables is typed by hand.

    python results/controls/build.py
"""
from pathlib import Path

HERE = Path(__file__).resolve().parent
out = []
for line in (HERE / "prose.md").read_text().splitlines():
    if line.startswith("{{include ") and line.endswith("}}"):
        name = line[len("{{include "):-2].strip()
        table = HERE / name if name.endswith(".md") else HERE / name / "table1.md"
        body = table.read_text().splitlines()[1:] if table.is_file() else ["", f"({name}: not run)"]
        out += [f"<!-- generated from {table.relative_to(HERE.parent)} -->", *body]
    else:
        out.append(line)
(HERE.parent / "controls.md").write_text("\n".join(out) + "\n")
print(f"wrote {HERE.parent / 'controls.md'}")
