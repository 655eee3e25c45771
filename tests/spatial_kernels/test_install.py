"""The bare install's promise, checked where every extra is installed: importing and using
spatial_kernels imports none of them (the same script runs in CI's bare environment)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_spatial_kernels_imports_none_of_the_extras():
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "bare_install_smoke.py")], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "bare install" in out.stdout


def test_the_spatialnet_command_says_what_it_lacks(tmp_path):
    # a bare install has no [paper] extra: simulate by hiding one of its modules (not optuna, which only
    # the sweep needs: tests/spatialnet/test_cli_without_optuna.py)
    code = ("import sys, importlib.util as u; real = u.find_spec; "
            "u.find_spec = lambda n, *a: None if n == 'sklearn' else real(n, *a); "
            "from spatialnet.__main__ import main; sys.exit(main(['--help']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2 and "needs the [paper] extra (sklearn missing)" in out.stderr
