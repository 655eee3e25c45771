"""Sweeps on a real PostgreSQL server (pgserver ships its binaries; started inside the test): two
workers share one study, one is killed with SIGKILL mid-trial, and its trial is retried with the
same parameters, resumed from its checkpoints, while every other trial's result stays intact."""
import json
import signal
import subprocess
import time

import pytest

from tests.spatialnet.test_studies_sweep import _env, _sweep_cmd

from tests.helpers import needs

pgserver = needs("pgserver")  # never skipped under CI (.ci/run installs the dev extra)
optuna = needs("optuna")


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    # the psycopg (3) driver named: SQLAlchemy before 2.1 reads a bare postgresql:// as psycopg2
    yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    server.cleanup()


def _wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _histories(runs):
    out = {}
    for m in runs.glob("*/metrics.json"):
        try:
            out[m.parent.name] = json.loads(m.read_text())["history"]
        except (ValueError, KeyError):
            pass
    return out


def test_two_workers_a_killed_trial_retried_and_resumed(tmp_path, postgres):
    url = postgres
    cmd = lambda trials: _sweep_cmd(tmp_path, "--storage", url, "--resume", "--trials", str(trials),  # noqa: E731
                                    "--heartbeat", "1", "--param", "alpha=0.5:2", "--epochs", "60")
    runs = tmp_path / "runs"
    a = subprocess.Popen(cmd(1), cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a_run = _wait_for(lambda: next((n for n, h in _histories(runs).items() if len(h) >= 1), None), 180,
                      "worker A's first epoch")
    b = subprocess.Popen(cmd(1), cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # A is killed mid-trial, a few epochs into its first seed, while B works on its own trial
    _wait_for(lambda: len(_histories(runs).get(a_run, [])) >= 3, 180, "worker A's third epoch")
    a.send_signal(signal.SIGKILL)
    a.wait()
    before = _histories(runs)[a_run]
    assert len(before) < 60
    out_b = b.communicate(timeout=600)[0]
    assert b.returncode == 0, out_b
    time.sleep(3.5)  # past the grace period: A's heartbeat is stale
    c = subprocess.run(cmd(1), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert c.returncode == 0, c.stdout + c.stderr

    study = optuna.load_study(study_name="s", storage=url)
    trials = study.trials
    states = [t.state.name for t in trials]
    assert states.count("FAIL") == 1 and states.count("COMPLETE") == 2, states
    failed = next(t for t in trials if t.state.name == "FAIL")
    retried = [t for t in trials if t.state.name == "COMPLETE" and t.params == failed.params]
    other = [t for t in trials if t.state.name == "COMPLETE" and t.params != failed.params]
    assert len(retried) == 1 and len(other) == 1 and retried[0].number > failed.number
    # resumed from the checkpoints, not restarted: the epochs saved before the kill are as they were
    after = _histories(runs)[a_run]
    assert [h["epoch"] for h in after] == list(range(1, 61)) and after[:len(before)] == before
    # every trial's numbers are its runs' results, B's untouched by the kill and the retry
    for t in (retried[0], other[0]):
        drops = t.user_attrs["drop"]
        assert t.values[1] == pytest.approx(sum(drops) / len(drops))
        finished = [json.loads((runs / d / "result.json").read_text())
                    for d in _histories(runs) if (runs / d / "result.json").is_file()]
        for drop in drops:
            assert any(r["drop"] == drop for r in finished)
