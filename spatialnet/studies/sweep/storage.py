"""Where a sweep lives: its database (SQLite under runs/sweeps/ by default, any SQLAlchemy URL),
with heartbeats so that a killed worker's trial is retried, and its trials' run folders."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from ...config import TrainConfig

def default_storage(study: str) -> str:
    return f"sqlite:///{Path('runs') / 'sweeps' / f'{study}.db'}"


def open_storage(url: str, heartbeat: int):
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    warnings.filterwarnings("ignore", category=ExperimentalWarning)  # heartbeats: stable in use since 2.8
    if not isinstance(heartbeat, int) or heartbeat < 1:
        raise ValueError(f"--heartbeat must be a positive number of seconds, got {heartbeat!r}")
    if url.startswith("sqlite:///"):
        try:
            Path(url[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"--storage {url!r} cannot be opened: {exc}") from None
    for attempt in range(5):
        try:
            return RDBStorage(url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(),
                              engine_kwargs={"pool_pre_ping": True})
        except Exception as exc:  # bad URL, unknown driver, unreachable server, unwritable file
            # two workers starting at once race to create the schema: the loser retries
            if "UNIQUE constraint failed" in str(exc) or "already exists" in str(exc) or "locked" in str(exc):
                if attempt < 4:
                    time.sleep(0.5 * (attempt + 1))
                    continue
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"--storage {url!r} cannot be opened: {first}") from None


def run_dir(runs_dir, cfg: TrainConfig) -> Path:
    ident = {k: v for k, v in cfg.identity().items() if k != "seed"}
    digest = hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    return Path(runs_dir) / f"{cfg.mode}-{cfg.net}-{digest}-seed{cfg.seed}"


