"""Running a sweep: each trial trains its setting on every seed of every mode and reports its
objectives; a study is created, joined or continued (see the package docstring)."""
from __future__ import annotations

import statistics
from pathlib import Path

from ...analysis.evaluate import READOUT
from ...config import RECORD_NORM_NAMES, TrainConfig
from ...training import train
from .constraints import DIRECTIONS, OBJECTIVES, constraint_margin, named_gaps, score
from .space import Param
from .storage import default_storage, open_storage, run_dir

HEARTBEAT = 60
SELECTION_SEED_MIN = 100
SELECTION_SEEDS = (100, 101)


def _objective(base: TrainConfig, params: list[Param], seeds, runs_dir, data_dir, log, objectives=OBJECTIVES,
               modes=None, constraints=(), given=None):
    modes = list(modes or [base.mode])
    # the per-mode fields neither searched nor given take each mode's chosen setting; a one-mode
    # study keeps its base config as it is
    keep = None if len(modes) == 1 or given is None else set(given) | {p.name for p in params}

    def objective(trial):
        values = {p.name: p.suggest(trial) for p in params}
        per_mode = {}
        for mode in modes:
            per_seed = []
            for seed in seeds:
                cfg = (base if keep is None else base.for_mode(mode, keep)).replace(**values, mode=mode, seed=seed)
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
            gaps = named_gaps(per_mode, constraints)
            trial.set_user_attr("constraints", list(gaps.values()))
            for name, gap in gaps.items():  # TPE ranks infeasible trials after the feasible ones
                trial.set_constraint(name, gap)
        scores = tuple(statistics.fmean(score([r[k] for r in per_mode[m]], DIRECTIONS[k]) for m in modes)
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
    for k, names in RECORD_NORM_NAMES.items():
        if k in old:  # a study stored before each norm had one name: the old names read as they meant
            old[k] = names.get(old[k], old[k])
    changed = {k: (old.get(k, defaults.get(k)), v) for k, v in fixed.items() if old.get(k, defaults.get(k)) != v}
    return f"fixed config (stored vs now: {changed})" if changed else ""


def require_optuna():
    """optuna, imported; an ImportError naming the extra that brings it where it is missing (only
    the sweep needs it: training, the split and the figures run without)."""
    try:
        import optuna
    except ImportError:
        raise ImportError("the sweep needs optuna, which the [paper] extra brings: pip install "
                          "'spatial-kernels[paper]' (or -e '.[paper]' in a checkout)") from None
    return optuna


def run_sweep(base: TrainConfig, study_name: str, storage: str | None, params: list[Param], *, trials: int,
              seeds=SELECTION_SEEDS, runs_dir=None, data_dir=None, resume: bool = False, heartbeat: int = HEARTBEAT,
              sampler_seed: int | None = None, objectives=OBJECTIVES, modes=None, constraints=(), given=None,
              log=print):
    """Creates (or with ``resume`` joins or continues) ``study_name`` and runs ``trials`` trials,
    scored by ``objectives`` (names of ``DIRECTIONS``; the first two must be full and drop, so the
    report's columns keep their meaning; e.g. full,drop,silhouette,dead_fraction), each trial
    trained in every one of ``modes`` (default: ``base.mode``), under ``constraints``
    (:class:`Constraint`, :func:`parse_constraints`)."""
    from ...data import check_mode

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
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage or default_storage(study_name)
    store = open_storage(storage, heartbeat)
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
        study.optimize(_objective(base, params, seeds, runs_dir, data_dir, log, objectives, modes, constraints, given),
                       n_trials=trials, catch=(), gc_after_trial=True)
    return study


