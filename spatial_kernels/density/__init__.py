"""Density cost ``V = sum_ij exp(-||p[i] - p[j]||)``: the kernels (``numba_cpu.py``,
``triton_gpu.py``), the reference (``reference.py``) and the operator with its public function
(``op.py``)."""
from .op import fused_density_cost

__all__ = ["fused_density_cost"]
