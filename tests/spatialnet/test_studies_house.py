"""The house: every study declared once (studies/catalog.py) and runnable as declared, and the
stages import downwards only."""
import ast
import re
from pathlib import Path

import pytest

from spatialnet.cli import build_parser
from spatialnet.studies.catalog import STUDIES, study

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "spatialnet"
ORDER = {"data": 0, "model": 1, "config": 1, "width": 1, "_io": 0, "analysis": 2, "training": 3, "studies": 4,
         "cli": 5, "__main__": 6, "__init__": 6}


def _stage(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_every_study_parses_as_declared(name):
    s = study(name)
    assert s.question and s.outputs
    for words in s.commands():
        if words[0] == "spatialnet":
            args = build_parser().parse_args(words[1:])  # a bad flag exits here
            assert args.func is not None
        else:
            module = words[2]
            assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module


def test_readme_names_the_studies_by_their_command():
    readme = (ROOT / "README.md").read_text() + (ROOT / "results" / "README.md").read_text()
    cited = set(re.findall(r"spatialnet study ([a-z0-9][a-z0-9-]*)", readme))
    assert cited <= set(STUDIES), cited - set(STUDIES)
    with pytest.raises(ValueError, match="no study 'nope'"):
        study("nope")


def test_no_import_climbs_back_up():
    for path in PKG.rglob("*.py"):
        here = _stage(path)
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.level == 0:
                continue
            base = path.relative_to(PKG).parts[:-1]
            parts = list(base[:len(base) - (node.level - 1)]) + (node.module.split(".") if node.module else [])
            target = parts[0] if parts else "__init__"
            if target in ("__init__",) or target == here:
                continue
            assert ORDER[target] <= ORDER[here], f"{path.relative_to(ROOT)} imports {'.'.join(parts)}"
