"""What a sweep scores and what it must meet: the objectives' directions, and constraints on the
read-outs (met by the worst seed of each mode), their gaps and margins."""
from __future__ import annotations

from dataclasses import dataclass

from ...analysis.evaluate import READOUT, TARGETS, target_gap
from ...analysis.stats import mean

OBJECTIVES = ("full", "drop")
# what --objectives may name, and which way each goes; a trial is scored by the means over its seeds
# (a read-out that is None, e.g. the silhouette of a net without positions, counts as its worst)
DIRECTIONS = {"full": "maximize", "drop": "minimize", "silhouette": "maximize", "ari": "maximize",
              "share_norm": "minimize", "dead_fraction": "minimize", "newman_q": "maximize", "nn": "maximize",
              "stacked": "minimize", "on_next": "minimize", "purity": "maximize", "territory": "maximize",
              "band": "minimize", "out_silhouette": "maximize"}


def score(xs, direction):
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
    from ...data import MODES
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


def named_gaps(per_mode: dict, constraints) -> dict[str, float]:
    """One gap per (constraint, mode it applies to), named ``mode.KEY<=V``: how far the worst seed
    misses it (<= 0: met)."""
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


