"""Spatial-network costs and their gradients, fused so that no N x M distance tensor is made.

    fused_transport_cost(W, p_in, p_out)   sum_ij |W_ij| * ||p_out[i] - p_in[j]||
    fused_density_cost(p)                  sum_ij exp(-||p[i] - p[j]||)

Backends: ``reference`` (plain PyTorch, the ground truth), ``numba`` (CPU), ``triton`` (GPU).
See README.md beside this file for the gradients and how the reductions are shaped.
"""
from ._backends import available_backends
from ._accumulate import accumulate_path, set_accumulate
from .density import fused_density_cost
from .density.reference import density_cost_reference
from .transport import fused_transport_cost
from .transport.reference import transport_cost_reference

__all__ = [
    "accumulate_path",
    "available_backends",
    "density_cost_reference",
    "fused_density_cost",
    "fused_transport_cost",
    "set_accumulate",
    "transport_cost_reference",
]
__version__ = "0.2.0"
