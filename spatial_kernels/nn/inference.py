"""Sheet inference: the drivers that feed ``flow.py``'s rules (one forward on an example input, or
torch.fx traces of the model and, where one fails, of its parts, and nn.Sequential chains), and the
warning that says where the data could not be followed (``sheets.py`` tells the whole story)."""
from __future__ import annotations

import warnings

import torch
import torch.fx
from torch import nn

from .flow import ELEMENTWISE_OPS, POOL_MODULES, SHAPE_OPS, Flow, UnionFind, op_name, run_example

# modules whose output neuron j is input neuron j (element-wise or per-channel)
ELEMENTWISE_MODULES = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softsign,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d,
    nn.InstanceNorm2d, nn.InstanceNorm3d,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
# the same, named by class so that timm need not be imported (timm.layers.DropPath, LayerScale);
# and every activation of transformers.activations (SiLUActivation, NewGELUActivation, ...)
ELEMENTWISE_CLASS_NAMES = frozenset({"DropPath", "LayerScale", "LayerScale2d", "StochasticDepth"})
ELEMENTWISE_CLASS_MODULES = frozenset({"transformers.activations"})


def _is_elementwise(m: nn.Module, extra: tuple) -> bool:
    return (isinstance(m, ELEMENTWISE_MODULES + extra) or type(m).__name__ in ELEMENTWISE_CLASS_NAMES
            or type(m).__module__ in ELEMENTWISE_CLASS_MODULES)


def _conv_dims(m: nn.Module) -> int | None:
    """Spatial dimensions of a conv (its channels at dimension 1), None for a Linear or Conv1D
    (channels last)."""
    return len(m.kernel_size) if hasattr(m, "kernel_size") else None


class _Tracer(torch.fx.Tracer):
    def __init__(self, holders: set[str], prefix: str):
        super().__init__()
        self.holders, self.prefix = holders, prefix

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        full = f"{self.prefix}.{qualname}" if self.prefix else qualname
        return full not in self.holders  # selected layers and modules without one stay opaque


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


class Inference:
    """Joins ports (``(layer, "in"|"out")``) through one forward's data flow (``flow.py``),
    Sequential chains and names."""

    def __init__(self, model: nn.Module, selected: dict[str, nn.Module], extra_elementwise: tuple):
        self.model, self.selected, self.extra = model, selected, extra_elementwise
        self.uf = UnionFind()
        self.flows: list[Flow] = []
        self.covered: set[str] = set()
        self.failed: list[tuple[str, str]] = []  # (module, why) where a trace failed
        self.traced: list[str] = []  # the modules whose trace joined their layers
        # modules that hold a selected layer strictly inside them
        self.holders = {n for n, _ in model.named_modules() for s in selected if s.startswith(n + ".") or (n == "" and s)}

    def opaque(self, name: str, m: nn.Module):
        if name in self.selected:
            return "layer"
        return "same" if name not in self.holders and _is_elementwise(m, self.extra) else None

    def _count(self, calls: dict, name: str, where: str) -> None:
        calls[name] = calls.get(name, 0) + 1
        if calls[name] > 1:
            raise ValueError(f"layer {name!r} is called more than once in the forward of {where!r}, so which "
                             f"neurons it reads is ambiguous; pass sheets={{{name!r}: (in_name, out_name)}} and "
                             f"infer=False")

    def _check_called(self, calls: dict, prefix: str, where: str) -> None:
        for name in self.selected:
            if name.startswith(prefix + ".") or not prefix:
                if name not in calls:
                    raise ValueError(f"layer {name!r} is never called in the traced forward of {where!r}; its "
                                     f"sheets cannot be inferred: pass sheets={{{name!r}: (in_name, out_name)}}")
                self.covered.add(name)

    def run(self, example) -> None:
        """Follows the data through one forward on ``example`` when there is one (given, or a
        Hugging Face model's ``dummy_inputs``), else through torch.fx traces."""
        where = type(self.model).__name__
        if example is None:
            dummy = getattr(self.model, "dummy_inputs", None)
            param = next(self.model.parameters(), None)
            if isinstance(dummy, dict) and param is not None:  # on the model's device
                dummy = {k: v.to(param.device) if isinstance(v, torch.Tensor) else v for k, v in dummy.items()}
            example = dummy if isinstance(dummy, (dict, torch.Tensor)) else None
        if example is not None:
            flow, calls = Flow(self.uf), {}

            def on_layer(name, m, kx, sx, ky, sy):
                calls[name] = calls.get(name, 0) + 1
                flow.layer(name, _conv_dims(m), kx, sx, ky, sy)
            try:
                run_example(self.model, example, flow, on_layer, self.opaque)
            except Exception as exc:  # noqa: BLE001 - a forward that fails falls back to fx
                self.failed.append((where, "its forward on example= raised " + _first_line(exc)))
            else:
                for name, n in calls.items():
                    if n > 1:
                        self._count({name: 1}, name, where)
                self._check_called(calls, "", where)
                self.flows.append(flow)
                self.traced.append(where)
                return
        self.analyse(self.model, "")

    def analyse(self, module: nn.Module, prefix: str) -> None:
        if prefix in self.selected or prefix not in self.holders:
            return
        try:
            graph = _Tracer(self.holders, prefix).trace(module)
        except Exception as exc:  # noqa: BLE001 - an untraceable forward falls back to its parts
            if not isinstance(module, (nn.ModuleList, nn.ModuleDict)):  # containers have no forward to trace
                self.failed.append((prefix or type(module).__name__, _first_line(exc)))
            graph = None
        if graph is not None:
            self._walk_graph(graph, module, prefix)
            self.traced.append(prefix or type(module).__name__)
            return
        if isinstance(module, nn.Sequential):
            self._walk_chain(module, prefix)
            self.traced.append(f"{prefix or type(module).__name__} (its children as a chain)")
        for name, child in module.named_children():
            self.analyse(child, f"{prefix}.{name}" if prefix else name)

    def _walk_graph(self, graph: torch.fx.Graph, root: nn.Module, prefix: str) -> None:
        flow, calls = Flow(self.uf), {}
        where = prefix or type(root).__name__
        for node in graph.nodes:
            args = _node_args(node)
            x = args[0] if args else None
            if node.op == "call_module":
                full = f"{prefix}.{node.target}" if prefix else node.target
                m = root.get_submodule(node.target)
                if full in self.selected:
                    self._count(calls, full, where)
                    flow.layer(full, _conv_dims(m), x, None, node, None)
                elif x is not None and self.opaque(full, m) == "same":
                    flow.same(node, x)
                elif x is not None and isinstance(m, POOL_MODULES):
                    flow.moved("adaptiveavgpool2d", x, node, [], {})
                elif x is not None and type(m).__name__ == "Permute" and hasattr(m, "dims"):
                    flow.moved("permute", x, node, list(m.dims), {})
                elif x is not None and isinstance(m, nn.Flatten):
                    flow.moved("flatten", x, node, [m.start_dim], {})
                else:
                    flow.state[node] = flow.new()
            elif node.op in ("call_function", "call_method") and args:
                name = op_name(node.target)
                if name in ELEMENTWISE_OPS:
                    flow.elementwise(name, args, None, node, None)
                elif name in SHAPE_OPS and node.args and node.args[0] is x:
                    flow.moved(name, x, node, list(node.args[1:]), dict(node.kwargs))
                else:
                    flow.state[node] = flow.new()
        self._check_called(calls, prefix, where)
        self.flows.append(flow)

    def gated(self) -> set:
        """The union-find roots of the gated sheets."""
        return {self.uf.find(v) for f in self.flows for v in f.products}

    def _walk_chain(self, seq: nn.Sequential, prefix: str) -> None:
        current = ("chain", prefix, 0)
        for i, (name, child) in enumerate(seq.named_children()):
            full = f"{prefix}.{name}" if prefix else name
            if full in self.selected:
                self.uf.union((full, "in"), current)
                current = self.uf.find((full, "out"))
                self.covered.add(full)
            elif full not in self.holders and _is_elementwise(child, self.extra):
                continue
            else:
                current = ("chain", prefix, i + 1)


def _node_args(node: torch.fx.Node) -> list[torch.fx.Node]:
    """The graph values among a node's arguments (nested ones included), in order."""
    found: list[torch.fx.Node] = []
    torch.fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n) or n)
    return found


def warn_apart(inf: Inference) -> None:
    """One warning for the traces that failed: where, why, and which layers' sheets stay apart."""
    where = "; ".join(f"{m!r} ({why})" for m, why in inf.failed[:3]) + (
        f" and {len(inf.failed) - 3} more" if len(inf.failed) > 3 else "")
    if type(inf.model).__name__ in inf.traced:  # the example's forward failed, a trace of the whole followed
        warnings.warn(f"spatialize cannot follow the data through {where}; a torch.fx trace of the whole model "
                      f"followed it instead", stacklevel=4)
        return
    parts = sorted(set(inf.traced) - {type(inf.model).__name__})
    alone = [n for n in inf.selected if n not in inf.covered]
    apart = (f"sheets are joined only within {parts[:4]}{' ...' if len(parts) > 4 else ''}, so what flows "
             f"between them (a residual stream, a permute) stays apart" if parts else "no trace joins any sheet")
    alone_text = f"; layers no trace covers: {alone[:4]}{' ...' if len(alone) > 4 else ''}" if alone else ""
    warnings.warn(f"spatialize cannot follow the data through {where}: {apart}{alone_text}. Pass example= (one "
                  f"forward's inputs) to follow it, or name the shared sheets with sheets=", stacklevel=4)
