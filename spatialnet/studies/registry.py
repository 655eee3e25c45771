"""The registry of studies: each ``studies/<name>.py`` registers its one ``run(args)`` with what it
asks, what it writes under results/ and its arguments, as timm registers its models::

    def arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--seeds", ...)

    @register_study("wide", question="Does the width rule carry ...?", outputs=("wide.json", ...),
                    arguments=arguments)
    def run(args) -> None:
        ...

``catalog.py`` imports every study module, once each: a new study is one file and one line
there. ``spatialnet study NAME [ARGS]`` parses ARGS with the study's arguments (their
defaults make the study's results) and runs it; ``spatialnet study --list`` lists them. A
study's tables name it in their "Rerun:" line (``args.rerun``).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Study:
    name: str
    question: str
    outputs: tuple[str, ...]  # under results/
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], object]
    module: str

    def parser(self) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(prog=f"spatialnet study {self.name}", description=self.question)
        self.arguments(p)
        if not any(a.dest == "data_dir" for a in p._actions):
            p.add_argument("--data-dir", default=None,
                           help="data folder (else $SPATIALNET_DATA, else ~/.cache/spatialnet)")
        return p


STUDIES: dict[str, Study] = {}


def register_study(name: str, *, question: str, outputs, arguments: Callable | None = None):
    """Registers the decorated ``run(args)`` as study ``name`` (see the module docstring)."""
    def deco(run):
        if name in STUDIES and STUDIES[name].module != run.__module__:
            raise ValueError(f"study {name!r} is registered twice: by {STUDIES[name].module} and {run.__module__}")
        STUDIES[name] = Study(name, question, tuple(outputs), arguments or (lambda p: None), run, run.__module__)
        return run
    return deco
