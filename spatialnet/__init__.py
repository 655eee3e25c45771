"""The paper's spatial MLP (Wołczyk et al. 2019) end to end: model, data, training, split, plots, CLI.

Uses ``spatial_kernels`` through its public functions only.
"""
from .model import SpatialLinear, SpatialMLP
from .split import greedy_split, task_masks

__all__ = ["SpatialLinear", "SpatialMLP", "greedy_split", "task_masks"]
