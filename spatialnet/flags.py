"""Command-line flags from ``TrainConfig``: one flag per field (its metadata's help and choices),
``--preset``, and the config a command's flags give. Shared by the commands (``cli.py``) and the
studies that train (``studies/``)."""
from __future__ import annotations

import argparse
import dataclasses

from .config import CHOSEN, PER_MODE, PRESETS, TrainConfig


def int_list(name):
    """An argparse type: comma-separated ints (``name`` is the flag, for the error)."""
    def parse(s: str) -> list[int]:
        try:
            return [int(v) for v in s.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be comma-separated ints, got {s!r}") from None
    return parse


def str_list(s: str) -> list[str]:
    """An argparse type: comma-separated words."""
    return [v.strip() for v in s.split(",") if v.strip()]


def _flag_type(f: dataclasses.Field):
    """The argparse type of a config field, from its default (or its metadata's type)."""
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    if default is None:
        return f.metadata["type"]
    if isinstance(default, list):
        return int_list(f"--{f.name.replace('_', '-')}") if f.name != "tasks" else str_list
    return type(default)


# what a command sets itself, per run
PER_RUN_FIELDS = ("mode", "net", "seed")


def add_config_args(p: argparse.ArgumentParser, *, skip=PER_RUN_FIELDS, defaults: dict | None = None,
                    helps: dict | None = None) -> None:
    """One flag per ``TrainConfig`` field (its metadata's help and choices), except ``skip``, and
    ``--preset`` and ``--data-dir``.

    The flags' argparse defaults are suppressed, so that :func:`config_from_args` can tell a flag
    given from one left out: a left-out field takes ``defaults`` (the command's own), else
    ``--preset``'s value, else the config's default."""
    d = TrainConfig()
    defaults = defaults or {}
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        name = f"--{f.name.replace('_', '-')}"
        shown = defaults.get(f.name, getattr(d, f.name))
        shown = ",".join(map(str, shown)) if isinstance(shown, list) else shown
        if f.name in PER_MODE and f.name not in defaults:
            shown = "the mode's chosen setting: " + ", ".join(f"{m} {v[f.name]:g}" for m, v in CHOSEN.items())
        help_ = (helps or {}).get(f.name) or f.metadata["help"] + f" (default {shown})"
        if isinstance(getattr(d, f.name), bool):
            p.add_argument(name, action="store_true", default=argparse.SUPPRESS, help=help_)
            continue
        # choices are checked by TrainConfig.validate (a one-line error naming them), shown here
        choices = f.metadata["choices"]
        p.add_argument(name, type=_flag_type(f), default=argparse.SUPPRESS,
                       metavar="|".join(choices) if choices else None, help=help_)
    p.add_argument("--preset", choices=sorted(PRESETS), default=argparse.SUPPRESS,
                   help="start from an earlier setting instead of the defaults (flags given still win): "
                        + "; ".join(f"{k}: {' '.join(f'{n}={v}' for n, v in sorted(vals.items()))}"
                                    for k, vals in sorted(PRESETS.items())))
    p.add_argument("--data-dir", default=None, help="data folder (else $SPATIALNET_DATA, else ~/.cache/spatialnet)")
    p.set_defaults(_config_defaults=defaults)


def given_per_mode(args) -> frozenset:
    """The per-mode fields a flag or the preset gives (the rest take each mode's chosen setting)."""
    preset = PRESETS.get(getattr(args, "preset", None), {})
    return frozenset(k for k in PER_MODE if hasattr(args, k) or k in preset)


def config_from_args(args, **over) -> TrainConfig:
    """The run's config: the field's default, then ``--preset``, then the command's defaults, then
    the flags given, then ``over`` (what the command fixes)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    kw = {**PRESETS.get(getattr(args, "preset", None), {}), **getattr(args, "_config_defaults", {}), **given,
          **over}
    return TrainConfig(**kw).validate()
