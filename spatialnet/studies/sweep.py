"""``spatialnet sweep``: a hyper-parameter search on Optuna, for the full accuracy and the split drop.

Every trial trains one config on ``seeds`` (>= 2) in each of ``modes`` (one setting for every
input mode) and reports its objectives, each the mean over the modes of the mean over the seeds:
the full accuracy (maximised), the drop after the split (minimised) and any further read-outs
(``--objectives``); Optuna's multi-objective TPE proposes the next trial. Constraints
(``--constraint KEY<=V``, ``MODE.KEY>=V``, or ``targets``: the spatial net's targets of each mode,
``evaluate.TARGETS``) are met only by the worst seed of each mode; TPE prefers trials that meet
them, and the report ranks the feasible ones by their smallest margin. The per-mode, per-seed
numbers are kept as the trial's user attributes.

Protocol (issue 14): a sweep selects, so it reads the validation split only (``eval_split =
"val"``; the test sets are refused) and trains on selection seeds >= ``SELECTION_SEED_MIN``
(100; default 100, 101), disjoint from the report seeds 0-4 of the tables.

The study lives in a database: SQLite under ``runs/sweeps/`` by default, any SQLAlchemy URL with
``--storage``, so several processes (or machines) work on one study; each runs
``spatialnet sweep ... --resume`` and takes the next trial. A trial's runs are checkpointed
every epoch under ``runs_dir/<config hash>-seed<k>``; a killed worker's trial stops sending
heartbeats, is marked failed after three heartbeat intervals and retried with the same
parameters by the next worker, which resumes its runs from their checkpoints: a killed sweep
loses at most an epoch of the running trial.

Search spaces are written ``name=low:high`` (uniform), ``name=low:high:log`` (log-uniform; ints
where the config field is an int) or ``name=a|b|c`` (a choice); the defaults are in
``DEFAULT_SPACE``.
"""
from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from .._io import _atomic, write_json, write_text
from ..config import RUNTIME_KEYS, TrainConfig, in_mode
from ..analysis.evaluate import READOUT, TARGETS, target_gap
from ..analysis.stats import mean
from spatial_kernels.nn import density_norm, transport_norm
from ..training import train

# The knobs the recipe issue names, over ranges that hold every value tried by hand.
DEFAULT_SPACE = ("alpha=0.3:30:log", "beta=0.3:30:log", "lr=0.001:0.01:log", "epochs=20:60",
                 "pos_lr_scale=0.3:10:log", "init_gain=0.5:4:log", "schedule=constant|cosine")
# what a trial's config may vary: the scalar fields that change what a run computes
FIXED = ("mode", "net", "seed", "data", "max_train", "hidden", "spatial_layers", "tasks", *RUNTIME_KEYS)
SEARCHABLE = tuple(k for k in TrainConfig().to_dict() if k not in FIXED)
OBJECTIVES = ("full", "drop")
# what --objectives may name, and which way each goes; a trial is scored by the means over its seeds
# (a read-out that is None, e.g. the silhouette of a net without positions, counts as its worst)
DIRECTIONS = {"full": "maximize", "drop": "minimize", "silhouette": "maximize", "ari": "maximize",
              "share_norm": "minimize", "dead_fraction": "minimize", "newman_q": "maximize", "nn": "maximize",
              "stacked": "minimize", "on_next": "minimize"}
HEARTBEAT = 60
SELECTION_SEED_MIN = 100
SELECTION_SEEDS = (100, 101)


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "float", "int" or "choice"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial):
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def spec(self) -> str:
        if self.kind == "choice":
            return f"{self.name}={'|'.join(map(str, self.choices))}"
        return f"{self.name}={self.low:g}:{self.high:g}{':log' if self.log else ''}"


def parse_param(spec: str) -> Param:
    """``name=low:high[:log]`` or ``name=a|b|c``; a ValueError names what is wrong."""
    name, sep, rng = (s.strip() for s in spec.partition("="))
    if not sep or not rng:
        raise ValueError(f"--param {spec!r}: write name=low:high[:log] or name=a|b|c")
    if name not in SEARCHABLE:
        raise ValueError(f"--param {spec!r}: unknown parameter {name!r}; searchable: {', '.join(SEARCHABLE)}")
    default = getattr(TrainConfig(), name)
    if "|" in rng or isinstance(default, str):
        choices = tuple(type(default)(c.strip()) for c in rng.split("|") if c.strip())
        if not choices:
            raise ValueError(f"--param {spec!r}: empty choice")
        for c in choices:  # each choice must make a valid config
            TrainConfig(**{name: c}).validate()
        return Param(name, "choice", choices=choices)
    parts = rng.split(":")
    log = parts[-1] == "log"
    if log:
        parts = parts[:-1]
    if len(parts) != 2:
        raise ValueError(f"--param {spec!r}: write name=low:high[:log] or name=a|b|c")
    kind = "int" if isinstance(default, int) and not isinstance(default, bool) else "float"
    try:
        low, high = (int(p) if kind == "int" else float(p) for p in parts)
    except ValueError:
        raise ValueError(f"--param {spec!r}: bounds must be {kind}s") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ValueError(f"--param {spec!r}: empty range, low must be below high")
    if log and low <= 0:
        raise ValueError(f"--param {spec!r}: a log range needs low > 0")
    for v in (low, high):
        TrainConfig(**{name: v}).validate()
    return Param(name, kind, low, high, log)


def parse_space(specs) -> list[Param]:
    params = [parse_param(s) for s in specs]
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise ValueError(f"--param: a parameter is given twice: {names}")
    return params


def default_storage(study: str) -> str:
    return f"sqlite:///{Path('runs') / 'sweeps' / f'{study}.db'}"


def _storage(url: str, heartbeat: int):
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


def _score(xs, direction):
    m = mean(xs)
    if m is None:
        return -1.0 if direction == "maximize" else 2.0
    return m


@dataclass(frozen=True)
class Constraint:
    """``key op limit`` on a read-out, in every mode of the study or in ``mode`` only."""
    key: str
    op: str  # "<=" or ">="
    limit: float
    mode: str | None = None

    def spec(self) -> str:
        return f"{self.mode + '.' if self.mode else ''}{self.key}{self.op}{self.limit:g}"


def parse_constraints(specs, modes) -> list[Constraint]:
    """``KEY<=V``, ``KEY>=V``, ``MODE.KEY<=V`` or ``targets`` (``evaluate.TARGETS`` of each mode)."""
    from ..data import MODES
    out = []
    for spec in specs or ():
        spec = spec.strip()
        if spec == "targets":
            out += [Constraint(k, op, v, m) for m in modes for k, op, v in TARGETS[m]]
            continue
        op = "<=" if "<=" in spec else ">=" if ">=" in spec else None
        if op is None:
            raise ValueError(f"--constraint {spec!r}: write KEY<=V, KEY>=V, MODE.KEY<=V or targets")
        lhs, _, rhs = (x.strip() for x in spec.partition(op))
        mode, _, key = lhs.rpartition(".")
        if key not in READOUT:
            raise ValueError(f"--constraint {spec!r}: {key!r} is not a read-out; one of {', '.join(READOUT)}")
        if mode and mode not in MODES:
            raise ValueError(f"--constraint {spec!r}: {mode!r} is not a mode; one of {', '.join(MODES)}")
        if mode and mode not in modes:
            raise ValueError(f"--constraint {spec!r}: mode {mode!r} is not swept (--modes {','.join(modes)})")
        try:
            limit = float(rhs)
        except ValueError:
            raise ValueError(f"--constraint {spec!r}: the limit must be a number") from None
        out.append(Constraint(key, op, limit, mode or None))
    return out


def _per_mode_value(per_seed: list[dict], key: str, op: str) -> float | None:
    """The worst seed's value of ``key`` (the largest for <=, the smallest for >=)."""
    xs = [r[key] for r in per_seed]
    if any(x is None for x in xs):
        return None
    return max(xs) if op == "<=" else min(xs)


def constraint_gaps(per_mode: dict, constraints) -> list[float]:
    """One gap per (constraint, mode it applies to): how far the worst seed misses it (<= 0: met)."""
    return list(_named_gaps(per_mode, constraints).values())


def _named_gaps(per_mode: dict, constraints) -> dict[str, float]:
    gaps = {}
    for c in constraints:
        for mode in ([c.mode] if c.mode else list(per_mode)):
            gaps[f"{mode}.{c.key}{c.op}{c.limit:g}"] = target_gap(
                _per_mode_value(per_mode[mode], c.key, c.op), c.op, c.limit)
    return gaps


def constraint_margin(per_mode: dict, constraints, modes=None) -> float | None:
    """The smallest margin of the constraints over ``modes`` (default all), each gap divided by
    its limit's size (a relative slack: 0.2 means every constraint is met with 20 % to spare;
    negative: one is missed); None without constraints."""
    rel = []
    for c in constraints:
        for mode in ([c.mode] if c.mode else list(per_mode)):
            if modes is not None and mode not in modes:
                continue
            gap = target_gap(_per_mode_value(per_mode[mode], c.key, c.op), c.op, c.limit)
            rel.append(-gap / max(abs(c.limit), 0.01))
    return min(rel) if rel else None


def _objective(base: TrainConfig, params: list[Param], seeds, runs_dir, data_dir, log, objectives=OBJECTIVES,
               modes=None, constraints=(), pinned=None):
    modes = list(modes or [base.mode])
    # the per-mode fields neither searched nor given take each mode's chosen setting; a one-mode
    # study keeps its base config as it is
    keep = None if len(modes) == 1 or pinned is None else set(pinned) | {p.name for p in params}

    def objective(trial):
        values = {p.name: p.suggest(trial) for p in params}
        per_mode = {}
        for mode in modes:
            per_seed = []
            for seed in seeds:
                d = base.to_dict() if keep is None else in_mode(base.to_dict(), mode, keep)
                cfg = TrainConfig.from_dict({**d, **values, "mode": mode, "seed": seed})
                res = train(cfg, run_dir(runs_dir, cfg), resume=True, data_dir=data_dir, progress=False,
                            log=lambda *a: None)
                per_seed.append({k: res[k] for k in READOUT})
            per_mode[mode] = per_seed
        trial.set_user_attr("per_mode", per_mode)
        if len(modes) == 1:  # single-mode studies keep their flat per-seed lists
            for k in READOUT:
                trial.set_user_attr(k, [r[k] for r in per_mode[modes[0]]])
        drops = [r["drop"] for m in modes for r in per_mode[m]]
        trial.set_user_attr("drop_std", statistics.stdev(drops) if len(drops) > 1 else 0.0)
        if constraints:
            gaps = _named_gaps(per_mode, constraints)
            trial.set_user_attr("constraints", list(gaps.values()))
            for name, gap in gaps.items():  # TPE ranks infeasible trials after the feasible ones
                trial.set_constraint(name, gap)
        scores = tuple(statistics.fmean(_score([r[k] for r in per_mode[m]], DIRECTIONS[k]) for m in modes)
                       for k in objectives)
        margin = constraint_margin(per_mode, constraints)
        log(f"trial {trial.number}: " + " ".join(f"{k} {v:.3f}" for k, v in zip(objectives, scores))
            + ("" if margin is None else f" margin {margin:+.3f}") + " | "
            + " ".join(f"{m} drop {statistics.fmean(r['drop'] for r in per_mode[m]):.3f}" for m in modes) + " | "
            + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()))
        return scores
    return objective


def _study_differences(stored: dict, space: dict, fixed: dict, seeds: list) -> str:
    """What differs between a stored study and this call ('' when nothing). A config field the
    study does not know (added to the project since) counts only when it is not at its default."""
    if stored["space"] != space:
        return f"search space (stored: {' '.join(stored['space'].values())})"
    if stored["seeds"] != seeds:
        return f"seeds (stored: {stored['seeds']})"
    defaults = TrainConfig().identity()
    old = dict(stored["fixed"])
    for k, canonical in (("transport_norm", transport_norm), ("density_norm", density_norm)):
        if k in old:  # a study stored before the norms were named by meaning: the old names read as the new
            old[k] = canonical(old[k])
    changed = {k: (old.get(k, defaults.get(k)), v) for k, v in fixed.items() if old.get(k, defaults.get(k)) != v}
    return f"fixed config (stored vs now: {changed})" if changed else ""


def run_sweep(base: TrainConfig, study_name: str, storage: str | None, params: list[Param], *, trials: int,
              seeds=SELECTION_SEEDS, runs_dir=None, data_dir=None, resume: bool = False, heartbeat: int = HEARTBEAT,
              sampler_seed: int | None = None, objectives=OBJECTIVES, modes=None, constraints=(), pinned=None,
              log=print):
    """Creates (or with ``resume`` joins or continues) ``study_name`` and runs ``trials`` trials,
    scored by ``objectives`` (names of ``DIRECTIONS``; the first two must be full and drop, so the
    report's columns keep their meaning; e.g. full,drop,silhouette,dead_fraction), each trial
    trained in every one of ``modes`` (default: ``base.mode``), under ``constraints``
    (:class:`Constraint`, :func:`parse_constraints`)."""
    from ..data import check_mode

    modes = list(modes or [base.mode])
    for m in modes:
        check_mode(m)
    if len(set(modes)) != len(modes):
        raise ValueError(f"--modes: a mode is given twice: {modes}")

    if len(seeds) < 2:
        raise ValueError(f"--seeds: a trial is averaged over at least 2 seeds, got {list(seeds)}")
    if min(seeds) < SELECTION_SEED_MIN:
        raise ValueError(f"--seeds: a sweep selects settings, so it uses selection seeds >= {SELECTION_SEED_MIN} "
                         f"(disjoint from the report seeds 0-4), got {list(seeds)}")
    if trials < 0:
        raise ValueError(f"--trials must be >= 0, got {trials}")
    objectives = tuple(objectives)
    if objectives[:2] != OBJECTIVES or any(k not in DIRECTIONS for k in objectives) or len(set(objectives)) != len(objectives):
        raise ValueError(f"--objectives must start with full,drop and name distinct ones of {sorted(DIRECTIONS)}, "
                         f"got {list(objectives)}")
    base.validate()
    if base.eval_split != "val":
        raise ValueError("a sweep reads the validation split only (--eval-split val); the test sets are for "
                         "final tables")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage or default_storage(study_name)
    store = _storage(storage, heartbeat)
    space = {p.name: p.spec() for p in params}
    fixed = {k: v for k, v in base.identity().items() if k not in space and k != "seed"}
    if len(modes) > 1:
        del fixed["mode"]
    cons = [c.spec() for c in constraints]
    exists = study_name in optuna.study.get_all_study_names(store)
    if exists and not resume:
        raise ValueError(f"study {study_name!r} already exists in {storage}; pass --resume to continue it "
                         f"or choose another --study")
    sampler = optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=True)
    study = optuna.create_study(study_name=study_name, storage=store, directions=[DIRECTIONS[k] for k in objectives],
                                sampler=sampler, load_if_exists=True)
    if not exists or "space" not in study.user_attrs:
        study.set_user_attr("space", space)
        study.set_user_attr("fixed", fixed)
        study.set_user_attr("seeds", list(seeds))
        study.set_user_attr("objectives", list(objectives))
        study.set_user_attr("modes", modes)
        study.set_user_attr("constraints", cons)
    else:
        if study.user_attrs.get("objectives", list(OBJECTIVES)) != list(objectives):
            raise ValueError(f"--resume: study {study_name!r} was made with objectives "
                             f"{study.user_attrs.get('objectives', list(OBJECTIVES))}")
        if study.user_attrs.get("modes", [fixed.get("mode", base.mode)]) != modes:
            raise ValueError(f"--resume: study {study_name!r} was made with modes {study.user_attrs.get('modes')}")
        if study.user_attrs.get("constraints", []) != cons:
            raise ValueError(f"--resume: study {study_name!r} was made with constraints "
                             f"{study.user_attrs.get('constraints', [])}")
        diff = _study_differences(study.user_attrs, space, fixed, list(seeds))
        if diff:
            raise ValueError(f"--resume: study {study_name!r} was made with another {diff}")
    runs_dir = Path(runs_dir or Path("runs") / "sweeps" / study_name)
    if trials:
        # a retried trial (see the module docstring) is WAITING: a worker runs it before new ones
        study.optimize(_objective(base, params, seeds, runs_dir, data_dir, log, objectives, modes, constraints, pinned),
                       n_trials=trials, catch=(), gc_after_trial=True)
    return study


# ---------------------------------------------------------------------------------------------
# report

def trial_rows(study) -> list[dict]:
    """One row per complete trial: its number, objectives, drop std, parameters, per-seed numbers
    (``per_mode[mode][key]``: a list over seeds; ``per_seed``: the same for a one-mode study) and
    the constraints' smallest margin (overall, and per mode: ``mode_margin``)."""
    from optuna.trial import TrialState

    constraints = parse_constraints(study.user_attrs.get("constraints", []), study.user_attrs.get("modes") or
                                    [study.user_attrs.get("fixed", {}).get("mode", "concat")])
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        per_mode = t.user_attrs.get("per_mode")
        if per_mode is None:  # made before studies had several modes: one mode, flat lists
            mode = study.user_attrs.get("fixed", {}).get("mode", "concat")
            n = len(t.user_attrs.get("full") or [])
            per_mode = {mode: [{k: (t.user_attrs.get(k) or [None] * n)[i] for k in READOUT} for i in range(n)]}
        lists = {m: {k: [r.get(k) for r in rs] for k in READOUT} for m, rs in per_mode.items()}
        rows.append({"number": t.number, "full": t.values[0], "drop": t.values[1], "values": list(t.values),
                     "drop_std": t.user_attrs.get("drop_std"), "params": dict(t.params),
                     "per_seed": next(iter(lists.values())) if len(lists) == 1 else None, "per_mode": lists,
                     "margin": constraint_margin(per_mode, constraints),
                     "mode_margin": {m: constraint_margin(per_mode, constraints, [m]) for m in per_mode},
                     "group_margin": {",".join(g): constraint_margin(per_mode, constraints, list(g))
                                      for g in _groups(list(per_mode))}})
    return rows


def pareto(rows: list[dict]) -> list[dict]:
    """Trials no other trial beats on both full (higher) and drop (lower), by full."""
    front = [r for r in rows if not any(o["full"] >= r["full"] and o["drop"] <= r["drop"] and
                                        (o["full"] > r["full"] or o["drop"] < r["drop"]) for o in rows)]
    return sorted(front, key=lambda r: -r["full"])


def _groups(modes: list[str]) -> list[tuple[str, ...]]:
    """The groups of all modes but one (when there are three or more): where one setting might
    serve several modes though not every one."""
    import itertools
    return list(itertools.combinations(modes, len(modes) - 1)) if len(modes) >= 3 else []


def _feasible(row: dict) -> bool:
    return row["margin"] is not None and row["margin"] >= 0


REPORT_KEYS = ("full", "drop", "silhouette", "ari", "nn", "stacked", "share_norm", "dead_fraction")


def write_report(study, out_md, out_png=None, *, min_full: float = 0.91, title: str = "", rerun: str = "") -> list[dict]:
    """Writes the best trials, the Pareto front and (when ``out_png``) its plot; returns the rows.

    With constraints, the best trials are the feasible ones (every constraint met by the worst
    seed of every mode) by their smallest relative margin, and for each mode the trials feasible
    in that mode alone; without, the lowest drops with full >= ``min_full``."""
    rows = trial_rows(study)
    front = pareto(rows)
    modes = list(rows[0]["per_mode"]) if rows else list(study.user_attrs.get("modes") or [])
    objectives = study.user_attrs.get("objectives", list(OBJECTIVES))
    constraints = study.user_attrs.get("constraints", [])

    def fmt(v, spec=".3f"):
        return "–" if v is None else f"{v:{spec}}"

    def line(r):
        p = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(r["params"].items()))
        cells = [fmt(v) for v in r["values"]] + ([fmt(r["margin"], "+.3f")] if constraints else [])
        for m in modes:
            cells += [fmt(mean(r["per_mode"][m].get(k))) for k in REPORT_KEYS]
        return f"| {r['number']} | " + " | ".join(cells) + f" | {p} |"

    head_cells = list(objectives) + (["margin"] if constraints else [])
    for m in modes:
        head_cells += [f"{m[:3]} {k}" for k in REPORT_KEYS]
    head = ["| trial | " + " | ".join(head_cells) + " | parameters |", "|---|" + "---|" * (len(head_cells) + 1)]
    md = [f"# Sweep {study.study_name}" + (f": {title}" if title else ""), "",
          f"{len(rows)} complete trials in {', '.join(modes)}, each read on the validation split on seeds "
          f"{study.user_attrs.get('seeds')}; objectives ({', '.join(objectives)}) are the means over the modes of "
          f"the means over the seeds, the per-mode columns the means over the seeds. "
          f"Search space: `{' '.join(study.user_attrs.get('space', {}).values())}`."]
    if constraints:
        md += ["", f"Constraints, met by the worst seed of each mode: `{' '.join(constraints)}`. margin: the "
               "smallest of (limit − value) / |limit| over them (≥ 0: every one met).", "",
               "## Feasible trials by margin", "", *head,
               *map(line, sorted((r for r in rows if _feasible(r)), key=lambda r: -r["margin"])[:10])]
        for g in _groups(modes):
            key = ",".join(g)
            best = sorted(rows, key=lambda r: -(r["group_margin"][key] if r["group_margin"][key] is not None else -9))[:5]
            md += ["", f"## {' and '.join(g)}: the best margins on their constraints", "",
                   *[f"- trial {r['number']}: margin {r['group_margin'][key]:+.3f}" for r in best]]
        for m in modes:
            best = sorted(rows, key=lambda r: -(r["mode_margin"][m] if r["mode_margin"][m] is not None else -9))[:5]
            md += ["", f"## {m}: the best margins on its own constraints", "", *head, *map(line, best)]
    else:
        ok = sorted((r for r in rows if r["full"] >= min_full), key=lambda r: r["drop"])
        md += ["", f"## Lowest drops with full accuracy ≥ {min_full}", "", *head, *map(line, ok[:10])]
    md += ["", "## Pareto front (full accuracy against drop)", "", *head, *map(line, front), ""]
    if rerun:
        md += [f"Rerun (each worker; add `--resume` to join): `{rerun}`", ""]
    write_text(out_md, "\n".join(md))
    write_json(Path(out_md).with_suffix(".json"), {"study": study.study_name, "space": study.user_attrs.get("space"),
                                                   "fixed": study.user_attrs.get("fixed"), "modes": modes,
                                                   "objectives": objectives, "constraints": constraints,
                                                   "trials": rows})
    if out_png and rows:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8))
        feas = [r for r in rows if constraints and _feasible(r)]
        ax.scatter([r["drop"] for r in rows], [r["full"] for r in rows], s=18, c="0.6", label="trial")
        if feas:
            ax.scatter([r["drop"] for r in feas], [r["full"] for r in feas], s=30, c="tab:green",
                       label="meets every constraint")
        ax.plot([r["drop"] for r in front], [r["full"] for r in front], "o-", c="tab:red", ms=5, label="Pareto front")
        ax.axhline(min_full, ls=":", c="k", lw=0.8)
        ax.set_xlabel("drop after the split (mean over modes and seeds)")
        ax.set_ylabel("full accuracy (mean over modes and seeds)")
        ax.set_title(title or f"sweep {study.study_name}")
        ax.legend()
        # the clusters against the crowding, per mode: the trade the targets sit on
        for m, marker in zip(modes, "osD^v"):
            pts = [(mean(r["per_mode"][m].get("nn")), mean(r["per_mode"][m].get("silhouette"))) for r in rows]
            pts = [(x, y) for x, y in pts if x is not None and y is not None]
            bx.scatter([x for x, _ in pts], [y for _, y in pts], s=20, marker=marker, alpha=0.75, label=m)
        bx.axvline(0.4, ls=":", c="k", lw=0.8)
        bx.axhline(0.5, ls=":", c="k", lw=0.8)
        bx.set_xscale("symlog", linthresh=0.01)
        bx.set_xlim(left=0)
        bx.set_xlabel("nearest live neighbour, in the density's length (mean over seeds; target >= 0.4)")
        bx.set_ylabel("silhouette (mean over seeds; target >= 0.5)")
        bx.set_title("clusters against crowding, per trial and mode")
        bx.legend()
        fig.tight_layout()
        _atomic(out_png, lambda f: fig.savefig(f, dpi=130, format="png"))
        plt.close(fig)
    return rows
