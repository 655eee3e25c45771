"""The house rules for spatial_kernels, as tests/spatialnet/test_studies_house.py keeps them for
spatialnet: no file over 400 lines, and the kernels never import the model package above them."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "spatial_kernels"
MAX_LINES = 400


def test_no_file_over_400_lines():
    files = list(PKG.rglob("*.py"))
    assert len(files) > 10, files  # the walk finds the package
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_spatial_kernels_never_imports_spatialnet():
    offenders = []
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if n.split(".")[0] in ("spatialnet", "benchmarks")]
    assert not offenders, offenders
