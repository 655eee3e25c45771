"""A module layer over the fused ops: spatial costs for any model's Linear and Conv layers.

    costs = spatialize(model, ["blocks.*.mlp.fc1", "blocks.*.mlp.fc2"])
    loss = task_loss + costs(alpha=0.1, beta=1.0)   # the strengths are the caller's: no defaults

Neurons live on sheets (``sheets.py`` says how they are inferred); ``costs.py`` holds the
positions and the cost. This layer knows modules and sheets; the kernels below know tensors only.
"""
from .costs import Sheet, SpatialCosts, channel_strength, spatialize
from .norms import DENSITY_NORMS, TRANSPORT_NORMS, density_divisor, density_norm, transport_divisor, transport_norm
from .inference import ELEMENTWISE_MODULES
from .sheets import SUPPORTED
from .values import per_key

__all__ = ["DENSITY_NORMS", "ELEMENTWISE_MODULES", "SUPPORTED", "Sheet", "SpatialCosts", "TRANSPORT_NORMS", "channel_strength", "density_divisor", "density_norm", "per_key", "spatialize",
           "transport_divisor", "transport_norm"]
