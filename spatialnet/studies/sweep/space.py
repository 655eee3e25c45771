"""What a sweep searches: parameters written ``name=low:high[:log]`` or ``name=a|b|c``, over the
config fields that change what a run computes."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ...config import RUNTIME_KEYS, TrainConfig

# the default search: the costs, the lr, the run length, the positions' lr, the init and the schedule,
# over ranges that hold every value tried by hand
DEFAULT_SPACE = ("alpha=0.3:30:log", "beta=0.3:30:log", "lr=0.001:0.01:log", "epochs=20:60",
                 "pos_lr_scale=0.3:10:log", "init_gain=0.5:4:log", "schedule=constant|cosine")
# what a trial's config may vary: the scalar fields that change what a run computes
FIXED = ("mode", "net", "seed", "data", "max_train", "hidden", "spatial_layers", "tasks", *RUNTIME_KEYS)
SEARCHABLE = tuple(k for k in TrainConfig().to_dict() if k not in FIXED)

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


