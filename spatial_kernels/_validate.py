"""Argument checks shared by every backend.

One layer, run before any backend is chosen, so that every backend sees the same, already
checked arguments and every user sees the same messages.

A check does not raise: it returns ``None`` or a :class:`BadArgument`, the exception to raise and
its message, whose ``{name}`` fields are the shapes of the tensors it names and are filled in
when it is raised. The public functions raise it through ``_op_common.raise_bad_argument``: at once in
eager mode, and under ``torch.compile`` when the compiled code runs, where shapes are concrete
(while tracing they can be symbolic, and an exception raised there would reach the user as
dynamo's own error type).
"""
from __future__ import annotations

import math
import numbers

import torch

POSITION_DTYPES = (torch.float32, torch.float64)
# Low-precision weights are read as-is and accumulated in float32; only the triton backend
# streams them natively, the others would silently upcast a W-sized copy.
LOW_PRECISION_WEIGHT_DTYPES = (torch.bfloat16, torch.float16)
MAX_DIM = 3


class _Shape(tuple):
    def __str__(self) -> str:
        return "(" + ", ".join(str(s) for s in self) + ")"

    __format__ = lambda self, spec: format(str(self), spec)  # noqa: E731


EXCEPTIONS = {"ValueError": ValueError, "TypeError": TypeError}


class BadArgument:
    """A failed check: ``EXCEPTIONS[kind](template.format(name=shape of tensors[name], ...))``; a
    field ``{name}`` prints the shape as ``(a, b)``, ``{name[0]}`` its first size, and a field
    named in ``ints`` that int. The kind is a name, not the class, so that torch.compile can pass
    it to an operator as a constant.

    Sizes and ints the message shows are fields, filled in when it is raised, never formatted
    into the template by the check: under torch.compile they can be symbolic (an int argument
    that changed between calls becomes a SymInt), and formatting one breaks a fullgraph trace on
    some torch versions (2.11)."""

    def __init__(self, kind: str, template: str, ints: dict[str, int] | None = None, **tensors: torch.Tensor):
        self.kind, self.template, self.tensors, self.ints = kind, template, tensors, dict(ints or {})

    def message(self) -> str:
        fields = {k: _Shape(int(s) for s in t.shape) for k, t in self.tensors.items()}
        return self.template.format(**fields, **{k: int(v) for k, v in self.ints.items()})

    def exception(self) -> Exception:
        return EXCEPTIONS[self.kind](self.message())


def _require_tensor(name: str, t) -> BadArgument | None:
    if not isinstance(t, torch.Tensor):
        return BadArgument("TypeError", f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return None


def _check_positions(name: str, p) -> BadArgument | None:
    bad = _require_tensor(name, p)
    if bad is not None:
        return bad
    if p.dim() != 2:
        return BadArgument("ValueError", f"{name} must be 2-D (num_neurons, D) with D in 1..{MAX_DIM}, got shape "
                                       "{p}", p=p)
    if not 1 <= p.shape[1] <= MAX_DIM:
        return BadArgument("ValueError", f"{name} must have D = 1, 2 or 3 coordinates per neuron (shape "
                                       "(num_neurons, D)), got shape {p}", p=p)
    if p.dtype not in POSITION_DTYPES:
        return BadArgument("TypeError", f"{name} must be float32 or float64, got {p.dtype} with shape " "{p}", p=p)
    return None


def check_transport_args(W, p_in, p_out, groups=1, transposed=False) -> BadArgument | None:
    """Checks W against p_in (n_in, D) and p_out (n_out, D) for every backend: ``(n_out, n_in /
    groups, *kernel)``, or with ``transposed`` (W's first dimension the inputs, as transformers'
    Conv1D and nn.ConvTranspose store it) ``(n_in, n_out / groups, *kernel)``."""
    bad = _require_tensor("W", W) or _check_positions("p_in", p_in) or _check_positions("p_out", p_out)
    if bad is not None:
        return bad
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        return BadArgument("ValueError", f"groups must be a positive int, got {groups!r}")
    if not isinstance(transposed, bool):
        return BadArgument("TypeError", f"transposed must be a bool, got {transposed!r}")
    if W.dim() < 2:
        return BadArgument("ValueError", "W must be (n_out, n_in) like nn.Linear.weight or (n_out, n_in / groups, "
                                       "*kernel) like a convolution's weight, got shape {W}", W=W)
    if p_in.shape[1] != p_out.shape[1]:
        return BadArgument("ValueError", "p_in and p_out must have the same number of coordinates D, got p_in "
                                       "{p_in} and p_out {p_out}", p_in=p_in, p_out=p_out)
    rows, cols = ("p_in", "p_out") if transposed else ("p_out", "p_in")
    layout = "(n_in, n_out / groups, *kernel)" if transposed else "(n_out, n_in / groups, *kernel)"
    pos = {"p_in": p_in, "p_out": p_out}
    if pos[rows].shape[0] % groups or pos[cols].shape[0] % groups:
        return BadArgument("ValueError", "groups={groups} must divide both len(p_in) and len(p_out), got p_in "
                                       "{p_in} and p_out {p_out}", {"groups": groups}, p_in=p_in, p_out=p_out)
    if W.shape[0] != pos[rows].shape[0] or W.shape[1] * groups != pos[cols].shape[0]:
        return BadArgument("ValueError", f"W must have shape {layout} with groups={{groups}}"
                                       f"{', transposed' if transposed else ''}: W {{W}} does not fit p_in {{p_in}} "
                                       "and p_out {p_out}", {"groups": groups}, W=W, p_in=p_in, p_out=p_out)
    if W.device != p_in.device or W.device != p_out.device:
        return BadArgument("ValueError", f"W, p_in and p_out must be on one device, got W on {W.device}, p_in on "
                                       f"{p_in.device}, p_out on {p_out.device}")
    if p_in.dtype != p_out.dtype:
        return BadArgument("TypeError", f"p_in and p_out must share a dtype, got p_in {p_in.dtype} and p_out "
                                      f"{p_out.dtype}")
    if W.dtype == p_in.dtype:
        return None
    if W.dtype in LOW_PRECISION_WEIGHT_DTYPES and p_in.dtype == torch.float32:
        return None  # allowed on triton only; the dispatcher checks the backend
    return BadArgument("TypeError", f"W must have the positions' dtype ({p_in.dtype}), or be bfloat16/float16 with "
                                  f"float32 positions, got W {W.dtype} with shape " "{W}", W=W)


def check_density_args(p) -> BadArgument | None:
    return _check_positions("p", p)


def check_scale(scale) -> BadArgument | None:
    """``scale`` must be a finite real number (a constant weight, not a tensor)."""
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        return BadArgument("TypeError", f"scale must be a real number (a constant weight on the cost), got "
                                      f"{type(scale).__name__}" + ("; multiply the returned cost by a tensor weight "
                                                                  "instead" if isinstance(scale, torch.Tensor) else ""))
    if not -math.inf < scale < math.inf:  # not math.isfinite: under torch.compile scale may be a SymFloat
        return BadArgument("ValueError", f"scale must be finite, got {float(scale)}")
    return None
