"""spatialnet trains, splits and plots where optuna is missing (the GPU image has none); only the
sweep needs it, and it says which extra brings it. Run in a subprocess that blocks optuna's import.
And `spatialnet --help` loads nothing heavier than argparse."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = "import sys; sys.modules['optuna'] = None; "  # `import optuna` raises ImportError, find_spec is None
TINY = ["--data", "subset", "--max-train", "128", "--batch-size", "64", "--hidden", "8,8,8,12", "--no-progress",
        "--epochs", "1"]


def _spatialnet(args: list, cwd) -> subprocess.CompletedProcess:
    code = BLOCK + f"from spatialnet.__main__ import main; rc = main({args!r}); " \
                   "assert 'optuna' not in sys.modules or sys.modules['optuna'] is None; sys.exit(rc)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_train_split_plot_and_help_without_optuna(tmp_path):
    out = _spatialnet(["--help"], tmp_path)
    assert out.returncode == 0 and "sweep" in out.stdout, out.stderr
    run = tmp_path / "run"
    out = _spatialnet(["train", *TINY, "--out", str(run)], tmp_path)
    assert out.returncode == 0, out.stderr
    assert (run / "checkpoint.pt").is_file()
    out = _spatialnet(["split", str(run / "checkpoint.pt")], tmp_path)
    assert out.returncode == 0 and "cross-task share" in out.stdout, out.stderr
    out = _spatialnet(["plot", str(run / "checkpoint.pt"), "--out", str(tmp_path / "figs")], tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "figs" / "figure1.png").read_bytes()[:4] == b"\x89PNG"


def test_the_sweep_without_optuna_names_the_extra(tmp_path):
    out = _spatialnet(["sweep", "--trials", "0", "--data", "subset", "--study", "s",
                       "--storage", f"sqlite:///{tmp_path}/s.db"], tmp_path)
    assert out.returncode == 2
    assert "spatialnet sweep: error: the sweep needs optuna, which the [paper] extra brings" in out.stderr


def test_help_loads_nothing_but_argparse():
    """`spatialnet --help` answers without importing torch (the commands' parsers are built lazily)."""
    code = ("import sys\nfrom spatialnet.__main__ import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0\nheavy = [m for m in ('torch', 'numpy', 'spatial_kernels', 'matplotlib') "
            "if m in sys.modules]\nassert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert "usage: spatialnet" in out.stdout and "``" not in out.stdout
