"""The costs' normalisations, named by what they do; the one vocabulary that ``spatialize``,
spatialnet's model, config and command line use.

Transport of a layer with ``N_out`` outputs and ``N_in`` inputs, ``T = c_T sum_ij |w_ij| d_ij``:

- ``per_out``: ``c_T = 1 / N_out``, the paper's printed formula (alias ``paper``);
- ``per_connection``: ``c_T = 1 / (N_out N_in)``, the mean over connections, as the paper's
  authors' code took it (alias ``mean``).

Density of a sheet of ``N`` neurons, ``V = c_V sum_ij exp(-d_ij / l)``:

- ``per_pair``: ``c_V = 1 / N^2``, the mean over pairs, the paper's (alias ``paper``);
- ``per_neuron``: ``c_V = 1 / N``, each neuron's summed repulsion averaged over neurons, so it
  does not fade with width (alias ``neuron``).

The old names are accepted everywhere and read as the new ones.
"""
from __future__ import annotations

TRANSPORT_NORMS = ("per_out", "per_connection")
DENSITY_NORMS = ("per_pair", "per_neuron")
TRANSPORT_ALIASES = {"paper": "per_out", "mean": "per_connection"}
DENSITY_ALIASES = {"paper": "per_pair", "neuron": "per_neuron"}


def _canonical(kind: str, name, names, aliases) -> str:
    if isinstance(name, str):
        name = aliases.get(name, name)
        if name in names:
            return name
    accepted = ", ".join(f"{n!r}" for n in names) + " (or " + ", ".join(
        f"{a!r} for {n!r}" for a, n in aliases.items()) + ")"
    raise ValueError(f"{kind} must be one of {accepted}, got {name!r}")


def transport_norm(name) -> str:
    """The canonical name of a transport normalisation (an alias is read as its new name)."""
    return _canonical("transport_norm", name, TRANSPORT_NORMS, TRANSPORT_ALIASES)


def density_norm(name) -> str:
    """The canonical name of a density normalisation (an alias is read as its new name)."""
    return _canonical("density_norm", name, DENSITY_NORMS, DENSITY_ALIASES)


def transport_divisor(norm: str, n_out, n_in):
    """``1 / c_T`` of a layer with ``n_out`` outputs and ``n_in`` inputs (an int for int sizes:
    weights divide by it exactly as they always did)."""
    return n_out if transport_norm(norm) == "per_out" else n_out * n_in


def density_divisor(norm: str, n):
    """``1 / c_V`` of a sheet of ``n`` neurons."""
    return n * n if density_norm(norm) == "per_pair" else n
