"""Means and intervals over seeds, the one place every table and sweep takes them from. Missing
values (None: a measure a net does not have, e.g. a regular net's silhouette) are left out."""
from __future__ import annotations

import statistics


def present(xs) -> list[float]:
    return [x for x in (xs or []) if x is not None]


def mean(xs) -> float | None:
    """The mean of the values present, None when there are none."""
    xs = present(xs)
    return statistics.fmean(xs) if xs else None


def mean_std(xs) -> tuple[float, float] | None:
    """(mean, sample standard deviation; 0 for one value), None when no value is present."""
    xs = present(xs)
    if not xs:
        return None
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def ci95(xs) -> tuple[float, float] | None:
    """(mean, half-width of the 95 % t-interval) over seeds; half-width 0 for one seed."""
    xs = present(xs)
    if not xs:
        return None
    if len(xs) < 2:
        return (xs[0], 0.0)
    from scipy.stats import t
    return (statistics.fmean(xs), float(t.ppf(0.975, len(xs) - 1)) * statistics.stdev(xs) / len(xs) ** 0.5)


def fmt_mean_std(xs, spec: str = ".3f") -> str:
    """``mean ± std`` of the values present, ``–`` when none."""
    ms = mean_std(xs)
    return "–" if ms is None else f"{ms[0]:{spec}} ± {ms[1]:{spec}}"
