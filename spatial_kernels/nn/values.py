"""One number for every key, or a mapping that names every key once: how alpha, beta and the
density lengths are given, per layer or per sheet."""
from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping


def per_key(what: str, value, keys: Iterable, *, kind: str = "key", positive: bool = False,
            normalise: Callable = lambda k: k) -> dict:
    """``{key: float}`` for ``keys``: ``value`` itself for every key, or ``value[key]`` when it is a
    mapping, which must name every key of ``keys`` once (its keys read through ``normalise``, e.g.
    ``int`` for layer numbers given as strings). Every value must be a finite number, >= 0 (> 0
    with ``positive``); a ValueError names ``what``, the ``kind`` of key and the key otherwise."""
    keys = list(keys)
    if isinstance(value, Mapping):
        given = {}
        for k, v in value.items():
            try:
                given[normalise(k)] = v
            except (TypeError, ValueError):
                raise ValueError(f"{what} names {k!r}, which is not a {kind}; the {kind}s are {keys}") from None
        unknown = sorted(set(given) - set(keys), key=str)
        missing = sorted(set(keys) - set(given), key=str)
        if unknown or missing:
            raise ValueError(f"{what} must name each {kind} of {keys}; unknown {unknown}, missing {missing}")
        out = {k: given[k] for k in keys}
    else:
        out = dict.fromkeys(keys, value)
    for k, v in out.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (
                positive and v == 0):
            raise ValueError(f"{what} for {kind} {k!r} must be a finite number {'> 0' if positive else '>= 0'}, "
                             f"got {v!r}")
    return {k: float(v) for k, v in out.items()}
