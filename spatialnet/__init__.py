"""The paper's spatial MLP (Wołczyk et al. 2019) end to end: model, data, training, split, plots, CLI.

Uses ``spatial_kernels`` through its public functions only. The exports load on first use, so
that ``python -m spatialnet`` and the ``spatialnet`` command can set up their own process
before torch is imported (``__main__.py``).
"""
import importlib

_EXPORTS = {"SpatialLinear": "model", "SpatialMLP": "model", "TrainConfig": "config", "build_model": "model",
            "greedy_split": "analysis.task_split", "task_masks": "analysis.task_split", "fit": "training",
            "train": "training"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'spatialnet' has no attribute {name!r}")
