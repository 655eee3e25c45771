"""Every study, imported once so that each registers itself (``registry.py``): a new study is one
file and one import line below. ``spatialnet study`` reads this catalog."""
from __future__ import annotations

import os
import shlex

# every study, one line each (importing a study registers it)
from . import dead_tol  # noqa: F401
from . import demo_subset  # noqa: F401
from . import drop_width  # noqa: F401
from . import gpt2_text  # noqa: F401
from . import grid  # noqa: F401
from . import l1_match  # noqa: F401
from . import references  # noqa: F401
from . import selection  # noqa: F401
from . import selection_2x  # noqa: F401
from . import selection_sequential  # noqa: F401
from . import sequential_robust  # noqa: F401
from . import sequential_seeds  # noqa: F401
from . import table1  # noqa: F401
from . import tasks  # noqa: F401
from . import vit_modules  # noqa: F401
from . import wide  # noqa: F401
from . import width_forces  # noqa: F401
from . import width_gradients  # noqa: F401
from . import width_probes  # noqa: F401
from .registry import STUDIES, Study


def study(name: str) -> Study:
    if name not in STUDIES:
        raise ValueError(f"no study {name!r}; the studies are {', '.join(sorted(STUDIES))} (spatialnet study --list)")
    return STUDIES[name]


def all_studies() -> list[Study]:
    return sorted(STUDIES.values(), key=lambda s: s.name)


# where this machine keeps things, and a switch that only reads back: not part of a rerun line
_PLACES = ("--data-dir", "--out", "--runs-dir")
_READ_ONLY = ("--finished-only",)


def rerun_argv(argv) -> list[str]:
    """``argv`` less the flags in _PLACES (with their values) and _READ_ONLY."""
    shown, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in _PLACES:
            skip = True
        elif a not in _READ_ONLY and not a.startswith(tuple(f"{f}=" for f in _PLACES)):
            shown.append(a)
    return shown


def run_study(name: str, argv=(), data_dir=None):
    """Runs study ``name`` with ``argv`` (its own flags; none: the declared study). ``data_dir``
    reaches every run as ``--data-dir`` and $SPATIALNET_DATA."""
    s = study(name)
    argv = [a for a in argv if a != "--"]
    args = s.parser().parse_args(argv)
    args.rerun = "spatialnet study " + " ".join([name, *(shlex.quote(a) for a in rerun_argv(argv))])
    data_dir = data_dir or getattr(args, "data_dir", None)
    if data_dir:
        args.data_dir = str(data_dir)
    env = os.environ.get("SPATIALNET_DATA")
    if data_dir:
        os.environ["SPATIALNET_DATA"] = str(data_dir)
    try:
        return s.run(args)
    finally:
        if data_dir:
            if env is None:
                os.environ.pop("SPATIALNET_DATA", None)
            else:
                os.environ["SPATIALNET_DATA"] = env
