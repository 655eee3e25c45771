"""How channels flow through a model's forward: which values carry the same neurons.

Every tensor value gets a *state* ``(var, c, nd)``: a sheet variable (union-find), the dimension
that holds its channels (``c``, None when no op says) and its number of dimensions (``nd``, None
when unknown). An op gives its output the state its channels come from:

- **same channels, same place**: activations, dropout, casts, norms, and element-wise arithmetic;
  for a binary op every operand whose channels line up with the output's (its channel dimension
  broadcast to the output's, at full size) joins the output's variable: a residual ``+`` joins the
  stream with what adds into it, ``x * rsqrt(mean(x^2))`` joins nothing but ``x``;
- **same channels, moved**: ``permute``, ``transpose``, ``movedim``, ``flatten``/``view``/
  ``reshape``/``(un)squeeze`` that keep the channel axis whole, indexing and reductions and
  pooling over other dimensions (ConvNeXt's Permute, ResNet's ``flatten(avgpool(x), 1)``, ViT's
  class token ``x[:, 0]``);
- anything else (matmuls, attention, concatenation, splits, a reshape that cuts the channel axis)
  gives a fresh variable.

A selected layer's ``in`` port joins its input's variable when that value's channels are the ones
the layer reads (the last dimension for a Linear, dimension 1 for a batched conv); its ``out``
port is its output's variable. Two selected layers' outputs multiplied element by element are a
*gate* (a gated MLP's gate and up projections, a squeeze-excite scale).

Two drivers feed the same rules: a torch.fx symbolic trace (no shapes: only what the ops' own
arguments say, e.g. ``permute``'s dims) and a run of one forward pass on an example input under a
``TorchFunctionMode`` (real shapes: every rule above), for models fx cannot trace (Hugging Face
transformers 5 has no fx tracer).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

# ops (by name, underscores stripped) whose output channel j is their tensor operands' channel j
# (binary ones join every operand whose channels line up; the rest read their first tensor only)
BINARY_OPS = frozenset("add sub mul div truediv rsub radd rmul rtruediv iadd isub imul idiv itruediv".split())
ELEMENTWISE_OPS = BINARY_OPS | frozenset("""
neg abs pow square sqrt rsqrt exp log erf relu relu6 gelu silu mish elu selu celu leakyrelu softplus hardswish
hardsigmoid hardtanh sigmoid tanh softsign logsigmoid clamp clip dropout dropout1d dropout2d dropout3d alphadropout
featurealphadropout layernorm batchnorm groupnorm instancenorm rmsnorm to type typeas float half bfloat16 double
contiguous clone detach maskedfill
""".split())
MULTIPLY = frozenset({"mul", "rmul", "imul"})
REDUCTIONS = frozenset({"mean", "sum", "amax", "amin", "std", "var", "logsumexp"})
POOLS = frozenset({"adaptiveavgpool1d", "adaptiveavgpool2d", "adaptiveavgpool3d", "adaptivemaxpool1d",
                   "adaptivemaxpool2d", "adaptivemaxpool3d", "avgpool1d", "avgpool2d", "avgpool3d", "maxpool1d",
                   "maxpool2d", "maxpool3d", "maxpool1dwithindices", "maxpool2dwithindices"})
RESHAPES = frozenset({"flatten", "view", "reshape", "unsqueeze", "squeeze", "viewas", "reshapeas"})
POOL_MODULES = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)


def op_name(target) -> str:
    """An op's name without underscores, for a function, a method name or an fx target:
    ``torch.add``, ``Tensor.__add__``, ``"add_"`` and ``operator.iadd`` all read ``add``/``iadd``."""
    name = target if isinstance(target, str) else getattr(target, "__name__", "")
    return name.replace("_", "").lower()


@dataclass
class UnionFind:
    parent: dict = field(default_factory=dict)
    made: int = 0  # fresh variables handed out, by every flow that shares this union-find

    def fresh(self):
        self.made += 1
        return ("value", self.made)

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, *xs):
        roots = [self.find(x) for x in xs]
        for r in roots[1:]:
            if r != roots[0]:
                self.parent[r] = roots[0]
        return roots[0]


def _norm_dim(d, nd):
    if not isinstance(d, int):
        return None
    if nd is None:
        return d if d >= 0 else None
    return d % nd if -nd <= d < nd else None


def _ints(args) -> list | None:
    """``(0, 2, 3, 1)`` or ``([0, 2, 3, 1],)`` as a list of ints; None if not ints."""
    if len(args) == 1 and isinstance(args[0], (list, tuple, torch.Size)):
        args = tuple(args[0])
    return list(args) if all(isinstance(a, int) for a in args) else None


def moved_channel(name: str, c, nd, args: list, kwargs: dict, shape_in, shape_out):
    """The output's channel dimension after a shape op, or None when its channels are not kept whole."""
    if c is None:
        return None
    if shape_in is not None:
        nd = len(shape_in)
    c = _norm_dim(c, nd)
    if c is None:
        return None
    if name == "permute":
        dims = _ints(args)
        if dims is None:
            return None
        dims = [_norm_dim(d, len(dims)) for d in dims]
        return dims.index(c) if c in dims else None
    if name in ("transpose", "swapaxes", "swapdims", "t"):
        a, b = (args[0], args[1]) if len(args) >= 2 else (0, 1)
        a, b = _norm_dim(a, nd), _norm_dim(b, nd)
        if a is None or b is None:
            return None
        return b if c == a else a if c == b else c
    if name == "movedim" and nd is not None:
        src, dst = args[0], args[1]
        src, dst = ([src], [dst]) if isinstance(src, int) else (list(src), list(dst))
        src, dst = [_norm_dim(s, nd) for s in src], [_norm_dim(d, nd) for d in dst]
        order = [d for d in range(nd) if d not in src]
        for d, s in sorted(zip(dst, src)):
            order.insert(d, s)
        return order.index(c)
    if shape_in is not None and shape_out is not None:
        if name in RESHAPES:  # the channel axis kept whole: the same size at the same offset
            before = math.prod(shape_in[:c])
            for j, size in enumerate(shape_out):
                if size == shape_in[c] and math.prod(shape_out[:j]) == before:
                    return j
            return None
        if name in POOLS and len(shape_in) == len(shape_out) and c == (1 if len(shape_in) > 2 else 0):
            return c if shape_out[c] == shape_in[c] else None
        if name in REDUCTIONS:
            dims = kwargs.get("dim", args[0] if args else None)
            keep = kwargs.get("keepdim", args[1] if len(args) > 1 and isinstance(args[1], bool) else False)
            dims = [dims] if isinstance(dims, int) else list(dims) if isinstance(dims, (list, tuple)) else None
            if not dims:
                return None
            dims = [_norm_dim(d, nd) for d in dims]
            return None if c in dims else c if keep else c - sum(d < c for d in dims)
        if name == "getitem":
            return _indexed_channel(args[0] if args else None, c, shape_in)
    if name == "flatten":  # without shapes: channels before the flattened range stay put
        start = kwargs.get("start_dim", args[0] if args else 0)
        return c if isinstance(start, int) and 0 <= c < start else None
    if name in POOLS:  # without shapes: a batched (N, C, ...) input's channels
        return c if c == 1 else None
    return None


def _indexed_channel(index, c, shape):
    """The channel dimension of ``x[index]`` (basic indexing only), or None."""
    idx = index if isinstance(index, tuple) else (index,)
    if any(not (i is None or i is Ellipsis or isinstance(i, (int, slice))) or isinstance(i, bool) for i in idx):
        return None
    real = sum(isinstance(i, (int, slice)) for i in idx)
    expanded = []
    for i in idx:
        expanded += [slice(None)] * (len(shape) - real) if i is Ellipsis else [i]
    d_in = d_out = 0
    for i in expanded:
        if i is None:
            d_out += 1
            continue
        if d_in == c:
            if isinstance(i, int) or len(range(*i.indices(shape[c]))) != shape[c]:
                return None
            return d_out
        d_out += isinstance(i, slice)
        d_in += 1
    return c - d_in + d_out


class Flow:
    """Sheet variables of a forward's values; the ports ``(layer, "in"|"out")`` they join."""

    def __init__(self, uf: UnionFind):
        self.uf = uf
        self.state: dict = {}
        self.products: list = []

    def new(self, c=None, nd=None):
        return (self.uf.fresh(), c, nd)

    def get(self, key, nd=None):
        if key not in self.state:
            self.state[key] = self.new(None, nd)
        return self.state[key]

    def out_roots(self) -> set:
        return {self.uf.find(p) for p in self.uf.parent if len(p) == 2 and p[1] == "out" and p[0] != "value"}

    def layer(self, name: str, conv_dims: int | None, key_in, shape_in, key_out, shape_out):
        """A selected layer: reads its input's channels if they are where it reads them."""
        var, c, nd = self.get(key_in)
        nd_in = len(shape_in) if shape_in is not None else nd
        want = (None if nd_in is None else nd_in - 1) if conv_dims is None else (
            0 if nd_in == conv_dims + 1 else 1)
        c_in = _norm_dim(c, nd_in) if c is not None else None
        if c_in is None or want is None or c_in == want or (conv_dims is None and c == -1):
            self.uf.union((name, "in"), var)
        nd_out = len(shape_out) if shape_out is not None else nd_in
        c_out = (-1 if nd_out is None else nd_out - 1) if conv_dims is None else (want if want is not None else 1)
        self.state[key_out] = ((name, "out"), c_out, nd_out)

    def same(self, key_out, key_in):
        self.state[key_out] = self.get(key_in)

    def elementwise(self, name: str, operands: list, shapes: list | None, key_out, shape_out):
        """Joins the operands whose channels line up with the output's; the output takes them.
        Without shapes (an fx graph) every operand joins."""
        if name not in BINARY_OPS:
            operands, shapes = operands[:1], None if shapes is None else shapes[:1]
        carrier, joined, unknown = None, [], []
        for i, key in enumerate(operands):
            if shapes is None:
                var, c, nd = self.get(key)
                joined.append(var)
                if carrier is None or (carrier[1] is None and c is not None):
                    carrier = (var, c, nd)
                continue
            if key not in self.state:
                continue  # a parameter, a constant or an input: no sheet's channels
            var, c, nd = self.state[key]
            s = shapes[i]
            c = _norm_dim(c, len(s)) if c is not None else None
            if c is None:  # channels no op names: joined only as the same layout
                if tuple(s) == tuple(shape_out):
                    unknown.append(var)
                continue
            pos = c + len(shape_out) - len(s)
            if s[c] != shape_out[pos] or (carrier is not None and pos != carrier[1]):
                continue  # broadcast along the channels, or channels on another axis
            if carrier is None:
                carrier = (var, pos, len(shape_out))
            joined.append(var)
        joined += unknown
        if carrier is None and unknown:
            carrier = (unknown[0], None, len(shape_out))
        if carrier is None:
            self.state[key_out] = self.new(None, len(shape_out) if shape_out is not None else None)
            return
        if name in MULTIPLY and len({self.uf.find(v) for v in joined} & self.out_roots()) >= 2:
            self.products.append(joined[0])
        self.state[key_out] = (self.uf.union(*joined), carrier[1], carrier[2])

    def moved(self, name, key_in, key_out, args, kwargs, shape_in=None, shape_out=None):
        """A shape op: the output keeps the input's variable where its channels stay whole."""
        var, c, nd = self.get(key_in)
        c2 = moved_channel(name, c, nd, args, kwargs, shape_in, shape_out)
        if c2 is None:
            self.state[key_out] = self.new(None, len(shape_out) if shape_out is not None else None)
            return
        if shape_out is not None:
            nd2 = len(shape_out)
        elif name == "permute":
            nd2 = len(_ints(args))
        else:
            nd2 = nd if name in ("transpose", "swapaxes", "swapdims", "t", "movedim") or name in POOLS else None
        self.state[key_out] = (var, c2, nd2)


SHAPE_OPS = frozenset({"permute", "transpose", "swapaxes", "swapdims", "t", "movedim", "getitem"}) | RESHAPES | POOLS | REDUCTIONS


class _Recorder(TorchFunctionMode):
    """Feeds every torch function a forward calls, and the selected and opaque modules' calls
    (through hooks), to a :class:`Flow`. Tensors are keyed by id and kept alive."""

    def __init__(self, flow: Flow):
        super().__init__()
        self.flow, self.alive, self.depth, self.busy = flow, [], 0, False

    def key(self, t):
        self.alive.append(t)
        return id(t)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth or self.busy or not isinstance(out, torch.Tensor):
            return out
        self.busy = True
        try:
            self.record(op_name(func), args, kwargs, out)
        finally:
            self.busy = False
        return out

    def record(self, name, args, kwargs, out):
        tensors = [a for a in _flat(args) + _flat(kwargs.values()) if isinstance(a, torch.Tensor)]
        flow = self.flow
        if name in ELEMENTWISE_OPS and tensors:
            flow.elementwise(name, [id(t) for t in tensors], [tuple(t.shape) for t in tensors], self.key(out),
                             tuple(out.shape))
        elif name in SHAPE_OPS and args and isinstance(args[0], torch.Tensor):
            x = args[0]
            flow.moved(name, self.key(x), self.key(out), list(args[1:]), kwargs, tuple(x.shape), tuple(out.shape))
        else:
            flow.state[self.key(out)] = flow.new(None, out.dim())


def _flat(values) -> list:
    out = []
    for v in values:
        out += _flat(v) if isinstance(v, (list, tuple)) else [v]
    return out


def run_example(model: nn.Module, example, flow: Flow, on_layer, opaque) -> None:
    """One forward of ``model`` on ``example`` (a tensor, a tuple of arguments or a dict of keyword
    arguments) under a :class:`_Recorder`; ``on_layer(name, module, x, y)`` for each call of a
    selected layer (``opaque(name, module)`` says which modules are looked at from outside only:
    "layer" for a selected one, "same" for one whose output channel j is its input channel j)."""
    rec = _Recorder(flow)
    handles = []

    def pre(name, kind):
        def hook(m, args, kwargs):
            if rec.depth == 0:
                x = args[0] if args else next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)
                rec.stack.append((name, kind, x))
            else:
                rec.stack.append(None)
            rec.depth += 1
        return hook

    def post(m, args, kwargs, y):
        rec.depth -= 1
        top = rec.stack.pop()
        if top is None or not isinstance(y, torch.Tensor):
            return
        name, kind, x = top
        rec.busy = True
        try:
            if not isinstance(x, torch.Tensor):
                flow.state[rec.key(y)] = flow.new()
            elif kind == "layer":
                on_layer(name, m, rec.key(x), tuple(x.shape), rec.key(y), tuple(y.shape))
            elif x.shape == y.shape:
                flow.same(rec.key(y), rec.key(x))
            else:
                flow.state[rec.key(y)] = flow.new()
        finally:
            rec.busy = False

    rec.stack = []
    for name, m in model.named_modules():
        kind = opaque(name, m)
        if kind:
            handles.append(m.register_forward_pre_hook(pre(name, kind), with_kwargs=True))
            handles.append(m.register_forward_hook(post, with_kwargs=True))
    args, kwargs = ((), dict(example)) if isinstance(example, dict) else (
        (tuple(example) if isinstance(example, (tuple, list)) else (example,)), {})
    was = model.training
    try:
        model.eval()  # no dropout; gradients stay on, so that no fused inference path (nn.Transformer's)
        with torch.enable_grad(), rec:  # skips the layers
            model(*args, **kwargs)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
