"""Every ```python block of README.md and spatial_kernels/README.md runs as written, alone, in a
fresh interpreter (the venv the README makes with its extras: [dev] holds them all)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
READMES = ("README.md", "spatial_kernels/README.md")
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def _blocks():
    return [pytest.param(code, id=f"{name}:{text[:m.start()].count(chr(10)) + 1}")
            for name in READMES for text in [(ROOT / name).read_text(encoding="utf-8")]
            for m in BLOCK.finditer(text) for code in [m.group(1)]]


def test_the_readmes_have_python_blocks():
    assert len(_blocks()) >= 2  # the kernels' and spatialize's: a broken pattern would find none


@pytest.mark.parametrize("code", _blocks())
def test_a_readme_python_block_runs_alone(code, tmp_path):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
