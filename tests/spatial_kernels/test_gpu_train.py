"""benchmarks/gpu_train.py, the training part of the GPU check, dry-run on the CPU at tiny sizes:
every subcommand runs its spatialnet commands, and render reads back finished and stopped runs."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--", "--device", "cpu", "--data", "subset", "--max-train", "128", "--batch-size", "64",
        "--hidden", "8,8,8,12", "--epochs", "2"]


def _run(*args, timeout=300):
    r = subprocess.run([sys.executable, "-m", "benchmarks.gpu_train", *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_training_steps_and_report_on_cpu(tmp_path):
    out = str(tmp_path / "train")
    _run("paper", out, "120", *TINY)
    _run("wide", out, "120", "8,8,8,12", *TINY[:-2], "--epochs", "2", "--weight-dtype", "float32")
    _run("table", out, "200", *TINY, "--seeds", "0", "--workers", "2")
    md = _run("render", out)
    for name in ("paper concat", "paper mix", "paper sequential", "wide"):
        row = next(l for l in md.splitlines() if l.startswith(f"| {name} |"))
        assert "| 2/2 |" in row and "(subset data)" in row, row
    assert "6 of 18 runs" in md and "| concat | spatial |" in md
    assert json.loads((tmp_path / "train" / "paper.json").read_text())["parallel"] == 3


def test_a_stopped_run_is_read_from_its_checkpoint(tmp_path):
    out = tmp_path / "train"
    # a million epochs under a 20 s limit: the run is always stopped, however fast the machine (400 epochs
    # once finished inside 8 s on a fast one); its last per-epoch checkpoint is split for the read-out
    epochs = 1_000_000
    _run("wide", str(out), "20", "8,8,8,12", *TINY[:-2], "--epochs", str(epochs), "--weight-dtype", "float32")
    hist = json.loads((out / "wide" / "metrics.json").read_text())["history"]
    assert 0 < len(hist) < epochs and not (out / "wide" / "result.json").exists()
    md = _run("render", str(out))
    row = next(l for l in md.splitlines() if l.startswith("| wide |"))
    assert f"| {len(hist)}/{epochs} |" in row and "–" not in row.split("|")[5], row  # a full accuracy was read
