"""The width rule (spatialnet/width.py, docs/width-rule.md): the quantities it is derived to hold
are measured, at the paper's width and at 8x, and must agree (at initialisation; the pressure on
a weight in the trained regime, where the rule holds it); without the rule they do not."""
import math

import pytest
import torch

from spatialnet import data as data_mod
from spatialnet.config import TrainConfig
from spatialnet.analysis.invariants import measure_invariants
from spatialnet.width import _pair_push, density_push

PAPER = [128, 128, 128, 256]
WIDE8 = [1024, 1024, 1024, 2048]
SEEDS = tuple(range(8))


@pytest.fixture(scope="module")
def batch():
    from spatialnet.data import load_data
    td = load_data(TrainConfig(data="subset").validate(), dataset=data_mod.load_subset())
    x, y, task = next(td.epoch_batches(0, 256))
    return x, y, task


@pytest.fixture(scope="module")
def ratios(batch):
    out = {}
    for rule in ("auto", "none"):
        one = measure_invariants(TrainConfig(data="subset", width_rule=rule).validate(), *batch, seeds=SEEDS)
        wide = measure_invariants(TrainConfig(data="subset", width_rule=rule, hidden=WIDE8).validate(), *batch,
                                  seeds=SEEDS)
        out[rule] = {k: wide[k] / one[k] for k in one}
    return out


@pytest.mark.parametrize("quantity", ["pull_push", "spread", "length_spacing"])
def test_the_rule_holds_its_invariants_from_1x_to_8x(ratios, quantity):
    got = {k: v for k, v in ratios["auto"].items() if k.startswith(quantity + "/")}
    assert set(got) == {f"{quantity}/{l}" for l in (3, 4, 5)}
    # sampling noise of 8 nets (the output sheet holds 20 neurons): within 25 %
    for k, v in got.items():
        assert 0.8 < v < 1.25, (k, v)


def test_without_the_rule_the_invariants_break(ratios):
    r = ratios["none"]
    # the flags as given at 8x: the density unit holds 8x the neurons per length^2, and the
    # density's push gains on the transport's pull
    for l in (3, 4):
        assert r[f"length_spacing/{l}"] == pytest.approx(math.sqrt(8), rel=0.05)
        assert r[f"pull_push/{l}"] < 0.6


def _trained_task_gradients(n: int, steps: int = 400) -> dict:
    """RMS task gradient of one weight of layers 3, 4, 5 of a regular net n times the paper's
    width after ``steps`` Adam steps at the rule's learning rates (the mean over the last 20)."""
    from spatialnet.model import build_model
    from spatialnet.training.loop import _make_optimizer

    cfg = TrainConfig(data="subset", net="regular", hidden=[128 * n, 128 * n, 128 * n, 256 * n]).validate()
    torch.manual_seed(0)
    model = build_model(cfg)
    opt, _ = _make_optimizer(model, cfg, steps)
    from spatialnet.data import load_data
    td = load_data(cfg, dataset=data_mod.load_subset())
    sq, it = {}, 0
    while it < steps:
        for x, y, task in td.epoch_batches(it, 64):
            opt.zero_grad()
            (data_mod.task_loss_sum(model(x), y, task) / len(x)).backward()
            if it >= steps - 20:
                for l in (3, 4, 5):
                    sq.setdefault(l, []).append(model.layer(l).weight.grad.pow(2).mean().item())
            opt.step()
            it += 1
            if it == steps:
                break
    return {l: math.sqrt(sum(v) / len(v)) for l, v in sq.items()}


def test_the_pressure_on_a_trained_weight_holds_from_1x_to_4x():
    # the rule's premise: once trained (Adam, muP's learning rates), a hidden weight's task
    # gradient falls as 1 / width and the readout's does not (at init it is about 1 / sqrt(w))
    one, four = _trained_task_gradients(1), _trained_task_gradients(4)
    g = {l: four[l] / one[l] for l in one}
    assert 0.15 < g[3] < 0.4 and 0.15 < g[4] < 0.42, g  # 1/4 = 0.25; 1/sqrt(4) = 0.5 would fail
    assert 0.7 < g[5] < 1.4, g
    # the transport's gradient on one weight is alpha_l c_T(l) sign(w) d, d of N(0, 1) positions
    # at every width: its RMS goes as alpha_l c_T(l); against the task's, it holds
    from spatial_kernels.nn import transport_divisor
    sizes = {1: [1568, 128, 128, 128, 256, 20], 4: [1568, 512, 512, 512, 1024, 20]}
    alpha = {n: TrainConfig(hidden=sizes[n][1:-1]).validate().per_layer_values().alpha for n in (1, 4)}
    for l in (3, 4, 5):
        press = {n: alpha[n][l] / transport_divisor("per_connection", sizes[n][l], sizes[n][l - 1])
                 for n in (1, 4)}
        ratio = press[4] / press[1] / g[l]
        assert 0.6 < ratio < 1.6, (l, ratio)
        # with the flags as given (no rule) it would be far off
        assert press[4] / alpha[4][l] * alpha[1][l] / press[1] / g[l] < 0.45


def test_the_rule_at_the_paper_width_is_the_flags():
    cfg = TrainConfig(alpha=1.3, beta=2.5, lr=0.004, pos_lr_scale=3.0, density_length=1.0).validate()
    v = cfg.per_layer_values()
    assert v.width_factor == 1.0
    assert v.alpha == {3: 1.3, 4: 1.3, 5: 1.3} and v.beta == {3: 2.5, 4: 2.5, 5: 2.5}
    assert set(v.lr.values()) == {0.004} and v.bias_lr == 0.004 and v.pos_lr == pytest.approx(0.012)
    assert set(v.density_length.values()) == {1.0} and set(v.density_length) == {2, 3, 4, 5}
    # the records' JSON form keys layers by strings; the old name still gives it, with a warning
    assert v.to_json()["alpha"] == {"3": 1.3, "4": 1.3, "5": 1.3}
    with pytest.warns(DeprecationWarning, match="per_layer_values"):
        assert cfg.effective() == v.to_json()
    # narrower nets are not scaled down; width_rule none keeps the flags at any width
    a0 = TrainConfig().alpha  # the chosen setting's
    assert TrainConfig(hidden=[16, 16, 16, 24]).per_layer_values().alpha == dict.fromkeys((3, 4, 5), a0)
    none = TrainConfig(hidden=WIDE8, width_rule="none").per_layer_values()
    assert none.alpha == dict.fromkeys((3, 4, 5), a0) and set(none.lr.values()) == {0.005}
    with pytest.raises(ValueError, match="width_rule"):
        TrainConfig(width_rule="sqrt").validate()
    with pytest.raises(ValueError, match="density_length"):
        TrainConfig(density_length=0.0).validate()


def test_odd_widths_give_a_valid_rule_or_a_clear_error():
    # one layer far narrower than the net's mean width: its reference is under two neurons
    for hidden in ([128, 128, 1, 256], [2, 2, 2, 2000]):
        v = TrainConfig(hidden=hidden).validate().per_layer_values()
        assert all(b >= 0 for b in v.beta.values()) and all(x > 0 for x in v.density_length.values())
    from spatialnet.model import build_model
    build_model(TrainConfig(hidden=[2, 2, 2, 2000]).validate())
    m = build_model(TrainConfig(hidden=[8, 8, 8, 8]).validate())
    with pytest.raises(ValueError, match="beta for layer 3 must be a finite number >= 0"):
        m.spatial_loss(1.0, {3: -1.0, 4: 1.0, 5: 1.0})


def test_presets_name_every_per_mode_field():
    from spatialnet.config import PER_MODE, PRESETS
    for name, values in PRESETS.items():
        assert set(PER_MODE) <= set(values), name
    assert TrainConfig(**PRESETS["paper"]).cost_warmup == 0.0


def test_the_rule_at_4x_scales_lengths_and_learning_rates_as_derived():
    v = TrainConfig(hidden=[512, 512, 512, 1024], lr=0.005, pos_lr_scale=2.0).validate().per_layer_values()
    assert v.width_factor == 4.0
    # the density length: sqrt(N_ref / N) on hidden sheets, the output sheet's is unchanged
    assert v.density_length == {2: 0.5, 3: 0.5, 4: 0.5, 5: 1.0}
    # muP for Adam: the weights' lr over the fan-in's growth, so the first layer (fan-in: the pixels) keeps it
    assert v.lr == {1: 0.005, 2: 0.00125, 3: 0.00125, 4: 0.00125, 5: 0.00125}
    assert v.bias_lr == 0.005 and v.pos_lr == 0.01
    # hidden-to-hidden transport: 1/c_T grows 16x, a trained hidden weight's task gradient
    # shrinks 4x (as the readout's fan-in grows); the readout's 1/c_T grows 4x and its gradient
    # stays: w on every layer
    a = v.alpha
    assert a[3] == a[4] == a[5] == pytest.approx(TrainConfig().alpha * 4)


def test_the_optimiser_gets_the_rule_s_learning_rates():
    from spatialnet.model import build_model
    from spatialnet.training.loop import _make_optimizer
    cfg = TrainConfig(hidden=[32, 32, 320, 1536], lr=0.005, pos_lr_scale=2.0).validate()  # mean 480: w = 3
    model = build_model(cfg)
    opt, _ = _make_optimizer(model, cfg, 10)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(model.layer(1).weight)] == 0.005
    assert lr_of[id(model.layer(3).weight)] == pytest.approx(0.005 * (32 / 3) / 32)
    assert lr_of[id(model.layer(3).bias)] == 0.005
    assert lr_of[id(model.layer(3).positions)] == pytest.approx(0.01)
    v = cfg.per_layer_values()
    assert model.density_length(3) == pytest.approx(v.density_length[3]) == pytest.approx(math.sqrt(1 / 3))


def test_density_push_is_the_measured_mean_push():
    # the closed form the rule divides by, against the gradient of the reference density
    gen = torch.Generator().manual_seed(0)
    for n, length in ((128, 1.0), (1024, 1 / math.sqrt(8))):
        got = []
        for _ in range(6):
            p = torch.randn(n, 2, generator=gen, dtype=torch.float64, requires_grad=True)
            V = torch.exp(-torch.cdist(p, p) / length).sum() / n ** 2
            (g,) = torch.autograd.grad(V, p)
            rhat = p.detach() / p.detach().norm(dim=1, keepdim=True)
            got.append(float(-(g * rhat).sum(1).mean()))
        # the gradient counts each pair twice (i, j and j, i)
        assert sum(got) / len(got) == pytest.approx(2 * density_push("paper", n, length), rel=0.05)
    assert _pair_push(1.0) == pytest.approx(0.1045, abs=5e-4)
