"""The paper's spatial MLP: an MLP whose neurons have learnable positions, and its spatial loss.

Layer convention (used by ``spatial_layers``, the CLI's ``--spatial-layers`` and the split): the
Linear layers are numbered 1..K from the input; layer ``l`` is the ``l``-th Linear *and* the layer
of neurons it produces (``sizes[l]`` of them). The paper's n-128-128-128-256-20 net has K = 5 and
puts its costs on the third hidden layer, the fourth and the output: ``spatial_layers=(3, 4, 5)``.

For a spatial layer l (with N_l neurons at positions p_l and weights W_l)::

    T(l) = c_T(l) * fused_transport_cost(W_l, p_{l-1}, p_l)     c_T = 1/N_l (per_out) or 1/(N_l N_{l-1}) (per_connection)
    V(l) = c_V(l) * fused_density_cost(p_l / len_l)            c_V = 1/N_l^2 (per_pair) or 1/N_l (per_neuron)
    spatial_loss = (1/|L|) * sum_{l in L} [alpha_l * T(l) + beta_l * V(l)]

``len_l`` is layer l's density length (1, the paper's exp(-d), unless ``density_lengths`` says
otherwise), and alpha, beta one number each or per layer (the width rule's, ``config.py``).

T(l) needs the positions of layer l-1, so that layer has positions too; the input pixels have
none, so layer 1 cannot be spatial. Positions are drawn from N(0, 1), as in the paper.

The costs are computed by ``spatial_kernels.nn`` (``spatialize`` over these layers, with the
layers' own positions as its sheets), the one implementation for any model; they equal the
per-layer sum of the formula above to the bit (tests/spatialnet/test_model_costs.py).

Two controls ask whether space is needed at all:

- ``transport="constant"`` (the L1-only control): every distance in T(l) is replaced by one
  constant, the mean of ||p_i - p_j|| over the layer's connections, taken afresh each step and
  detached, so T(l) = c_T * mean_dist * sum |w|: the same size of L1 penalty, and no pull of
  the positions towards the weights (they feel only the density term).
- ``freeze_positions=True``: the positions keep their initial values (``requires_grad`` off;
  the optimiser gets none of them); the weights still pay the transport by distance.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn

from spatial_kernels import fused_transport_cost
from spatial_kernels.nn import density_norm as check_density_norm, per_key, spatialize, transport_divisor
from spatial_kernels.nn import transport_norm as check_transport_norm

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}
TRANSPORTS = ("distance", "constant")
INITS = ("torch", "glorot")


class SpatialLinear(nn.Linear):
    """``nn.Linear`` whose ``out_features`` neurons have learnable positions ``(out_features, dim)``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, dim: int = 2,
                 device=None, dtype=None):
        if dim not in (1, 2, 3):
            raise ValueError(f"dim must be 1, 2 or 3 (coordinates per neuron), got {dim!r}")
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.dim = dim
        self.positions = nn.Parameter(torch.empty(out_features, dim, device=device, dtype=dtype))
        nn.init.normal_(self.positions, 0.0, 1.0)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", dim={self.dim}"


def _check_sizes(sizes) -> list[int]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise TypeError(f"sizes must be a sequence of ints, got {type(sizes).__name__}")
    if len(sizes) < 2:
        raise ValueError(f"sizes must hold at least the input and output widths, got {list(sizes)}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int):
            raise TypeError(f"sizes must hold ints, got {s!r} in {list(sizes)}")
        if s < 1:
            raise ValueError(f"sizes must be positive, got {list(sizes)}")
    return list(sizes)


def check_spatial_layers(spatial_layers, num_layers: int) -> tuple[int, ...]:
    """Validates 1-based Linear-layer indices; layer 1 has no input positions, so 2..K only."""
    if isinstance(spatial_layers, (str, bytes)) or not isinstance(spatial_layers, Sequence):
        raise TypeError(
            f"spatial_layers must be a sequence of ints, got {type(spatial_layers).__name__}")
    out = []
    for l in spatial_layers:
        if isinstance(l, bool) or not isinstance(l, int):
            raise TypeError(f"spatial_layers must hold ints, got {l!r}")
        if not 2 <= l <= num_layers:
            raise ValueError(
                f"spatial_layers index {l} is out of range: Linear layers are numbered 1..{num_layers} "
                f"from the input, and layer 1 cannot be spatial (input pixels have no positions), "
                f"so use 2..{num_layers}")
        out.append(l)
    if len(set(out)) != len(out):
        raise ValueError(f"spatial_layers has repeated indices: {list(spatial_layers)}")
    return tuple(sorted(out))


class SpatialMLP(nn.Module):
    """MLP ``sizes[0] -> ... -> sizes[-1]`` with spatial costs on ``spatial_layers`` (1-based).

    Args:
        sizes: widths, input first, e.g. ``[1568, 128, 128, 128, 256, 20]``.
        spatial_layers: Linear-layer indices (1..K, layer 1 excluded) that carry the costs; empty
            gives the regular network (no positions at all).
        activation: ``"sigmoid"`` (paper), ``"relu"`` or ``"tanh"``; none after the last layer.
        dim: coordinates per neuron, 1..3.
        transport_norm: ``"per_connection"`` (1/(N_l N_{l-1}), the mean over connections, as the
            authors' public code took it) or ``"per_out"`` (1/N_l, the paper's printed formula).
        density_norm: ``"per_pair"`` (1/N_l^2, the paper's) or ``"per_neuron"`` (1/N_l: the
            mean over neurons of each neuron's summed repulsion, so it does not fade with width).
            The names of ``spatial_kernels.nn.norms``.
        init: ``"glorot"`` (Glorot-uniform with gain ``init_gain``, zero biases) or ``"torch"``
            (nn.Linear's U(+-1/sqrt(fan_in)); ``init_gain`` unused). Positions are drawn from
            N(0, 1).

        The defaults are ``spatialize``'s and ``TrainConfig``'s (per_connection, per_pair, Glorot
        gain 1); the strengths alpha and beta have none (:meth:`spatial_loss` takes them).
        transport: ``"distance"`` (the paper) or ``"constant"`` (the L1-only control: every
            distance replaced by the layer's mean distance, detached; see the module docstring).
        freeze_positions: the positions stay at their initial values (the frozen-positions control).
        head_offset: 0 (paper) or r > 0: the output layer's positions are N(0, 1) shifted by r
            towards its head's own direction (head k of ``num_heads`` at angle 2 pi k / M; with
            dim 1 at +-r), so the heads start apart instead of interleaved.
        backend: passed to the ``spatial_kernels`` functions.
        density_lengths: the density's length unit, one number or ``{layer: length}`` for every
            positioned layer (V sums exp(-d / length); 1 is the paper's). The width rule
            (``config.py``) gives a layer w times wider ``1 / sqrt(w)``.
    """

    def __init__(self, sizes: Sequence[int], spatial_layers: Sequence[int] = (3, 4, 5),
                 activation: str = "sigmoid", *, dim: int = 2, transport_norm: str = "per_connection",
                 density_norm: str = "per_pair", init: str = "glorot", init_gain: float = 1.0, head_offset: float = 0.0,
                 num_heads: int = 2, transport: str = "distance", freeze_positions: bool = False,
                 backend: str = "auto", density_lengths=1.0):
        super().__init__()
        sizes = _check_sizes(sizes)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        transport_norm, density_norm = check_transport_norm(transport_norm), check_density_norm(density_norm)
        if dim not in (1, 2, 3):
            raise ValueError(f"dim must be 1, 2 or 3, got {dim!r}")
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        if not isinstance(freeze_positions, bool):
            raise TypeError(f"freeze_positions must be a bool, got {freeze_positions!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.sizes = sizes
        self.num_layers = len(sizes) - 1
        self.spatial_layers = check_spatial_layers(spatial_layers, self.num_layers)
        self.activation = activation
        self.dim = dim
        self.transport_norm = transport_norm
        self.density_norm = density_norm
        self.transport = transport
        self.freeze_positions = freeze_positions
        self.backend = backend
        positioned = set(self.spatial_layers) | {l - 1 for l in self.spatial_layers}
        self._lengths = per_key("density_lengths", density_lengths, sorted(positioned), kind="layer", positive=True,
                                normalise=int)
        layers = []
        for l in range(1, self.num_layers + 1):
            if l in positioned:
                layers.append(SpatialLinear(sizes[l - 1], sizes[l], dim=dim))
            else:
                layers.append(nn.Linear(sizes[l - 1], sizes[l]))
        self.layers = nn.ModuleList(layers)
        self.init, self.init_gain, self.head_offset, self.num_heads = init, init_gain, head_offset, num_heads
        if head_offset:
            self._offset_heads(head_offset, num_heads)
        if init == "glorot":
            for lin in self.layers:
                nn.init.xavier_uniform_(lin.weight, gain=init_gain)
                nn.init.zeros_(lin.bias)
        if freeze_positions:
            for lin in self.layers:
                if hasattr(lin, "positions"):
                    lin.positions.requires_grad_(False)
        self.act = ACTIVATIONS[activation]()
        # The costs come from spatial_kernels.nn, over the layers' own positions (shared, not
        # copied): layer l reads sheet "layer{l-1}" and writes "layer{l}". Kept out of the module
        # tree, so the state_dict stays layers.{i}.positions.
        costs = None
        if self.spatial_layers:
            sheets = {f"layers.{l - 1}": (f"layer{l - 1}", f"layer{l}") for l in self.spatial_layers}
            costs = spatialize(self, list(sheets), dim=dim, sheets=sheets, infer=False, transport_norm=transport_norm,
                               density_norm=density_norm, backend=backend,
                               positions={f"layer{l}": self.layer(l).positions for l in positioned},
                               density_length={f"layer{l}": self._lengths[l] for l in positioned})
        object.__setattr__(self, "_costs", costs)

    @torch.no_grad()
    def _offset_heads(self, r: float, num_heads: int) -> None:
        out = self.layers[-1]
        if not hasattr(out, "positions"):
            raise ValueError("head_offset needs positions on the output layer (make it spatial)")
        n = self.sizes[-1]
        if num_heads < 1 or n % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the {n} outputs")
        k = torch.arange(n) // (n // num_heads)
        angle = 2 * math.pi * k / num_heads
        if self.dim == 1:
            shift = (r * torch.where(k % 2 == 0, -1.0, 1.0)).unsqueeze(1)
        else:
            shift = torch.zeros(n, self.dim)
            shift[:, 0], shift[:, 1] = r * torch.cos(angle), r * torch.sin(angle)
        out.positions.add_(shift.to(out.positions))

    def layer(self, l: int) -> nn.Linear:
        """The 1-based Linear layer ``l``."""
        return self.layers[l - 1]

    def density_length(self, l: int) -> float:
        """The length unit of layer l's density (1 for a layer without positions)."""
        return self._lengths.get(l, 1.0)

    def forward(self, x: torch.Tensor, masks: Mapping[int, torch.Tensor] | None = None,
                disable: str = "outputs") -> torch.Tensor:
        """Float32 logits; ``masks[l]`` (N_l,) disables layer l's neurons where it is 0: with
        ``disable="outputs"`` it multiplies their outputs after the activation, so a 0 silences a
        neuron completely, bias included; with ``"inputs"`` it multiplies their incoming weights
        (the pre-activation keeps its bias, so a sigmoid unit still sends sigma(b)). Weights in
        bfloat16 (see :meth:`weights_to`) compute in bfloat16."""
        if x.dim() != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"x must have shape (batch, {self.sizes[0]}), got {tuple(x.shape)}")
        if disable not in ("outputs", "inputs"):
            raise ValueError(f"disable must be 'outputs' or 'inputs', got {disable!r}")
        h = x.to(self.layers[0].weight.dtype)
        for l, lin in enumerate(self.layers, start=1):
            m = None if masks is None or l not in masks else masks[l].to(h.dtype)
            if m is not None and disable == "inputs":
                h = torch.nn.functional.linear(h, lin.weight * m[:, None], lin.bias)
            else:
                h = lin(h)
            if l < self.num_layers:
                h = self.act(h)
            if m is not None and disable == "outputs":
                h = h * m
        return h.float()

    def weights_to(self, dtype: torch.dtype) -> "SpatialMLP":
        """Weights and biases in ``dtype`` (e.g. bfloat16, which the triton kernels read
        natively), positions kept in float32."""
        for lin in self.layers:
            lin.weight.data = lin.weight.data.to(dtype)
            lin.bias.data = lin.bias.data.to(dtype)
        return self

    def transport_cost(self, l: int, scale: float = 1.0) -> torch.Tensor:
        """``scale * T(l)``, T normalised as ``transport_norm`` says; the weight goes into the
        kernel, which then stores dW already weighted (no W-sized pass in backward)."""
        W = self.layer(l).weight
        n_out, n_in = W.shape
        norm = transport_divisor(self.transport_norm, n_out, n_in)
        p_in, p_out = self.layer(l - 1).positions, self.layer(l).positions
        if self.transport == "constant":  # L1-only control: sum |w| times the mean distance
            with torch.no_grad():
                ones = p_out.new_ones(n_out, n_in)
                mean_dist = fused_transport_cost(ones, p_in.detach(), p_out.detach(),
                                                 backend=self.backend) / (n_out * n_in)
            return W.abs().float().sum() * (mean_dist * (scale / norm))
        return self._costs.transport_cost(f"layers.{l - 1}", scale)

    def density_cost(self, l: int, scale: float = 1.0) -> torch.Tensor:
        """``scale * V(l)``, V(l) = c_V * sum_{i,j} exp(-||p_i - p_j|| / len_l), c_V as ``density_norm`` says."""
        return self._costs.density_cost(f"layer{l}", scale)

    def _per_layer(self, name: str, value) -> dict[int, float]:
        return per_key(name, value, self.spatial_layers, kind="layer", normalise=int)

    def spatial_loss(self, alpha, beta) -> torch.Tensor:
        """(1/|L|) * sum_{l in L} [alpha_l * T(l) + beta_l * V(l)]; 0 for the regular network.
        ``alpha`` and ``beta`` are one number each, or ``{l: value}`` for every spatial layer."""
        if not self.spatial_layers:
            return self.layers[0].weight.new_zeros(())
        a, b = self._per_layer("alpha", alpha), self._per_layer("beta", beta)
        if self.transport == "distance":  # the same terms, summed in the same order, as below
            return self._costs({f"layers.{l - 1}": a[l] for l in self.spatial_layers},
                               {f"layer{l}": b[l] for l in self.spatial_layers})
        k = len(self.spatial_layers)
        return sum(self.transport_cost(l, a[l] / k) + self.density_cost(l, b[l] / k)
                   for l in self.spatial_layers)

    def config(self) -> dict:
        return {"sizes": list(self.sizes), "spatial_layers": list(self.spatial_layers),
                "activation": self.activation, "dim": self.dim,
                "transport_norm": self.transport_norm, "density_norm": self.density_norm, "init": self.init, "init_gain": self.init_gain,
                "head_offset": self.head_offset, "transport": self.transport,
                "freeze_positions": self.freeze_positions}


def build_model(cfg) -> SpatialMLP:
    """The net a ``TrainConfig`` describes: the spatial net, or the regular one (the same MLP
    without costs and without positions), seeded by ``cfg.seed``, weights in ``cfg.weight_dtype``."""
    torch.manual_seed(cfg.seed)
    spatial = list(cfg.spatial_layers) if cfg.net == "spatial" else []
    values = cfg.per_layer_values()
    lengths = values.density_length if spatial else 1.0
    model = SpatialMLP(cfg.sizes, spatial, cfg.activation, dim=cfg.dim, transport_norm=cfg.transport_norm,
                       density_norm=cfg.density_norm, init=cfg.init, init_gain=cfg.init_gain,
                       head_offset=cfg.head_offset if cfg.num_layers in spatial else 0.0, num_heads=cfg.num_tasks,
                       transport=cfg.transport, freeze_positions=cfg.freeze_positions, density_lengths=lengths)
    with torch.no_grad():  # the width rule's start of the weights (1: the initialiser's)
        for l, s in values.init_scale.items():
            if s != 1.0:
                model.layer(l).weight.mul_(s)
    return model.weights_to(getattr(torch, cfg.weight_dtype))
