"""The width rule's quantities (docs/width-rule.md), measured on a net rather than assumed.

- the transport's pressure on a weight against the task loss's gradient on it, per layer
  (:func:`rms_task_gradients` gives the task's side);
- the transport's pull on a position against the density's push on it, per sheet: the mean
  radial component, towards the sheet's centroid, of each one's descent direction
  (:func:`pull_push`, shared with any spatialized model);
- the sheet's spread and its spacing against the density's length;
- during training (:func:`rule_quantities`): the positions' Adam step against the density's
  length, and how many neurons of the next layer a live neuron feeds.

:func:`measure_invariants` reads the first four at initialisation over a few seeds (the rule
holds them there by construction; tests/spatialnet); :func:`rule_quantities` reads them on a
trained net, one checkpoint at a time (the width-forces study).
"""
from __future__ import annotations

import math

import torch


def radial(g: torch.Tensor, p: torch.Tensor) -> float:
    """The mean over a sheet's neurons of ``g``'s component along the unit vector from the
    sheet's centroid to the neuron: > 0 for a gradient whose descent pulls the neurons inwards."""
    r = p.detach() - p.detach().mean(0)
    rhat = r / r.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return float((g * rhat).sum(1).mean())


def pull_push(transport: torch.Tensor, densities: dict, positions: dict) -> dict:
    """``{sheet: pull / push}``: the transport's inward pull (the radial part of its gradient)
    over the density's outward push (minus the radial part of its gradient), per sheet.
    ``densities[s]`` is sheet s's density term, ``positions[s]`` its positions."""
    names = list(positions)
    pulls = torch.autograd.grad(transport, [positions[s] for s in names], retain_graph=True, allow_unused=True)
    out = {}
    for s, g_t in zip(names, pulls):
        (g_v,) = torch.autograd.grad(densities[s], positions[s], retain_graph=True)
        push = -radial(g_v, positions[s])
        pull = radial(g_t, positions[s]) if g_t is not None else 0.0
        out[s] = pull / push if push > 0 else math.inf
    return out


def rms_task_gradients(model, weights: dict, batches, loss_fn) -> dict:
    """``{name: RMS over the weight of the task loss's gradient}``, the squares averaged over
    ``batches`` (``(x, y, task)`` each; ``loss_fn(model, x, y, task)`` the mean loss)."""
    sq: dict = {}
    for x, y, task in batches:
        model.zero_grad()
        loss_fn(model, x, y, task).backward()
        for n, w in weights.items():
            sq.setdefault(n, []).append(w.grad.float().pow(2).mean().item())
    model.zero_grad()
    return {n: math.sqrt(sum(v) / len(v)) for n, v in sq.items()}


def _mean_loss(model, x, y, task):
    from ..data import task_loss_sum
    return task_loss_sum(model(x), y, task) / len(x)


def measure_invariants(cfg, x, y, task=None, seeds=(0, 1, 2, 3)) -> dict:
    """The rule's four quantities at initialisation (means over ``seeds``), for the docs and the
    tests: the nets ``cfg`` describes, with the width rule's values, on one batch ``(x, y, task)``
    of ``cfg.mode``'s data (``data.TaskData.epoch_batches``).

    - ``pressure/l``: RMS over W_l of the gradient of alpha_l T(l) / |L| against that of the task loss;
    - ``pull_push/s``: :func:`pull_push` of sheet s, the costs weighted as training weighs them;
    - ``spread/s``: the RMS distance of sheet s's positions from their centroid;
    - ``length_spacing/s``: the density length against the spacing N_s neurons have on that
      ground, length_s sqrt(N_s) / spread_s.
    """
    from ..model import build_model

    sums: dict[str, float] = {}
    for seed in seeds:
        model = build_model(cfg.replace(seed=seed))
        for k, v in _quantities(model, cfg, [(x, y, task)]).items():
            sums[k] = sums.get(k, 0.0) + v / len(seeds)
    return sums


def _quantities(model, cfg, batches) -> dict:
    values = cfg.per_layer_values()
    L = list(cfg.spatial_layers)
    task = rms_task_gradients(model, {l: model.layer(l).weight for l in L}, batches, _mean_loss)
    out = {}
    for l in L:
        W = model.layer(l).weight
        (g,) = torch.autograd.grad(model.transport_cost(l, values.alpha[l] / len(L)), W)
        out[f"pressure/{l}"] = float(g.float().pow(2).mean().sqrt()) / task[l]
    transport = sum(model.transport_cost(l, values.alpha[l] / len(L)) for l in L)
    positions = {l: model.layer(l).positions for l in L}
    densities = {l: model.density_cost(l, values.beta[l] / len(L)) for l in L}
    for l, v in pull_push(transport, densities, positions).items():
        out[f"pull_push/{l}"] = v
    for l, p in positions.items():
        spread = float((p.detach() - p.detach().mean(0)).pow(2).sum(1).mean().sqrt())
        out[f"spread/{l}"] = spread
        out[f"length_spacing/{l}"] = model.density_length(l) * len(p) ** 0.5 / spread
    return out


def participation(W: torch.Tensor, live_in: torch.Tensor | None = None,
                  live_out: torch.Tensor | None = None) -> torch.Tensor:
    """Per input neuron (column of W, ``(n_out, n_in)``), how many outputs it feeds: the
    participation ratio ``(sum_i |w_ij|)^2 / sum_i w_ij^2`` over the live outputs (1: one
    output; k: k outputs equally), for the live inputs."""
    a = W.detach().abs().float()
    if live_out is not None:
        a = a[live_out]
    if live_in is not None:
        a = a[:, live_in]
    return a.sum(0).pow(2) / a.pow(2).sum(0).clamp_min(1e-30)


def own_task_share(W: torch.Tensor, g_in, g_out) -> float | None:
    """How task-specific a layer's inputs are: the mean over its live inputs (``g_in`` >= 0) of the
    share of each one's outgoing |w| (to live outputs) that goes to outputs of its own task (0.5
    for two tasks at random, 1 once the connections are disjoint). ``W`` is ``(n_out, n_in)``."""
    a = W.detach().abs().float()
    live_out, live_in = g_out >= 0, g_in >= 0
    if not live_in.any() or not live_out.any():
        return None
    a = a[live_out][:, live_in]
    same = (g_out[live_out][:, None] == g_in[live_in][None, :]).float()
    return float(((a * same).sum(0) / a.sum(0).clamp_min(1e-30)).mean())


def adam_step(optimizer: torch.optim.Optimizer, param: torch.Tensor):
    """The size of ``param``'s last Adam step, per row (``(N,)`` for positions ``(N, D)``), as
    ``torch.optim.Adam`` takes it: ``lr m_hat / (sqrt(v_hat) + eps)``, from the optimiser's state
    and its group's hyper-parameters; None when the parameter has not stepped."""
    st = optimizer.state.get(param)
    if not st or "exp_avg" not in st:
        return None
    group = next(g for g in optimizer.param_groups if any(q is param for q in g["params"]))
    (b1, b2), step = group["betas"], float(st["step"])
    m = st["exp_avg"] / (1 - b1 ** step)
    v = st["exp_avg_sq"] / (1 - b2 ** step)
    d = group["lr"] * m / (v.sqrt() + group["eps"])
    return d.norm(dim=-1) if d.dim() > 1 else d.abs()


def rule_quantities(model, cfg, batches, optimizer=None, assignment: dict | None = None) -> dict:
    """The rule's quantities on a net as it stands (a checkpoint), for the width-forces study:

    - per spatial layer ``pressure/l`` and per sheet ``pull_push/s``, ``spread/s``,
      ``length_spacing/s`` as :func:`measure_invariants` (over ``batches``, the costs at full
      strength: the warm-up is not applied);
    - ``pull/s`` and ``push/s``: the mean radial pull and push themselves;
    - ``radius/s``: the median distance of the sheet's live neurons from their centroid;
    - ``spacing_length/s``: the typical spacing of the live neurons (``territory.spacing``) over
      the density's length;
    - ``step_length/s``: the median size of the positions' last Adam step over the density's
      length (``optimizer``: the run's, its state loaded from the checkpoint; None at
      initialisation);
    - ``feeds/l``: the median participation of a live neuron of hidden layer l in the next
      layer's live neurons (:func:`participation`);
    - ``own_share/l``: how task-specific hidden layer l's outgoing weights are
      (:func:`own_task_share`).
    ``assignment`` is the task split (``task_split.model_split``), for which neurons live."""
    import numpy as np

    from .territory import spacing

    out = _quantities(model, cfg, batches)
    values = cfg.per_layer_values()
    L = list(cfg.spatial_layers)
    transport = sum(model.transport_cost(l, values.alpha[l] / len(L)) for l in L)
    positions = {l: model.layer(l).positions for l in L}
    pulls = torch.autograd.grad(transport, list(positions.values()))
    for (l, p), g_t in zip(positions.items(), pulls):
        (g_v,) = torch.autograd.grad(model.density_cost(l, values.beta[l] / len(L)), p)
        out[f"pull/{l}"], out[f"push/{l}"] = radial(g_t, p), -radial(g_v, p)
    for l in L:
        p = model.layer(l).positions.detach()
        live = assignment[l] >= 0 if assignment is not None and l in assignment else torch.ones(len(p), dtype=bool)
        q = p[live].double().numpy()
        length = model.density_length(l)
        out[f"radius/{l}"] = float(np.median(np.linalg.norm(q - q.mean(0), axis=1))) if len(q) else None
        out[f"spacing_length/{l}"] = spacing(q) / length if len(q) > 2 else None
        if optimizer is not None:
            step = adam_step(optimizer, model.layer(l).positions)
            out[f"step_length/{l}"] = None if step is None else float(step.median()) / length
    if assignment is not None:
        for l in sorted(assignment)[:-1]:
            if l + 1 in assignment:
                pr = participation(model.layer(l + 1).weight, assignment[l] >= 0, assignment[l + 1] >= 0)
                out[f"feeds/{l}"] = float(pr.median()) if len(pr) else None
                out[f"own_share/{l}"] = own_task_share(model.layer(l + 1).weight, assignment[l], assignment[l + 1])
    return out
