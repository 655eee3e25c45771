"""The width rule: the values a net ``w`` times the paper's width trains with, so that the paper's
setting carries over to it unchanged (the derivation: docs/width-rule.md).

The rule compares the net with its reference, the same net with every hidden width divided by
``w`` (the paper's net for its own shapes scaled); input and output widths stay. It holds four
quantities at their reference values at initialisation, under Adam (which normalises each
parameter's step, so only ratios inside one parameter's gradient, and learning rates, matter):

1. the transport's pressure on one weight against the task loss's gradient on it (per layer),
   in the trained regime: ``alpha_l = alpha * (c_T(ref) / c_T) * r_l``, where ``r_l`` is how
   much smaller the task gradient of one trained weight of layer l is than in the reference.
   Under Adam at muP's learning rates the readout's learned weights are Theta(1 / its fan-in),
   so the backward signal into every hidden layer, and a hidden weight's gradient, shrink as
   1 / (readout fan-in); the readout's own gradient, the loss's, does not shrink. (At
   initialisation the hidden gradients shrink only as about 1 / sqrt(fan-in), from Glorot's
   random readout; training leaves that regime within a few hundred steps. Measured on regular
   nets, 1x to 8x: results/width-rule-gradients.md.) For the paper's shapes scaled w times this
   is ``alpha * w`` on every layer;
2. the transport's pull on one position against the density's push on it (per sheet, the mean
   radial components over the sheet's neurons at the paper's N(0, 1) start):
   ``beta_s = beta * (pull_s / pull_s(ref)) / (push_s / push_s(ref))``, the pull from the
   layers that read and write the sheet, the push from the density's exact expectation
   (:func:`density_push`);
3. the positions' initial spread: N(0, 1) at every width, so every sheet covers the same ground;
4. the density's length against the spacing that N neurons need on that ground:
   ``length_s = length * sqrt(N_s(ref) / N_s)``;
5. the time the transport needs to reshape a weight, ``E|w_l| / lr_l`` (``trained_init``, the
   rule's form since the width-forces study): the spatial layers' weights start at the size
   training gives them, the initialiser's times ``sqrt(fan_in(ref) / fan_in)`` (``init_scale``),
   so that under muP's lr a weight moves by its own size in the reference's number of steps; the
   pull of 2 is then taken at that size, the trained one. Without it (``trained_init=False``, the
   rule's earlier form) every width starts from the initialiser's scale.

The weights' Adam learning rate follows muP: ``lr * fan_in(ref) / fan_in`` for each layer's
weight matrix (the first layer's fan-in is the input's, so it keeps ``lr``), biases at ``lr``;
the positions keep ``lr * pos_lr_scale``. At ``w = 1`` every value is the flag's.
"""
from __future__ import annotations

import math
from functools import lru_cache

from spatial_kernels.nn import density_divisor, transport_divisor


def _mean_abs_weight(init: str, fan_in: float, fan_out: float) -> float:
    """E|w| at initialisation up to a factor common to every width (Glorot-uniform:
    gain * sqrt(6 / (fan_in + fan_out)) / 2; nn.Linear's U(+-1/sqrt(fan_in)): 1 / (2 sqrt(fan_in)))."""
    return math.sqrt(6.0 / (fan_in + fan_out)) if init == "glorot" else 1.0 / math.sqrt(fan_in)


def _transport_norm(norm: str, n_out: float, n_in: float) -> float:
    return 1.0 / transport_divisor(norm, n_out, n_in)


def _density_norm(norm: str, n: float) -> float:
    return 1.0 / density_divisor(norm, n)


@lru_cache(maxsize=256)
def _pair_push(length: float) -> float:
    """E[exp(-|x - y| / length) * u_xy . x / |x|] for x, y independent N(0, I_2), u_xy the unit
    vector from y to x: the mean outward push one neuron of an N(0, 1) sheet gets from another.

    With z = x - y ~ N(0, 2 I) and x | z ~ N(z / 2, I / 2), the inner mean E[x/|x| . z/|z| | z] is
    the mean cosine of a 2-D Gaussian about its mean direction (a Rice law), and the outer one a
    1-D integral over the Rayleigh law of |z|, by quadrature."""
    from scipy import integrate
    from scipy.special import ive

    def mean_cos(r):  # x ~ N(a e, s^2 I), a = r / 2, s^2 = 1/2
        a, s2 = r / 2.0, 0.5
        k = a * a / (4 * s2)
        return math.sqrt(math.pi) / 2 * (a / math.sqrt(2 * s2)) * (ive(0, k) + ive(1, k))

    value, _ = integrate.quad(lambda r: math.exp(-r / length) * mean_cos(r) * (r / 2) * math.exp(-r * r / 4),
                              0.0, math.inf, limit=200)
    return value


def density_push(norm: str, n: float, length: float) -> float:
    """The mean outward push of V = c_V sum_ij exp(-d_ij / length) on one neuron of an N(0, 1)
    sheet of ``n`` neurons, up to a factor common to every width: c_V (n - 1) E[pair] / length."""
    return _density_norm(norm, n) * (n - 1) * _pair_push(float(length)) / length


def width_rule(sizes, hidden_ref, spatial_layers, *, alpha: float, beta: float, lr: float, pos_lr: float,
               transport_norm: str, density_norm: str, init: str, density_length: float = 1.0,
               trained_init: bool = False) -> dict:
    """The per-layer values of the rule (see the module docstring) for a net of ``sizes``
    (input, hidden..., output) against the reference whose hidden widths are ``hidden_ref``.

    Returns ``{"alpha": {l: alpha_l}, "beta": {l: beta_l}, "density_length": {l: length_l},
    "lr": {l: lr of W_l}, "bias_lr": lr, "pos_lr": ..., "init_scale": {l: scale of W_l's start}}``,
    layers 1-based ints; alpha and beta for the spatial layers, lengths for every positioned layer,
    the start's scale for every layer (1 but on the spatial layers with ``trained_init``)."""
    sizes = [float(s) for s in sizes]
    ref = [sizes[0], *map(float, hidden_ref), sizes[-1]]
    K = len(sizes) - 1
    spatial = sorted(int(l) for l in spatial_layers)

    # 5. the spatial layers' weights start at the size training gives them (trained_init):
    # E|w_l| over the reference's as fan_in(ref) / fan_in, the initialiser's times init_scale_l
    init_scale = {l: (math.sqrt(ref[l - 1] / sizes[l - 1]) if trained_init and l in spatial else 1.0)
                  for l in range(1, K + 1)}

    def ebar(sz, l):  # E|w| of W_l, (sz[l], sz[l-1]), as initialised
        return _mean_abs_weight(init, sz[l - 1], sz[l]) * (init_scale[l] if sz is sizes else 1.0)

    # 1. r_l: a trained weight's task gradient against the reference's. The readout's is the
    # loss's own; every hidden layer's backward signal comes through the readout's learned
    # weights, Theta(1 / N_{K-1}) each (muP, Adam), and the hidden layers between pass it on
    # unchanged (sqrt(N) random-sign terms of size 1 / sqrt(N))
    r = {K: 1.0}
    for l in range(K - 1, 0, -1):
        r[l] = ref[K - 1] / sizes[K - 1]
    alpha_l = {l: alpha * (_transport_norm(transport_norm, ref[l], ref[l - 1])
                           / _transport_norm(transport_norm, sizes[l], sizes[l - 1])) * r[l] for l in spatial}

    # 4. lengths: sqrt(N_ref / N) on every positioned layer
    positioned = sorted(set(spatial) | {l - 1 for l in spatial})
    length = {l: density_length * math.sqrt(ref[l] / sizes[l]) for l in positioned}

    # 2. the pull on a neuron of sheet s: from W_s (s its output: N_{s-1} connections) and from
    # W_{s+1} (s its input: N_{s+1} connections), each alpha_l c_T E|w| per connection
    def pull(sz, alphas, s):
        total = 0.0
        if s in alphas:
            total += alphas[s] * _transport_norm(transport_norm, sz[s], sz[s - 1]) * sz[s - 1] * ebar(sz, s)
        if s + 1 in alphas:
            total += alphas[s + 1] * _transport_norm(transport_norm, sz[s + 1], sz[s]) * sz[s + 1] * ebar(sz, s + 1)
        return total

    alpha_ref = dict.fromkeys(spatial, alpha)
    beta_l = {}
    for s in spatial:  # every spatial layer's output sheet has a density term
        if ref[s] < 2:  # a sheet narrower than two neurons in the reference has no push to keep
            beta_l[s] = beta
            continue
        pulls = pull(sizes, alpha_l, s) / pull(ref, alpha_ref, s) if alpha > 0 else 1.0
        pushes = (density_push(density_norm, sizes[s], length[s])
                  / density_push(density_norm, ref[s], density_length))
        beta_l[s] = beta * pulls / pushes

    lr_l = {l: lr * ref[l - 1] / sizes[l - 1] for l in range(1, K + 1)}
    return {"alpha": alpha_l, "beta": beta_l, "density_length": length, "lr": lr_l, "bias_lr": lr, "pos_lr": pos_lr,
            "init_scale": init_scale}
