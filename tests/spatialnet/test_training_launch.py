"""The command's own process settings: made before torch loads, never by importing the library."""
from __future__ import annotations

import os
import subprocess
import sys


def _run(code: str, **env) -> str:
    full_env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    full_env.update(env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, check=True)
    return out.stdout.strip()


def test_importing_the_library_sets_nothing_and_loads_no_torch():
    out = _run("import os, sys, spatialnet; print(os.environ.get('THP_MEM_ALLOC_ENABLE'), 'torch' in sys.modules)")
    assert out == "None False"


def test_the_command_turns_on_huge_pages_before_torch_loads():
    # main() sets the variable, then imports the CLI (and, for a command's flags, torch); a command's
    # --help exits before any work
    code = ("import os, sys, spatialnet.__main__ as m\n"
            "try:\n    m.main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(os.environ.get('THP_MEM_ALLOC_ENABLE'), 'torch' in sys.modules)")
    assert _run(code).splitlines()[-1] == "1 True"


def test_a_users_choice_is_kept():
    code = ("import os, spatialnet.__main__ as m\n"
            "try:\n    m.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(os.environ.get('THP_MEM_ALLOC_ENABLE'))")
    assert _run(code, THP_MEM_ALLOC_ENABLE="0").splitlines()[-1] == "0"


def test_the_lazy_exports_resolve():
    import spatialnet

    assert spatialnet.SpatialMLP.__name__ == "SpatialMLP" and callable(spatialnet.greedy_split)
    try:
        spatialnet.nothing_here
    except AttributeError as err:
        assert "nothing_here" in str(err)
    else:
        raise AssertionError("a missing attribute must raise AttributeError")
