"""``spatialize(model, layers)``: positions for the neurons of any model's Linear/Conv layers, and
the spatial cost ``(1/|L|) sum_l alpha T(l) + beta sum_s V(s)`` through the fused ops.

For a selected layer l reading sheet ``a`` (``N_a`` neurons) and writing sheet ``b`` (``N_b``)::

    T(l) = c_T * fused_transport_cost(W_l, p_a, p_b)     c_T = 1/N_b (per_out) or 1/(N_b N_a) (per_connection)

and for every sheet s that some selected layer writes, once however many write it::

    V(s) = c_V * fused_density_cost(p_s / l_s)            c_V = 1/N_s^2 (per_pair) or 1/N_s (per_neuron)

(the normalisations' names: ``norms.py``).

with ``l_s`` the sheet's density length (``density_length``; 1, the paper's exp(-d), by default:
then the positions go in as they are).

For a chain of layers (each sheet written by one layer) this is SpatialMLP's
``(1/|L|) sum_l [alpha T(l) + beta V(l)]``, summed in that order, term by term, with the weights
taken as ``(alpha/|L|)/c``, the order and rounding of SpatialMLP's formula. A
conv layer's weight ``(n_out, n_in / groups, *kernel)`` counts each connected (out, in) channel
pair once, with ``sum_taps |w|`` as its weight; a grouped or depthwise one connects each output
only to its group's inputs, and a weight stored (inputs, outputs) (transformers' Conv1D,
nn.ConvTranspose) is read as it lies (``sheets.geometry``). The constant weights go into the kernels as ``scale=`` (dW is
stored already weighted).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
import torch
from torch import nn

from ..density import fused_density_cost
from ..transport import fused_transport_cost
from .norms import density_divisor, density_norm as _density_norm, transport_divisor, transport_norm as _transport_norm
from .sheets import geometry, infer_ports, port_size, select_layers
from .values import per_key

@dataclass(frozen=True)
class Sheet:
    """A set of neurons sharing positions: ``size`` of them, written by the layers in ``writers``
    (their outputs) and read by those in ``readers`` (their inputs); ``key`` is its entry in
    :attr:`SpatialCosts.positions` (and ``positions.<key>`` in the state_dict)."""
    name: str
    size: int
    key: str
    writers: tuple[str, ...]
    readers: tuple[str, ...]
    gated: bool = False  # written by layers whose outputs are multiplied element by element (a gated MLP)


def channel_strength(W: torch.Tensor, groups: int = 1, transposed: bool = False) -> torch.Tensor:
    """``(n_out, n_in)`` strength of each channel pair: ``|W|`` summed over the kernel taps; for a
    grouped weight 0 between channels of different groups, for a transposed one (stored inputs
    first) read as it lies."""
    a = W.abs() if W.dim() == 2 else W.abs().sum(dim=tuple(range(2, W.dim())))
    if groups > 1:  # block-diagonal: (rows, cols / groups) -> (rows, cols)
        rows, local = a.shape
        dense = a.new_zeros(rows, local * groups)
        per = rows // groups
        for g in range(groups):
            dense[g * per:(g + 1) * per, g * local:(g + 1) * local] = a[g * per:(g + 1) * per]
        a = dense
    return a.t() if transposed else a


def _key(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


class SpatialCosts(nn.Module):
    """The positions of a spatialized model's sheets and its spatial cost. Made by :func:`spatialize`.

    Holds the selected layers without registering them: its parameters and state_dict are the
    positions alone (``positions.<sheet key>``), and the model keeps its class and forward.
    """

    def __init__(self, selected: dict[str, nn.Module], ports: list[list[tuple[str, str]]], *,
                 dim: int, transport_norm: str, density_norm: str, backend: str,
                 names: dict[tuple[str, str], str], generator: torch.Generator | None,
                 adopt: dict[str, nn.Parameter] | None = None, density_length=1.0, gated=None):
        super().__init__()
        self.dim, self.transport_norm, self.density_norm, self.backend = dim, transport_norm, density_norm, backend
        first = next(iter(selected.values())).weight
        dtype = torch.float64 if first.dtype == torch.float64 else torch.float32
        self._layers = tuple(selected.items())  # a tuple: not registered as submodules
        self.positions = nn.ParameterDict()
        self.sheets: dict[str, Sheet] = {}
        adopt = dict(adopt or {})
        self._sheet_of: dict[tuple[str, str], str] = {}
        self.geometry = {n: geometry(m, n) for n, m in selected.items()}
        for group, is_gated in zip(ports, gated or [False] * len(ports)):
            writers = tuple(n for n, p in group if p == "out")
            readers = tuple(n for n, p in group if p == "in")
            given = sorted({names[p] for p in group if p in names})
            name = given[0] if given else (writers[0] if writers else readers[0] + ".in")
            key = _key(name)
            if key in self.positions:
                raise ValueError(f"sheet {name!r} would be stored as positions.{key}, which another sheet has; "
                                 f"rename one with sheets=")
            size = port_size(selected[group[0][0]], group[0][1])
            if name in adopt:
                p = adopt[name]
                if not isinstance(p, nn.Parameter) or tuple(p.shape) != (size, dim):
                    raise ValueError(f"positions[{name!r}] must be an nn.Parameter of shape ({size}, {dim}) (the "
                                     f"sheet's neurons, dim), got {type(p).__name__} {tuple(getattr(p, 'shape', ()))}")
                self.positions[key] = p  # shared with its owner, not copied
            else:
                p = torch.randn(size, dim, generator=generator, dtype=dtype)  # N(0, 1), as in the paper
                self.positions[key] = nn.Parameter(p.to(first.device))
            self.sheets[name] = Sheet(name, size, key, writers, readers, bool(is_gated))
            for port in group:
                self._sheet_of[port] = name
        unknown = sorted(set(adopt) - set(self.sheets))
        if unknown:
            raise ValueError(f"positions= names {unknown}, which are not sheets; the sheets are {list(self.sheets)}")
        self.lengths = self._per_sheet("density_length", density_length, positive=True)
        # per layer: (name, module, in key, out key, 1/c_T, and 1/c_V of its out sheet if it is the
        # sheet's first writer, else None)
        self._terms = []
        for n, m in self._layers:
            a, b = self.sheets[self._sheet_of[n, "in"]], self.sheets[self._sheet_of[n, "out"]]
            dnorm = density_divisor(density_norm, b.size) if b.writers[0] == n else None
            self._terms.append((n, m, a.key, b.key, transport_divisor(transport_norm, b.size, a.size), dnorm))

    @property
    def layers(self) -> list[str]:
        return [n for n, _ in self._layers]

    @property
    def density_sheets(self) -> list[str]:
        """The sheets with a density term: those some selected layer writes."""
        return [s.name for s in self.sheets.values() if s.writers]

    def _per_sheet(self, what: str, value, positive: bool = False, names=None) -> dict[str, float]:
        """``{sheet: float}`` from one number or a mapping that names every sheet of ``names``
        (default: every sheet) once."""
        return per_key(what, value, list(self.sheets) if names is None else names, kind="sheet", positive=positive)

    def _per_layer(self, what: str, value) -> dict[str, float]:
        """``{layer: float}`` from one number or a mapping that names every layer once."""
        return per_key(what, value, self.layers, kind="layer")

    def _density(self, sheet: Sheet, scale: float) -> torch.Tensor:
        p = self.positions[sheet.key]
        length = self.lengths[sheet.name]
        return fused_density_cost(p if length == 1.0 else p / length, scale=scale, backend=self.backend)

    def sheet(self, layer: str, port: str) -> Sheet:
        """The sheet that ``layer`` reads (``port="in"``) or writes (``"out"``)."""
        if (layer, port) not in self._sheet_of:
            raise KeyError(f"no sheet for ({layer!r}, {port!r}): layers are {self.layers}, ports 'in' and 'out'")
        return self.sheets[self._sheet_of[layer, port]]

    def positions_of(self, layer: str, port: str) -> nn.Parameter:
        return self.positions[self.sheet(layer, port).key]

    def strength(self, layer: str) -> torch.Tensor:
        """``(n_out, n_in)`` |w| of ``layer``'s channel pairs (summed over taps; 0 across groups),
        detached: what the split and the modularity measures read."""
        g = self.geometry[layer]
        return channel_strength(dict(self._layers)[layer].weight.detach(), g.groups, g.transposed)

    def chain(self, layers: list[str]) -> tuple[list[torch.Tensor], list[nn.Parameter]]:
        """``(strengths, positions)`` of a chain of layers, each reading the sheet the one before
        writes: ``strengths[k] = strength(layers[k])``; ``positions`` = the first layer's input
        sheet, then each layer's output sheet (K + 1 of them). What a split along the chain
        (spatialnet's ``greedy_split``) and its measures (``chain_measures``) read; a break in the
        chain is a ValueError naming it."""
        for a, b in zip(layers, layers[1:]):
            if self.sheet(b, "in") != self.sheet(a, "out"):
                raise ValueError(f"{b!r} reads sheet {self.sheet(b, 'in').name!r}, not {a!r}'s output sheet "
                                 f"{self.sheet(a, 'out').name!r}: {layers} is not a chain of sheets")
        positions = [self.positions_of(layers[0], "in")] + [self.positions_of(n, "out") for n in layers]
        return [self.strength(n) for n in layers], positions

    def _transport(self, name: str, m: nn.Module, key_in: str, key_out: str, scale) -> torch.Tensor:
        W, p_in, p_out = m.weight, self.positions[key_in], self.positions[key_out]
        g = self.geometry[name]
        rows, cols = (len(p_in), len(p_out) // g.groups) if g.transposed else (len(p_out), len(p_in) // g.groups)
        if not torch.compiler.is_compiling() and tuple(W.shape[:2]) != (rows, cols):
            raise ValueError(f"layer {name!r} has weight {tuple(W.shape)}, but its sheets hold {len(p_out)} output "
                             f"and {len(p_in)} input neurons: was it replaced or resized after spatialize()?")
        # a conv weight goes in whole: the fused op sums |W| over the taps itself, no temporary
        return fused_transport_cost(W, p_in, p_out, scale=scale, backend=self.backend, groups=g.groups,
                                    transposed=g.transposed)

    def transport_cost(self, layer: str, scale: float = 1.0) -> torch.Tensor:
        """``scale * T(layer)``, normalised as ``transport_norm`` says."""
        for n, m, ki, ko, norm, _ in self._terms:
            if n == layer:
                return self._transport(n, m, ki, ko, scale / norm)
        raise KeyError(f"{layer!r} is not a spatialized layer: {self.layers}")

    def density_cost(self, sheet: str, scale: float = 1.0) -> torch.Tensor:
        """``scale * V(sheet)``, normalised as ``density_norm`` says, at the sheet's density length."""
        s = self.sheets[sheet]
        return self._density(s, scale / density_divisor(self.density_norm, s.size))

    def cost(self, alpha, beta) -> torch.Tensor:
        """``(1/|L|) sum_l [alpha_l T(l) + beta_s V(s)]``, a 0-dim tensor with gradients for the
        weights and the positions. ``alpha`` is one number or ``{layer: alpha_l}`` naming every
        layer; ``beta`` one number or ``{sheet: beta_s}`` naming every sheet with a density
        (:attr:`density_sheets`; a width rule's per-term weights). No defaults: how strong the
        costs are against a task's loss is the model's own question (the paper's MLP took 1 and 3,
        spatialnet's chosen setting is ``spatialnet.config.CHOSEN``)."""
        k = len(self._terms)
        alphas = self._per_layer("alpha", alpha)
        betas = self._per_sheet("beta", beta, names=self.density_sheets)
        total = None
        for n, m, ki, ko, norm, dnorm in self._terms:
            term = self._transport(n, m, ki, ko, alphas[n] / k / norm)
            if dnorm is not None:
                s = self.sheets[self._sheet_of[n, "out"]]
                term = term + self._density(s, betas[s.name] / k / dnorm)
            total = term if total is None else total + term
        return total

    def forward(self, alpha, beta) -> torch.Tensor:
        return self.cost(alpha, beta)

    def param_groups(self, model: nn.Module | None = None, *, lr: float | None = None,
                     position_lr: float | None = None, weight_decay: float | None = None) -> list[dict]:
        """Optimiser groups: ``model``'s trainable parameters (positions excluded, with ``lr`` and
        ``weight_decay`` when given), then the positions, with ``position_lr`` and no weight decay."""
        own = {id(p) for p in self.positions.values()}
        groups = []
        if model is not None:
            g = {"params": [p for p in model.parameters() if p.requires_grad and id(p) not in own]}
            if lr is not None:
                g["lr"] = lr
            if weight_decay is not None:
                g["weight_decay"] = weight_decay
            groups.append(g)
        g = {"params": list(self.positions.values()), "weight_decay": 0.0}
        if position_lr is not None:
            g["lr"] = position_lr
        groups.append(g)
        return groups

    def summary(self) -> str:
        """A table of what was taken, one row per layer (its type, weight shape, groups, the sheets
        it reads and writes and their neurons) and one per sheet, to check at a glance."""
        rows = [("layer", "type", "weight", "reads (neurons)", "writes (neurons)")]
        for n, m in self._layers:
            g = self.geometry[n]
            kind = type(m).__name__ + (f" groups={g.groups}" if g.groups > 1 else "") + (
                " (in, out)" if g.transposed else "")
            a, b = self.sheet(n, "in"), self.sheet(n, "out")
            rows.append((n, kind, "x".join(map(str, m.weight.shape)), f"{a.name} ({a.size})", f"{b.name} ({b.size})"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines += ["", f"{len(self.sheets)} sheets, dim {self.dim}:"]
        for s in self.sheets.values():
            writes = f"written by {', '.join(s.writers)}" if s.writers else "NOTHING WRITES IT (an input: no density)"
            reads = f"read by {', '.join(s.readers)}" if s.readers else "NOTHING READS IT (an output)"
            lines.append(f"  {s.name}: {s.size} neurons, {'gated: ' if s.gated else ''}{writes}; {reads}")
        return "\n".join(lines)

    def extra_repr(self) -> str:
        sheets = ", ".join(f"{s.name}: {s.size}" for s in self.sheets.values())
        lengths = "" if all(v == 1.0 for v in self.lengths.values()) else f", density_length={self.lengths}"
        return (f"layers={len(self._terms)}, dim={self.dim}, transport_norm={self.transport_norm!r}, "
                f"density_norm={self.density_norm!r}, sheets=[{sheets}]{lengths}")


def spatialize(model: nn.Module, layers, dim: int = 2, *, sheets: dict | None = None, infer: bool = True,
               transport_norm: str = "per_connection", density_norm: str = "per_pair", backend: str = "auto",
               elementwise: tuple = (), attach: str | None = None, positions: dict | None = None,
               generator: torch.Generator | None = None, density_length=1.0, example=None,
               verbose: bool = False) -> SpatialCosts:
    """Positions for the neurons of ``model``'s selected layers, and their spatial cost.

    Args:
        model: any ``nn.Module``; its class and forward are left as they are.
        layers: module names or glob patterns (``"blocks.*.mlp.fc1"``: ``*`` within a dotted
            segment, ``**`` across segments); a pattern selects the supported layers among its
            matches: ``nn.Linear``, ``nn.Conv1d/2d/3d`` (any groups, depthwise included),
            ``nn.ConvTranspose1d/2d`` and transformers' ``Conv1D`` (GPT-2's, weight (in, out)).
        dim: coordinates per neuron, 1..3. Positions start N(0, 1) (``generator`` if given).
        sheets: ``{layer: (in_sheet, out_sheet)}`` names; ports named alike are one sheet, ``None``
            leaves a port to inference. ``infer=False`` turns inference off (every port not named
            gets a sheet of its own).
        transport_norm: ``"per_connection"`` (1/(N_out N_in), the mean over connections: the
            default, as for ``SpatialMLP`` and ``TrainConfig``) or ``"per_out"`` (1/N_out, the
            paper's printed formula).
        density_norm: ``"per_pair"`` (1/N^2, the paper's: the default) or ``"per_neuron"`` (1/N)
            (``norms.py``).
        backend: passed to the fused ops (``"auto"``, ``"reference"``, ``"numba"``, ``"triton"``).
        elementwise: further module classes whose output neuron j is input neuron j.
        attach: a name under which the returned module is added to ``model`` (so that
            ``model.state_dict()``, ``.to()`` and DDP carry the positions); None keeps them apart.
            Not for an ``nn.Sequential`` (its forward calls every child).
        positions: ``{sheet name: nn.Parameter}`` to use as those sheets' positions (shared, not
            copied, and not drawn: the RNG is left as it is), e.g. positions a model already owns.
        density_length: the length unit of each sheet's density, ``exp(-d / l)``: one number or
            ``{sheet name: l}`` naming every sheet; 1 (the default) is the paper's ``exp(-d)``. A
            sheet made w times wider in the same area needs ``l / sqrt(w)`` to keep its neurons as
            far apart in that unit (the width rule, docs/width-rule.md).
        example: inputs of one forward pass (a tensor, a tuple of arguments or a dict of keyword
            arguments, e.g. ``torch.randn(1, 3, 224, 224)``): the sheets then follow the data
            through that pass, shapes known (``flow.py``), rather than through a torch.fx trace.
            A Hugging Face model's ``dummy_inputs`` serve when none is given.
        verbose: print :meth:`SpatialCosts.summary`, the layers and sheets taken.

    Returns a :class:`SpatialCosts`; ``costs(alpha, beta)`` is the cost to add to the loss.
    Two layers whose outputs are multiplied element by element (a gated MLP) write one sheet,
    marked ``gated`` in ``costs.sheets``.
    """
    if isinstance(dim, bool) or dim not in (1, 2, 3):
        raise ValueError(f"dim must be 1, 2 or 3 (coordinates per neuron), got {dim!r}")
    transport_norm, density_norm = _transport_norm(transport_norm), _density_norm(density_norm)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    selected = select_layers(model, layers)
    ports, gated = infer_ports(model, selected, sheets, infer, tuple(elementwise), example)
    names = {(n, p): str(s) for n, pair in (sheets or {}).items() for p, s in zip(("in", "out"), pair)
             if s is not None}
    costs = SpatialCosts(selected, ports, dim=dim, transport_norm=transport_norm, density_norm=density_norm,
                         backend=backend, names=names, generator=generator, adopt=positions,
                         density_length=density_length, gated=gated)
    if attach is not None:
        if isinstance(model, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            raise ValueError(f"attach={attach!r}: a {type(model).__name__} runs or lists every child, so adding the "
                             f"costs to it would change it; keep them apart (attach=None, save costs.state_dict() "
                             f"beside the model's) or attach them to a module that holds this one")
        if hasattr(model, attach):
            raise ValueError(f"attach={attach!r}: {type(model).__name__} already has an attribute of that name")
        model.add_module(attach, costs)
    if verbose:
        print(costs.summary())
    return costs
