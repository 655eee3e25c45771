"""spatialnet sweep: the search-space syntax, clear errors, two workers on one SQLite study, and a
killed worker whose trial is retried and resumed from its checkpoints."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spatialnet.cli import main
from tests.helpers import needs
from spatialnet.studies.sweep import Param, pareto, parse_param

needs("optuna")

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--data", "subset", "--max-train", "128", "--batch-size", "64", "--hidden", "8,8,8,12"]


def test_param_syntax():
    assert parse_param("alpha=0.1:10:log") == Param("alpha", "float", 0.1, 10.0, True)
    assert parse_param("epochs=20:60") == Param("epochs", "int", 20, 60, False)
    assert parse_param("schedule=constant|cosine") == Param("schedule", "choice", choices=("constant", "cosine"))
    assert parse_param("beta = 1:3").spec() == "beta=1:3"


@pytest.mark.parametrize("spec,msg", [
    ("gamma=1:2", "unknown parameter 'gamma'"), ("seed=1:3", "unknown parameter 'seed'"),
    ("alpha=2:1", "empty range"), ("alpha=1:1", "empty range"), ("alpha=0:1:log", "log range needs low > 0"),
    ("alpha", "write name=low:high"), ("alpha=1:2:3", "write name=low:high"), ("epochs=1.5:3", "must be ints"),
    ("schedule=constant|weekly", "schedule must be one of"), ("lr=-1:1", "lr must be a finite number > 0"),
])
def test_bad_params_are_one_line_errors(spec, msg, capsys, tmp_path):
    with pytest.raises(ValueError, match=msg):
        parse_param(spec)
    assert main(["sweep", "--param", spec, "--storage", f"sqlite:///{tmp_path}/s.db", *TINY]) == 2
    err = capsys.readouterr().err
    assert msg.split("'")[0] in err and err.count("\n") == 1


@pytest.mark.parametrize("url,msg", [
    ("sqlite:////proc/no/such/dir/s.db", "cannot be opened"),
    ("postgresql://nobody@127.0.0.1:9/none", "cannot be opened"),
    ("nonsense", "cannot be opened"),
])
def test_unreachable_storage(url, msg, capsys):
    assert main(["sweep", "--storage", url, "--trials", "1", *TINY]) == 2
    err = capsys.readouterr().err
    assert msg in err and url in err and err.count("\n") == 1


def test_pareto_front():
    rows = [{"full": .9, "drop": .1}, {"full": .8, "drop": .0}, {"full": .85, "drop": .05},
            {"full": .8, "drop": .1}, {"full": .9, "drop": .2}]
    assert pareto(rows) == [rows[0], rows[2], rows[1]]


def _sweep_cmd(tmp_path, *extra):
    return [sys.executable, "-m", "spatialnet", "sweep", "--study", "s", "--storage", f"sqlite:///{tmp_path}/s.db",
            "--runs-dir", str(tmp_path / "runs"), "--report", str(tmp_path / "s.md"), *TINY, *extra]


def _env():
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "OMP_NUM_THREADS": "1"}


def test_two_workers_share_one_sqlite_study(tmp_path):
    cmd = _sweep_cmd(tmp_path, "--resume", "--trials", "2", "--param", "alpha=0.1:10:log", "--param", "epochs=1:2")
    workers = [subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for _ in range(2)]
    outs = [w.communicate(timeout=300)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), "\n\n".join(outs)
    import optuna
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4 and sorted(t.number for t in done) == [0, 1, 2, 3]
    for out in outs:  # each worker ran its own two trials
        assert out.count("trial ") >= 2, out
    for t in done:
        assert len(t.user_attrs["full"]) == 2 and len(t.user_attrs["drop"]) == 2  # two seeds
        assert t.values[1] == pytest.approx(sum(t.user_attrs["drop"]) / 2)
    report = json.loads((tmp_path / "s.json").read_text())
    assert len(report["trials"]) == 4 and (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    # a third process without --resume is refused: the study exists
    again = subprocess.run(cmd[:cmd.index("--resume")] + cmd[cmd.index("--resume") + 1:], cwd=tmp_path,
                           env=_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr and "--resume" in again.stderr


def test_killed_worker_loses_at_most_its_running_epoch(tmp_path):
    # one trial of 2 seeds x 60 tiny epochs; kill the worker once seed 100 has a few epochs saved
    cmd = _sweep_cmd(tmp_path, "--resume", "--trials", "1", "--heartbeat", "1", "--param", "alpha=0.5:2",
                     "--epochs", "60")
    w = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    metrics = None
    while time.time() < deadline:
        found = list((tmp_path / "runs").glob("*-seed100/metrics.json"))
        if found and len(json.loads(found[0].read_text() or "{}").get("history", [])) >= 3:
            metrics = found[0]
            break
        time.sleep(0.02)  # fast polling: on a fast machine 60 tiny epochs take about a second
    assert metrics is not None, "the worker saved no epoch in time"
    w.send_signal(signal.SIGKILL)
    w.wait()
    before = json.loads(metrics.read_text())["history"]
    killed_at = len(before)
    assert killed_at < 60
    time.sleep(3.5)  # past the grace period: the killed trial's heartbeat is stale
    r = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    import optuna
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert study.trials[1].params == study.trials[0].params  # retried with the same parameters
    hist = json.loads(metrics.read_text())["history"]
    # resumed, not restarted: the epochs saved before the kill were kept as they were (a rerun
    # would have rewritten them, with its own timings), the rest were added
    assert [h["epoch"] for h in hist] == list(range(1, 61))
    assert hist[:killed_at] == before


def test_resume_tells_what_differs():
    from spatialnet.config import TrainConfig
    from spatialnet.studies.sweep.run import _study_differences
    fixed = {k: v for k, v in TrainConfig().identity().items() if k not in ("alpha", "seed")}
    stored = {"space": {"alpha": "alpha=1:2"}, "seeds": [0, 1], "fixed": dict(fixed)}
    assert _study_differences(stored, {"alpha": "alpha=1:2"}, fixed, [0, 1]) == ""
    # a field the study predates, at its default: the same study
    old = dict(stored, fixed={k: v for k, v in fixed.items() if k != "weight_dtype"})
    assert _study_differences(old, {"alpha": "alpha=1:2"}, fixed, [0, 1]) == ""
    assert "weight_dtype" in _study_differences(old, {"alpha": "alpha=1:2"}, {**fixed, "weight_dtype": "bfloat16"},
                                                [0, 1])
    assert "beta" in _study_differences(stored, {"alpha": "alpha=1:2"}, {**fixed, "beta": 5.0}, [0, 1])
    assert "seeds" in _study_differences(stored, {"alpha": "alpha=1:2"}, fixed, [0, 1, 2])
    assert "search space" in _study_differences(stored, {"alpha": "alpha=1:3"}, fixed, [0, 1])


def test_constraints_syntax_and_targets():
    from spatialnet.analysis.evaluate import TARGETS
    from spatialnet.studies.sweep import Constraint, parse_constraints
    got = parse_constraints(["nn>=0.4", "sequential.drop<=0.05"], ["concat", "sequential"])
    assert got == [Constraint("nn", ">=", 0.4), Constraint("drop", "<=", 0.05, "sequential")]
    assert [c.spec() for c in got] == ["nn>=0.4", "sequential.drop<=0.05"]
    both = parse_constraints(["targets"], ["concat", "sequential"])
    assert len(both) == len(TARGETS["concat"]) + len(TARGETS["sequential"])
    for spec, msg in (("nn=0.4", "write KEY"), ("speed<=1", "not a read-out"), ("cat.nn>=1", "not a mode"),
                      ("mix.nn>=1", "not swept"), ("nn>=a", "must be a number")):
        with pytest.raises(ValueError, match=msg):
            parse_constraints([spec], ["concat", "sequential"])


def test_gaps_read_the_worst_seed_of_each_mode():
    from spatialnet.studies.sweep.constraints import Constraint, constraint_margin, named_gaps
    per_mode = {"concat": [{"nn": 0.5, "drop": 0.0}, {"nn": 0.3, "drop": 0.02}],
                "mix": [{"nn": 0.6, "drop": 0.0}, {"nn": 0.5, "drop": 0.001}]}
    cons = [Constraint("nn", ">=", 0.4), Constraint("drop", "<=", 0.01, "mix")]
    assert named_gaps(per_mode, cons) == pytest.approx({"concat.nn>=0.4": 0.1, "mix.nn>=0.4": -0.1,
                                                        "mix.drop<=0.01": -0.009})
    assert constraint_margin(per_mode, cons) == pytest.approx(-0.25)       # concat's seed 2: nn 0.3 of 0.4
    assert constraint_margin(per_mode, cons, ["mix"]) == pytest.approx(0.25)  # mix: nn 0.5 is 25 % over


def test_one_setting_over_several_modes_under_constraints(tmp_path):
    cmd = _sweep_cmd(tmp_path, "--trials", "2", "--modes", "concat,sequential", "--param", "alpha=0.5:2",
                     "--epochs", "1", "--constraint", "targets", "--constraint", "nn>=0.0",
                     "--objectives", "full,drop,nn")
    r = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    import optuna
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    for t in study.trials:
        per_mode = t.user_attrs["per_mode"]
        assert set(per_mode) == {"concat", "sequential"} and all(len(v) == 2 for v in per_mode.values())
        # objectives: the mean over modes of the mean over seeds
        want = sum(sum(x["drop"] for x in v) / 2 for v in per_mode.values()) / 2
        assert t.values[1] == pytest.approx(want)
        assert len(t.user_attrs["constraints"]) == 8 + 4 + 2  # concat's targets, sequential's, nn in both
        assert sorted(t.constraints.values()) == sorted(t.user_attrs["constraints"])  # what TPE reads
        assert "sequential.drop<=0.05" in t.constraints
    runs = [p.name.split("-")[0] for p in (tmp_path / "runs").iterdir()]
    assert runs.count("concat") == runs.count("sequential") == 2 * len(study.trials)
    md = (tmp_path / "s.md").read_text()
    assert "Constraints, met by the worst seed" in md and "## sequential: the best margins" in md
    # joining it with other modes or constraints is refused
    again = subprocess.run(_sweep_cmd(tmp_path, "--resume", "--trials", "1", "--modes", "concat",
                                      "--param", "alpha=0.5:2", "--epochs", "1", "--constraint", "targets",
                                      "--constraint", "nn>=0.0", "--objectives", "full,drop,nn"),
                           cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "modes" in again.stderr
