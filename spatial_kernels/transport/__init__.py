"""Transport cost ``T = sum_ij |W_ij| * ||p_out[i] - p_in[j]||``: the kernels (``numba_cpu.py``,
``triton_gpu.py``), the reference (``reference.py``) and the operator with its public function
(``op.py``)."""
from .op import fused_transport_cost

__all__ = ["fused_transport_cost"]
