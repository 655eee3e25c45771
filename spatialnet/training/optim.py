"""Float32 master weights for parameters stored in a low-precision dtype (``--weight-dtype bfloat16``).

Adam moves a parameter by about its lr per step. A bfloat16 weight has 8 significant bits: at
|w| = 0.04 its spacing is 2**-12 = 2.4e-4, so an update below half of that (1.2e-4) rounds away
and the weight never moves, and one above it moves by a whole spacing. The width rule's lr at
16x the paper's width is 0.0024 / 16 = 1.5e-4, right at that edge. So the optimiser keeps a
float32 copy of every low-precision parameter, steps that copy with the gradient cast to
float32, and writes it back rounded to the parameter's dtype: the forward pass and the kernels
read bfloat16 weights (half the memory traffic), and small updates accumulate in the copy as
they would in float32. This is the usual mixed-precision recipe with master weights.

The copies are part of :meth:`MasterWeights.state_dict`, so a resumed run continues from the
float32 values, not from their rounded bfloat16 images.
"""
from __future__ import annotations

import torch

LOW_PRECISION = (torch.bfloat16, torch.float16)


class MasterWeights:
    """Wraps an optimiser built over ``float32`` masters of the low-precision parameters.

    Args:
        params_groups: parameter groups as for ``torch.optim`` (dicts with ``"params"`` and
            per-group options); low-precision parameters are replaced by float32 masters.
        optimizer_cls: e.g. ``torch.optim.Adam``; ``**kw`` go to it.

    ``inner`` is the wrapped optimiser (give it to an lr scheduler); ``step``, ``zero_grad``,
    ``param_groups``, ``state_dict`` and ``load_state_dict`` behave like an optimiser's.
    """

    def __init__(self, param_groups, optimizer_cls, **kw):
        self.pairs: list[tuple[torch.nn.Parameter, torch.Tensor]] = []  # (model parameter, its master)
        self.params: list[torch.nn.Parameter] = []
        groups = []
        for g in param_groups:
            masters = []
            for p in g["params"]:
                self.params.append(p)
                if p.dtype in LOW_PRECISION:
                    m = p.detach().float().clone().requires_grad_(True)
                    self.pairs.append((p, m))
                    masters.append(m)
                else:
                    masters.append(p)
            groups.append({**g, "params": masters})
        self.inner = optimizer_cls(groups, **kw)

    @property
    def param_groups(self):
        return self.inner.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        for p, m in self.pairs:
            m.grad = None if p.grad is None else p.grad.float()
        self.inner.step()
        for p, m in self.pairs:
            p.copy_(m)  # rounded to nearest in p's dtype

    def state_dict(self) -> dict:
        return {"optimizer": self.inner.state_dict(), "masters": [m.detach().clone() for _, m in self.pairs]}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        if set(state) != {"optimizer", "masters"} or len(state["masters"]) != len(self.pairs):
            raise ValueError(f"optimizer state does not fit float32 master weights for {len(self.pairs)} "
                             f"low-precision parameters (keys {sorted(state)})")
        self.inner.load_state_dict(state["optimizer"])
        for (p, m), saved in zip(self.pairs, state["masters"]):
            if saved.shape != m.shape:
                raise ValueError(f"master weight of shape {tuple(saved.shape)} does not fit the parameter "
                                 f"of shape {tuple(m.shape)}")
            m.copy_(saved)
            p.copy_(m)
