"""Which layers a pattern selects, and which sheet of neurons each selected layer reads and writes.

A **sheet** is a set of neurons that share positions ``(N, D)``. A selected layer has two ports:
``in`` (its ``in_features`` / ``in_channels`` neurons) and ``out`` (its ``out_features`` /
``out_channels``). Ports that see the same neurons are joined into one sheet (union-find):

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
- **Explicit names** (``sheets={"fc2": ("hidden", None)}``): ports given one name are one sheet,
  on top of what was inferred.

A port that no trace covers gets a sheet of its own only when no other selected layer's port has
its size (nothing it could be confused with) or it is named; otherwise it is an error naming the
layer, as is a layer called more than once in a forward, or a sheet whose ports disagree on size.
"""
from __future__ import annotations

import fnmatch
import operator
from dataclasses import dataclass, field

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d)

# modules whose output neuron j is input neuron j (element-wise or per-channel)
ELEMENTWISE_MODULES = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softsign,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
)
# the same, named by class so that timm need not be imported (timm.layers.DropPath, LayerScale)
ELEMENTWISE_CLASS_NAMES = frozenset({"DropPath", "LayerScale", "LayerScale2d"})
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


def select_layers(model: nn.Module, layers) -> dict[str, nn.Module]:
    """``{name: module}`` of the supported layers that ``layers`` (names or glob patterns) select,
    in the model's module order. A pattern matches only the supported layers among its matches."""
    if isinstance(layers, str) or not hasattr(layers, "__iter__"):
        raise TypeError(f"layers must be a list of module names or glob patterns, got {layers!r}")
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty: name at least one nn.Linear / nn.Conv1d / nn.Conv2d")
    named = dict(model.named_modules())
    # a module registered under several names (weight tying) is one layer, under its first name
    # (the one named_modules and torch.fx use); its other names select it too
    first = {id(m): n for n, m in named.items()}
    alias = {n: first[id(m)] for n, m in model.named_modules(remove_duplicate=False) if n}
    chosen: set[str] = set()
    for pattern in layers:
        if not isinstance(pattern, str):
            raise TypeError(f"layers must hold str names or glob patterns, got {pattern!r}")
        hits = sorted({alias[n] for n in alias if fnmatch.fnmatchcase(n, pattern)}, key=list(named).index)
        ok = [n for n in hits if isinstance(named[n], SUPPORTED)]
        if not hits:
            some = [n for n, m in named.items() if isinstance(m, SUPPORTED)][:8]
            raise ValueError(f"layers pattern {pattern!r} matches no module of {type(model).__name__}; "
                             f"its supported layers include {some}")
        if not ok:
            kinds = sorted({type(named[n]).__name__ for n in hits})
            raise TypeError(f"layers pattern {pattern!r} matches {hits[:4]} ({', '.join(kinds)}), none of them a "
                            f"supported layer: nn.Linear, nn.Conv1d or nn.Conv2d")
        chosen.update(ok)
    out = {n: named[n] for n in named if n in chosen}
    for name, m in out.items():
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in m.parameters(recurse=False)):
            raise ValueError(f"layer {name!r} is a lazy {type(m).__name__} whose input size is not known yet: run "
                             f"one forward pass through the model before spatialize(), so that it has a weight")
        if isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.groups != 1:
            raise ValueError(f"layer {name!r} is a {type(m).__name__} with groups={m.groups}; only groups=1 is "
                             f"supported (every output channel reads every input channel)")
    return out


def port_size(m: nn.Module, port: str) -> int:
    if isinstance(m, nn.Linear):
        return m.in_features if port == "in" else m.out_features
    return m.in_channels if port == "in" else m.out_channels


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
    return isinstance(m, ELEMENTWISE_MODULES + extra) or type(m).__name__ in ELEMENTWISE_CLASS_NAMES


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
                var[node] = self.uf.union(*(var.get(a, self._new()) for a in args))
                continue
            elif node.op == "call_method" and node.target in ELEMENTWISE_METHODS and args:
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
                infer: bool = True, extra_elementwise: tuple = ()) -> list[list[tuple[str, str]]]:
    """The sheets, each a list of ports ``(layer, "in"|"out")``, in the order the layers come."""
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
    return sheets
