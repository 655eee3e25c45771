"""Which layers a pattern selects, and which sheet of neurons each selected layer reads and writes.

A **sheet** is a set of neurons that share positions ``(N, D)``. A selected layer has two ports:
``in`` (its ``in_features`` / ``in_channels`` neurons) and ``out`` (its ``out_features`` /
``out_channels``); :func:`geometry` says how its weight connects them (groups, layout). Ports that
see the same neurons are joined into one sheet (union-find):

- **The data's flow** (``flow.py``): one forward pass on an example input (``example=``, or a
  Hugging Face model's ``dummy_inputs``) run under a ``TorchFunctionMode``, else a torch.fx trace
  of the model (or, where its forward cannot be traced, of the smallest modules that contain the
  selected layers and can be), with every module that holds no selected layer kept whole. Each
  value carries a sheet variable and the dimension of its channels; an op that keeps channel j as
  channel j (activations, dropout, casts, norms, a residual ``+``, a permute, a flatten or an index
  that leaves the channel axis whole, pooling over positions) passes the variable on, joining its
  operands'; anything else (attention, matmuls, a reshape that cuts the channels, concatenation)
  makes a fresh one. A selected layer's ``in`` port is its input's variable, its ``out`` port its
  output's. So ``fc2(gelu(fc1(x)))`` puts fc1's outputs and fc2's inputs on one sheet, and
  ``x + fc2(...)`` joins fc2's outputs with ``x``'s neurons: a residual stream is one sheet from
  block to block, and ConvNeXt's depthwise conv writes the sheet its ``Permute``-d Linear reads.
  Where neither can follow a module, a warning names it, says why, and which layers' sheets stay
  apart at its borders.
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

import re
from dataclasses import dataclass
from functools import lru_cache

from torch import nn

from .inference import Inference, warn_apart

SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)
# by class name, so that transformers need not be imported: GPT-2's Conv1D, weight (in, out)
SUPPORTED_CLASS_NAMES = frozenset({"Conv1D"})
SUPPORTED_NAMES = ("nn.Linear, nn.Conv1d/2d/3d (any groups), nn.ConvTranspose1d/2d, transformers' Conv1D")

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


def infer_ports(model: nn.Module, selected: dict[str, nn.Module], explicit: dict | None = None,
                infer: bool = True, extra_elementwise: tuple = (),
                example=None) -> tuple[list[list[tuple[str, str]]], list[bool]]:
    """The sheets, each a list of ports ``(layer, "in"|"out")``, in the order the layers come, and
    for each whether it is gated (two writers multiplied element by element)."""
    inf = Inference(model, selected, tuple(extra_elementwise))
    if infer:
        inf.run(example)
        if inf.failed:
            warn_apart(inf)
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
                    f"its parents', cannot be traced by torch.fx; example= runs one forward instead), and its {p}put ({sizes[n, p]} neurons) could "
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

