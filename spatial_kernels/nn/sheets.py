"""Which layers a pattern selects, and which sheet of neurons each selected layer reads and writes.

A **sheet** is a set of neurons that share positions ``(N, D)``. A selected layer has two ports:
``in`` (its ``in_features`` / ``in_channels`` neurons) and ``out`` (its ``out_features`` /
``out_channels``); :func:`geometry` says how its weight connects them (groups, layout). Ports that
see the same neurons are joined into one sheet (union-find):

- **torch.fx trace.** The model (or, where its forward cannot be traced, the smallest modules
  that contain the selected layers and can be) is traced with every module that holds no selected
  layer kept as a leaf. Each value in the graph gets a sheet variable; an element-wise op
  (activations, dropout, scaling, residual ``+``, casts, per-channel norms) gives its output the
  same variable as its tensor operands, joining them; any other op (reshapes, attention, pooling,
  concatenation, a module that is not element-wise) makes a fresh one. A selected layer's ``in``
  port is its input's variable, its ``out`` port its output's. So ``fc2(gelu(fc1(x)))`` puts
  fc1's outputs and fc2's inputs on one sheet, and ``x + fc2(...)`` joins fc2's outputs with
  ``x``'s neurons (a residual stream is one sheet).
- **nn.Sequential chains**, where the Sequential's trace fails: children in order, element-wise
  children pass the sheet on, anything else breaks the chain.
- **Gates**: two selected layers whose outputs are multiplied element by element (a gated MLP:
  ``down(act(gate(x)) * up(x))``, SwiGLU and GeGLU in Llama, Mistral, Qwen, Gemma) write one sheet:
  neuron i of both is one neuron. The multiplication joins them as any element-wise op does, and
  the sheet is marked ``gated``.
- **Explicit names** (``sheets={"fc2": ("hidden", None)}``): ports given one name are one sheet,
  on top of what was inferred.

Names are matched segment by segment, as path globs are: ``*`` (and ``?``, ``[...]``) within one
dotted segment, ``**`` across any number of segments (``"encoder.layer.*.output.dense"`` takes
``encoder.layer.3.output.dense`` and not ``encoder.layer.3.attention.output.dense``;
``"**.fc1"`` takes every ``fc1``).

A port that no trace covers gets a sheet of its own only when no other selected layer's port has
its size (nothing it could be confused with) or it is named; otherwise it is an error naming the
layer, as is a layer called more than once in a forward, or a sheet whose ports disagree on size.
"""
from __future__ import annotations

import fnmatch
import operator
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)
# by class name, so that transformers need not be imported: GPT-2's Conv1D, weight (in, out)
SUPPORTED_CLASS_NAMES = frozenset({"Conv1D"})
SUPPORTED_NAMES = ("nn.Linear, nn.Conv1d/2d/3d (any groups), nn.ConvTranspose1d/2d, transformers' Conv1D")

# modules whose output neuron j is input neuron j (element-wise or per-channel)
ELEMENTWISE_MODULES = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softsign,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
)
# the same, named by class so that timm need not be imported (timm.layers.DropPath, LayerScale);
# and every activation of transformers.activations (SiLUActivation, NewGELUActivation, ...)
ELEMENTWISE_CLASS_NAMES = frozenset({"DropPath", "LayerScale", "LayerScale2d"})
ELEMENTWISE_CLASS_MODULES = frozenset({"transformers.activations"})
MULTIPLY = frozenset({operator.mul, operator.imul, torch.mul, "mul", "mul_", "__mul__", "__rmul__"})
ELEMENTWISE_FUNCTIONS = frozenset({
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, operator.iadd, operator.imul,
    torch.add, torch.sub, torch.mul, torch.div, torch.neg, torch.relu, torch.sigmoid, torch.tanh, torch.exp,
    F.relu, F.relu6, F.gelu, F.silu, F.mish, F.elu, F.selu, F.leaky_relu, F.softplus, F.hardswish,
    F.hardsigmoid, F.sigmoid, F.tanh, F.dropout, F.dropout1d, F.dropout2d, F.layer_norm, F.batch_norm,
    F.group_norm,
})
ELEMENTWISE_METHODS = frozenset({
    "add", "sub", "mul", "div", "neg", "relu", "sigmoid", "tanh", "exp", "add_", "mul_", "relu_",
    "__add__", "__radd__", "__sub__", "__mul__", "__rmul__", "__truediv__", "to", "type_as", "float",
    "half", "bfloat16", "double", "contiguous", "clone",
})


def supported(m: nn.Module) -> bool:
    return isinstance(m, SUPPORTED) or (type(m).__name__ in SUPPORTED_CLASS_NAMES and hasattr(m, "nf"))


@dataclass(frozen=True)
class Geometry:
    """How a layer's weight connects its ports: ``n_in`` and ``n_out`` neurons, ``groups`` (output
    i reads the inputs of its group), and ``transposed`` (the weight's first dimension indexes the
    inputs: transformers' Conv1D, nn.ConvTranspose)."""
    n_in: int
    n_out: int
    groups: int = 1
    transposed: bool = False


def geometry(m: nn.Module, name: str = "layer") -> Geometry:
    """The :class:`Geometry` of a supported layer; a ValueError naming the layer and the shapes
    where its weight does not fit what it says of itself."""
    W = m.weight
    if isinstance(m, nn.Linear):
        g = Geometry(m.in_features, m.out_features)
        shape = (g.n_out, g.n_in)
    elif type(m).__name__ in SUPPORTED_CLASS_NAMES:  # transformers' Conv1D: weight (nx, nf)
        g = Geometry(int(W.shape[0]) if W.dim() == 2 else -1, int(m.nf), 1, True)
        shape = (g.n_in, g.n_out)
        if W.dim() != 2 or W.shape[1] != m.nf:
            raise ValueError(f"layer {name!r} is a Conv1D with nf={m.nf}, but its weight has shape {tuple(W.shape)}, "
                             f"not (nx, {m.nf})")
    else:
        transposed = isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d))
        g = Geometry(m.in_channels, m.out_channels, m.groups, transposed)
        if m.in_channels % m.groups or m.out_channels % m.groups:
            raise ValueError(f"layer {name!r} is a {type(m).__name__} with groups={m.groups}, which does not divide "
                             f"its {m.in_channels} input and {m.out_channels} output channels")
        shape = ((g.n_in, g.n_out // g.groups) if transposed else (g.n_out, g.n_in // g.groups)) + tuple(
            m.kernel_size)
    if tuple(W.shape) != tuple(shape):
        raise ValueError(f"layer {name!r} ({type(m).__name__}) has weight {tuple(W.shape)}, expected {tuple(shape)} "
                         f"from its sizes")
    return g


def _segment(seg: str) -> str:
    """fnmatch's syntax within one dotted segment: ``*`` and ``?`` never cross a dot."""
    out, i = "", 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            out += "[^.]*"
        elif c == "?":
            out += "[^.]"
        elif c == "[" and "]" in seg[i + 2:] or seg[i:i + 2] == "[]":
            j = seg.index("]", i + 2 if seg[i + 1:i + 2] in ("!", "]") else i + 1)
            body = seg[i + 1:j]
            out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
            i = j
        else:
            out += re.escape(c)
        i += 1
    return out


@lru_cache(maxsize=256)
def _segment_pattern(pattern: str):
    """A regex matching dotted names segment by segment: ``**`` any number of segments (none
    included), ``*``, ``?`` and ``[...]`` within one."""
    segs = pattern.split(".")
    if segs == ["**"]:
        return re.compile(r".*\Z", re.S)
    out = ""
    for i, seg in enumerate(segs):
        if seg == "**":
            out += r"(?:[^.]+\.)*" if i == 0 else r"(?:\.[^.]+)*"
            continue
        if i > 0 and not (i == 1 and segs[0] == "**"):
            out += r"\."
        out += _segment(seg)
    return re.compile(out + r"\Z")


def match_names(pattern: str, names) -> list[str]:
    """The names ``pattern`` matches segment by segment (see the module docstring)."""
    rx = _segment_pattern(pattern)
    return [n for n in names if rx.match(n)]


def select_layers(model: nn.Module, layers) -> dict[str, nn.Module]:
    """``{name: module}`` of the supported layers that ``layers`` (names or glob patterns) select,
    in the model's module order. A pattern matches only the supported layers among its matches."""
    if isinstance(layers, str) or not hasattr(layers, "__iter__"):
        raise TypeError(f"layers must be a list of module names or glob patterns, got {layers!r}")
    layers = list(layers)
    if not layers:
        raise ValueError(f"layers is empty: name at least one layer ({SUPPORTED_NAMES})")
    named = dict(model.named_modules())
    # a module registered under several names (weight tying) is one layer, under its first name
    # (the one named_modules and torch.fx use); its other names select it too
    first = {id(m): n for n, m in named.items()}
    alias = {n: first[id(m)] for n, m in model.named_modules(remove_duplicate=False) if n}
    chosen: set[str] = set()
    for pattern in layers:
        if not isinstance(pattern, str):
            raise TypeError(f"layers must hold str names or glob patterns, got {pattern!r}")
        found = match_names(pattern, alias)
        if not found:
            old = [n for n in alias if fnmatch.fnmatchcase(n, pattern)]
            if old:  # a '*' meant to cross dots, as the first matching rule took it
                warnings.warn(f"layers pattern {pattern!r} matches no name segment by segment ('*' stays within a "
                              f"dotted segment); it matches {old[:3]} when '*' crosses dots, which is taken now and "
                              f"will not be: write '**' for any number of segments", DeprecationWarning, stacklevel=3)
                found = old
        hits = sorted({alias[n] for n in found}, key=list(named).index)
        ok = [n for n in hits if supported(named[n])]
        if not hits:
            some = [n for n, m in named.items() if supported(m)][:8]
            raise ValueError(f"layers pattern {pattern!r} matches no module of {type(model).__name__} ('*' within a "
                             f"dotted segment, '**' across segments); its supported layers include {some}")
        if not ok:
            kinds = sorted({type(named[n]).__name__ for n in hits})
            raise TypeError(f"layers pattern {pattern!r} matches {hits[:4]} ({', '.join(kinds)}), none of them a "
                            f"supported layer: {SUPPORTED_NAMES}")
        chosen.update(ok)
    out = {n: named[n] for n in named if n in chosen}
    for name, m in out.items():
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in m.parameters(recurse=False)):
            raise ValueError(f"layer {name!r} is a lazy {type(m).__name__} whose input size is not known yet: run "
                             f"one forward pass through the model before spatialize(), so that it has a weight")
        geometry(m, name)
    return out


def port_size(m: nn.Module, port: str) -> int:
    g = geometry(m)
    return g.n_in if port == "in" else g.n_out


@dataclass
class _UnionFind:
    parent: dict = field(default_factory=dict)

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, *xs):
        roots = [self.find(x) for x in xs]
        for r in roots[1:]:
            self.parent[r] = roots[0]
        return roots[0]


def _is_elementwise(m: nn.Module, extra: tuple) -> bool:
    return (isinstance(m, ELEMENTWISE_MODULES + extra) or type(m).__name__ in ELEMENTWISE_CLASS_NAMES
            or type(m).__module__ in ELEMENTWISE_CLASS_MODULES)


class _Tracer(torch.fx.Tracer):
    def __init__(self, holders: set[str], prefix: str):
        super().__init__()
        self.holders, self.prefix = holders, prefix

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        full = f"{self.prefix}.{qualname}" if self.prefix else qualname
        return full not in self.holders  # selected layers and modules without one stay opaque


class _Inference:
    """Joins ports (``(layer, "in"|"out")``) through traces, Sequential chains and names."""

    def __init__(self, model: nn.Module, selected: dict[str, nn.Module], extra_elementwise: tuple):
        self.model, self.selected, self.extra = model, selected, extra_elementwise
        self.uf = _UnionFind()
        self.covered: set[str] = set()
        self.products: list = []  # values that multiply two selected layers' outputs (gates)
        self.fresh = 0
        # modules that hold a selected layer strictly inside them
        self.holders = {n for n, _ in model.named_modules() for s in selected if s.startswith(n + ".") or (n == "" and s)}

    def _new(self):
        self.fresh += 1
        return ("value", self.fresh)

    def analyse(self, module: nn.Module, prefix: str) -> None:
        if prefix in self.selected or prefix not in self.holders:
            return
        try:
            graph = _Tracer(self.holders, prefix).trace(module)
        except Exception:  # noqa: BLE001 - an untraceable forward falls back to its parts
            graph = None
        if graph is not None:
            self._walk_graph(graph, module, prefix)
            return
        if isinstance(module, nn.Sequential):
            self._walk_chain(module, prefix)
        for name, child in module.named_children():
            self.analyse(child, f"{prefix}.{name}" if prefix else name)

    def _walk_graph(self, graph: torch.fx.Graph, root: nn.Module, prefix: str) -> None:
        var: dict[torch.fx.Node, object] = {}
        calls: dict[str, int] = {}
        for node in graph.nodes:
            args = _node_args(node)
            if node.op == "call_module":
                full = f"{prefix}.{node.target}" if prefix else node.target
                m = root.get_submodule(node.target)
                if full in self.selected:
                    calls[full] = calls.get(full, 0) + 1
                    if calls[full] > 1:
                        raise ValueError(f"layer {full!r} is called more than once in the forward of "
                                         f"{prefix or type(root).__name__!r}, so which neurons it reads is "
                                         f"ambiguous; pass sheets={{{full!r}: (in_name, out_name)}} and "
                                         f"infer=False")
                    if args:
                        self.uf.union((full, "in"), var.get(args[0], self._new()))
                    var[node] = self.uf.union((full, "out"), self._new())
                    continue
                if _is_elementwise(m, self.extra) and args:
                    var[node] = var.get(args[0], self._new())
                    continue
            elif node.op == "call_function" and node.target in ELEMENTWISE_FUNCTIONS and args:
                self._gate(node, args, var)
                var[node] = self.uf.union(*(var.get(a, self._new()) for a in args))
                continue
            elif node.op == "call_method" and node.target in ELEMENTWISE_METHODS and args:
                self._gate(node, args, var)
                var[node] = self.uf.union(*(var.get(a, self._new()) for a in args))
                continue
            var[node] = self._new()
        for name in self.selected:
            if name.startswith(prefix + ".") or not prefix:
                if name not in calls:
                    raise ValueError(f"layer {name!r} is never called in the traced forward of "
                                     f"{prefix or type(root).__name__!r}; its sheets cannot be inferred: pass "
                                     f"sheets={{{name!r}: (in_name, out_name)}}")
                self.covered.add(name)

    def _gate(self, node, args, var) -> None:
        """A product of two values that selected layers wrote: a gate (see the module docstring)."""
        if node.target not in MULTIPLY or len(args) < 2:
            return
        writers = {self.uf.find(var[a]) for a in args if a in var}
        outs = {self.uf.find(p) for p in self.uf.parent if isinstance(p, tuple) and len(p) == 2 and p[1] == "out"}
        if len(writers & outs) >= 2:
            self.products.append(var[args[0]])

    def gated(self) -> set:
        """The union-find roots of the gated sheets."""
        return {self.uf.find(v) for v in self.products}

    def _walk_chain(self, seq: nn.Sequential, prefix: str) -> None:
        current = self._new()
        for name, child in seq.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if full in self.selected:
                self.uf.union((full, "in"), current)
                current = self.uf.union((full, "out"), self._new())
                self.covered.add(full)
            elif full not in self.holders and _is_elementwise(child, self.extra):
                continue
            else:
                current = self._new()


def _node_args(node: torch.fx.Node) -> list[torch.fx.Node]:
    """The graph values among a node's arguments (nested ones included), in order."""
    found: list[torch.fx.Node] = []
    torch.fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n) or n)
    return found


def infer_ports(model: nn.Module, selected: dict[str, nn.Module], explicit: dict | None = None,
                infer: bool = True, extra_elementwise: tuple = ()) -> tuple[list[list[tuple[str, str]]], list[bool]]:
    """The sheets, each a list of ports ``(layer, "in"|"out")``, in the order the layers come, and
    for each whether it is gated (two writers multiplied element by element)."""
    inf = _Inference(model, selected, tuple(extra_elementwise))
    if infer:
        inf.analyse(model, "")
    explicit = dict(explicit or {})
    for name, pair in explicit.items():
        if name not in selected:
            raise ValueError(f"sheets names {name!r}, which is not a selected layer; selected: {list(selected)}")
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(f"sheets[{name!r}] must be a pair (in_sheet, out_sheet) of names or None, got {pair!r}")
        for port, sheet in zip(("in", "out"), pair):
            if sheet is not None:
                inf.uf.union(("name", str(sheet)), (name, port))
    ports = [(n, p) for n in selected for p in ("in", "out")]
    named = {(n, port) for n, pair in explicit.items() for port, s in zip(("in", "out"), pair) if s is not None}
    sizes = {(n, p): port_size(selected[n], p) for n, p in ports}
    for n in selected:
        if n in inf.covered:
            continue
        for p in ("in", "out"):
            if (n, p) in named:
                continue
            # an untraced port might be any other port of its size: a chain, a shared input, a residual
            # (a named port's sheet is declared, so it is no rival)
            rivals = [f"{m!r} {q}put" for m in selected for q in ("in", "out") if m != n and (m, q) not in named
                      and sizes[m, q] == sizes[n, p] and inf.uf.find((m, q)) != inf.uf.find((n, p))]
            if infer and rivals:
                raise ValueError(
                    f"cannot infer the sheets of layer {n!r}: no trace of the model covers it (its forward, or "
                    f"its parents', cannot be traced by torch.fx), and its {p}put ({sizes[n, p]} neurons) could "
                    f"be the same neurons as the {', '.join(rivals[:3])}; pass sheets={{{n!r}: (in_name, "
                    f"out_name)}}, naming shared sheets alike, or infer=False for sheets of its own")
    groups: dict[object, list] = {}
    for port in ports:
        groups.setdefault(inf.uf.find(port), []).append(port)
    sheets = list(groups.values())
    for ps in sheets:
        if len({sizes[p] for p in ps}) > 1:
            desc = ", ".join(f"{n!r} {p}put ({sizes[n, p]} neurons)" for n, p in ps)
            raise ValueError(f"these ports were put on one sheet but have different sizes: {desc}; check the "
                             f"sheets= names, or pass infer=False and name the sheets yourself")
    gated = inf.gated()
    return sheets, [inf.uf.find(ps[0]) in gated for ps in sheets]
