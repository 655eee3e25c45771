"""The costs' normalisations, named by what they do; the one vocabulary that ``spatialize``,
spatialnet's model, config and command line use.

Transport of a layer with ``N_out`` outputs and ``N_in`` inputs, ``T = c_T sum_ij |w_ij| d_ij``:

- ``per_connection``: ``c_T = 1 / (N_out N_in)``, the mean over connections, as the paper's
  authors' code took it (the default everywhere: ``spatialize``, ``SpatialMLP``, ``TrainConfig``);
- ``per_out``: ``c_T = 1 / N_out``, the paper's printed formula.

Density of a sheet of ``N`` neurons, ``V = c_V sum_ij exp(-d_ij / l)``:

- ``per_pair``: ``c_V = 1 / N^2``, the mean over pairs, the paper's (the default everywhere);
- ``per_neuron``: ``c_V = 1 / N``, each neuron's summed repulsion averaged over neurons, so it
  does not fade with width.

One name, one meaning: nothing else is accepted.
"""
from __future__ import annotations

TRANSPORT_NORMS = ("per_connection", "per_out")
DENSITY_NORMS = ("per_pair", "per_neuron")


def _check(kind: str, name, names) -> str:
    if isinstance(name, str) and name in names:
        return name
    raise ValueError(f"{kind} must be one of {', '.join(map(repr, names))}, got {name!r}")


def transport_norm(name) -> str:
    """``name``, checked: one of :data:`TRANSPORT_NORMS` (a ValueError naming them otherwise)."""
    return _check("transport_norm", name, TRANSPORT_NORMS)


def density_norm(name) -> str:
    """``name``, checked: one of :data:`DENSITY_NORMS` (a ValueError naming them otherwise)."""
    return _check("density_norm", name, DENSITY_NORMS)


def transport_divisor(norm: str, n_out, n_in):
    """``1 / c_T`` of a layer with ``n_out`` outputs and ``n_in`` inputs (an int for int sizes:
    weights divide by it exactly as they always did)."""
    return n_out if transport_norm(norm) == "per_out" else n_out * n_in


def density_divisor(norm: str, n):
    """``1 / c_V`` of a sheet of ``n`` neurons."""
    return n * n if density_norm(norm) == "per_pair" else n
