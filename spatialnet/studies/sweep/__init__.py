"""``spatialnet sweep``: a hyper-parameter search on Optuna, for the full accuracy and the split drop.

Every trial trains one config on ``seeds`` (>= 2) in each of ``modes`` (one setting for every
input mode) and reports its objectives, each the mean over the modes of the mean over the seeds:
the full accuracy (maximised), the drop after the split (minimised) and any further read-outs
(``--objectives``); Optuna's multi-objective TPE proposes the next trial. Constraints
(``--constraint KEY<=V``, ``MODE.KEY>=V``, or ``targets``: the spatial net's targets of each mode,
``evaluate.TARGETS``) are met only by the worst seed of each mode; TPE prefers trials that meet
them, and the report ranks the feasible ones by their smallest margin. The per-mode, per-seed
numbers are kept as the trial's user attributes.

Protocol: a sweep selects, so it reads the validation split only (``eval_split =
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

The parts: what is searched (``space.py``), scored and constrained (``constraints.py``), where the
study lives (``storage.py``), how trials run (``run.py``) and the report (``report.py``).
"""
from .constraints import DIRECTIONS, OBJECTIVES, Constraint, constraint_margin, parse_constraints
from .report import pareto, trial_rows, write_report
from .run import HEARTBEAT, SELECTION_SEED_MIN, SELECTION_SEEDS, require_optuna, run_sweep
from .space import DEFAULT_SPACE, SEARCHABLE, Param, parse_param, parse_space
from .storage import default_storage, run_dir

__all__ = ["Constraint", "DEFAULT_SPACE", "DIRECTIONS", "HEARTBEAT", "OBJECTIVES", "Param", "SEARCHABLE",
           "SELECTION_SEEDS", "SELECTION_SEED_MIN", "constraint_margin", "default_storage", "pareto", "parse_constraints",
           "parse_param", "parse_space", "require_optuna", "run_dir", "run_sweep", "trial_rows", "write_report"]
