"""The house: every study registered once and runnable as declared, README's study table read from
the registry, and an import graph without circles, with a short chain of rooms and small files."""
import ast
import re
from pathlib import Path

import networkx as nx
import pytest

from spatialnet.studies.catalog import STUDIES, all_studies, study

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "spatialnet"
MAX_ROOMS = 6
MAX_LINES = 400


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> nx.DiGraph:
    """spatialnet's modules and the imports between them, function-level imports included: an
    import of a name from a package that is one of its modules points at that module."""
    modules = {_module(p): p for p in PKG.rglob("*.py")}
    g = nx.DiGraph()
    for name, path in modules.items():
        g.add_node(name)
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[:len(package) - (node.level - 1)] if node.level else []
                target = ".".join(base + (node.module.split(".") if node.module else []))
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
                targets = subs or ([target] if target in modules else [])
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name in modules]
            else:
                continue
            g.add_edges_from((name, t) for t in targets if t != name)
    return g


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_every_study_parses_as_declared(name):
    s = study(name)
    assert s.question and s.outputs and s.module.startswith("spatialnet.studies.")
    args = s.parser().parse_args(["RUN"] if name == "dead-tol" else [])  # its defaults: the declared study
    assert callable(s.run) and hasattr(args, "data_dir")


def test_a_study_is_one_file_and_one_line_in_the_catalog():
    text = (PKG / "studies" / "catalog.py").read_text()
    for s in all_studies():
        stem = s.module.rsplit(".", 1)[1]
        assert (PKG / "studies" / f"{stem}.py").is_file()
        assert f"from . import {stem}  # noqa: F401" in text, stem
    with pytest.raises(ValueError, match="no study 'nope'"):
        study("nope")


def test_readme_names_the_studies_by_their_command_and_lists_every_one():
    readme = (ROOT / "README.md").read_text() + (ROOT / "results" / "README.md").read_text()
    cited = set(re.findall(r"spatialnet study ([a-z0-9][a-z0-9-]*)", readme))
    assert cited <= set(STUDIES), cited - set(STUDIES)
    table = (ROOT / "README.md").read_text()
    for s in all_studies():  # the table `spatialnet study --list --markdown` prints
        assert f"| `spatialnet study {s.name}` | {s.question} |" in table, s.name


def test_no_import_circle_a_short_chain_of_rooms_and_small_files():
    g = import_graph()
    assert nx.is_directed_acyclic_graph(g), list(nx.simple_cycles(g))[:3]
    rooms = nx.DiGraph()
    rooms.add_edges_from((_room(a), _room(b)) for a, b in g.edges() if _room(a) != _room(b))
    assert nx.is_directed_acyclic_graph(rooms), list(nx.simple_cycles(rooms))[:3]
    chain = nx.dag_longest_path(rooms)
    assert len(chain) <= MAX_ROOMS, chain
    long = {str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long
