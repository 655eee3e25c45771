"""The width rule (spatialnet/width.py, docs/width-rule.md): the quantities it is derived to hold
are measured at initialisation, at the paper's width and at 8x, and must agree; without the rule
they do not."""
import math

import pytest
import torch

from spatialnet import data as data_mod
from spatialnet.config import TrainConfig
from spatialnet.width import _pair_push, density_push, measure_invariants

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


@pytest.mark.parametrize("quantity", ["pressure", "pull_push", "spread", "length_spacing"])
def test_the_rule_holds_its_invariants_from_1x_to_8x(ratios, quantity):
    got = {k: v for k, v in ratios["auto"].items() if k.startswith(quantity + "/")}
    assert set(got) == {f"{quantity}/{l}" for l in (3, 4, 5)}
    # sampling noise of 8 nets (the output sheet holds 20 neurons): within 25 %
    for k, v in got.items():
        assert 0.8 < v < 1.25, (k, v)


def test_without_the_rule_the_invariants_break(ratios):
    r = ratios["none"]
    # the flags as given at 8x: the transport presses each hidden weight 8^1.5 times less, the
    # density unit holds 8x the neurons per length^2
    for l in (3, 4):
        assert r[f"pressure/{l}"] < 0.1
        assert r[f"length_spacing/{l}"] == pytest.approx(math.sqrt(8), rel=0.05)
        assert r[f"pull_push/{l}"] < 0.5


def test_the_rule_at_the_paper_width_is_the_flags():
    cfg = TrainConfig(alpha=1.3, beta=2.5, lr=0.004, pos_lr_scale=3.0, density_length=1.0).validate()
    eff = cfg.effective()
    assert eff["width_factor"] == 1.0
    assert eff["alpha"] == {"3": 1.3, "4": 1.3, "5": 1.3} and eff["beta"] == {"3": 2.5, "4": 2.5, "5": 2.5}
    assert set(eff["lr"].values()) == {0.004} and eff["bias_lr"] == 0.004 and eff["pos_lr"] == pytest.approx(0.012)
    assert set(eff["density_length"].values()) == {1.0} and set(eff["density_length"]) == {"2", "3", "4", "5"}
    # narrower nets are not scaled down; width_rule none keeps the flags at any width
    assert TrainConfig(hidden=[16, 16, 16, 24]).effective()["alpha"] == dict.fromkeys("345", 1.6)
    none = TrainConfig(hidden=WIDE8, width_rule="none").effective()
    assert none["alpha"] == dict.fromkeys("345", 1.6) and set(none["lr"].values()) == {0.005}
    with pytest.raises(ValueError, match="width_rule"):
        TrainConfig(width_rule="sqrt").validate()
    with pytest.raises(ValueError, match="density_length"):
        TrainConfig(density_length=0.0).validate()


def test_the_rule_at_4x_scales_lengths_and_learning_rates_as_derived():
    eff = TrainConfig(hidden=[512, 512, 512, 1024], lr=0.005, pos_lr_scale=2.0).validate().effective()
    assert eff["width_factor"] == 4.0
    # the density length: sqrt(N_ref / N) on hidden sheets, the output sheet's is unchanged
    assert eff["density_length"] == {"2": 0.5, "3": 0.5, "4": 0.5, "5": 1.0}
    # muP for Adam: the weights' lr over the fan-in's growth, so the first layer (fan-in: the pixels) keeps it
    assert eff["lr"] == {"1": 0.005, "2": 0.00125, "3": 0.00125, "4": 0.00125, "5": 0.00125}
    assert eff["bias_lr"] == 0.005 and eff["pos_lr"] == 0.01
    # hidden-to-hidden transport: 1/c_T grows 16x, the task gradient of a hidden weight shrinks with
    # the readout's E|w|, sqrt((256 + 20) / (1024 + 20)): about w^1.5; the readout's own gradient
    # does not shrink, so it gets w
    a = eff["alpha"]
    assert a["3"] == a["4"] == pytest.approx(1.6 * 16 * math.sqrt(276 / 1044))
    assert a["5"] == pytest.approx(1.6 * 4)


def test_the_optimiser_gets_the_rule_s_learning_rates():
    from spatialnet.config import build_model
    from spatialnet.training.loop import _make_optimizer
    cfg = TrainConfig(hidden=[32, 32, 320, 1536], lr=0.005, pos_lr_scale=2.0).validate()  # mean 480: w = 3
    model = build_model(cfg)
    opt, _ = _make_optimizer(model, cfg, 10)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(model.layer(1).weight)] == 0.005
    assert lr_of[id(model.layer(3).weight)] == pytest.approx(0.005 * (32 / 3) / 32)
    assert lr_of[id(model.layer(3).bias)] == 0.005
    assert lr_of[id(model.layer(3).positions)] == pytest.approx(0.01)
    eff = cfg.effective()
    assert model.density_length(3) == pytest.approx(eff["density_length"]["3"]) == pytest.approx(math.sqrt(1 / 3))


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
