"""The width rule (spatialnet/width.py, docs/width-rule.md): the quantities it is derived to hold
are measured on trained nets at 1x and 4x, as medians over seeds, and must agree within the
tolerances stated (taken from their spread over five seeds, docs/width-rule.md); with the rule's
earlier form (every width from the initialiser's scale) the weights' clock drifts, and without
the rule the invariants break (at initialisation, 1x against 8x)."""
import math
import statistics

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


def test_at_initialisation_the_rule_holds_pull_against_push_and_the_spacing(batch):
    # by construction, at the N(0, 1) start: 8x against 1x over 8 nets (20 outputs: sampling noise)
    one = measure_invariants(TrainConfig(data="subset").validate(), *batch, seeds=SEEDS)
    wide = measure_invariants(TrainConfig(data="subset", hidden=WIDE8).validate(), *batch, seeds=SEEDS)
    for q in ("pull_push", "length_spacing", "spread"):
        for l in (3, 4, 5):
            assert 0.8 < wide[f"{q}/{l}"] / one[f"{q}/{l}"] < 1.25, (q, l)
    none = measure_invariants(TrainConfig(data="subset", hidden=WIDE8, width_rule="none").validate(), *batch,
                              seeds=SEEDS)
    for l in (3, 4):  # the flags as given: 8x the neurons per length^2, and the push gains on the pull
        assert none[f"length_spacing/{l}"] / one[f"length_spacing/{l}"] == pytest.approx(math.sqrt(8), rel=0.05)
        assert none[f"pull_push/{l}"] / one[f"pull_push/{l}"] < 0.6


def _trained_quantities(w: int, rule: str, seed: int, steps: int = 400) -> dict:
    """The rule's quantities (``analysis.invariants.rule_quantities``) of a spatial net w times the
    paper's width, seeded ``seed``, after ``steps`` Adam steps on the embedded subset (concat,
    batches of 64, the costs at full strength from the first step), with its own split naming
    tasks and live neurons."""
    import itertools

    from spatialnet.analysis.invariants import rule_quantities
    from spatialnet.analysis.task_split import model_split
    from spatialnet.data import load_data
    from spatialnet.model import build_model
    from spatialnet.training.loop import _make_optimizer

    cfg = TrainConfig(data="subset", hidden=[h * w for h in PAPER], width_rule=rule, cost_warmup=0.0,
                      seed=seed).validate()
    model = build_model(cfg)
    opt, _ = _make_optimizer(model, cfg, steps)
    td = load_data(cfg, dataset=data_mod.load_subset())
    values, it = cfg.per_layer_values(), 0
    while it < steps:
        for x, y, task in td.epoch_batches(it, 64):
            opt.zero_grad()
            (data_mod.task_loss_sum(model(x), y, task) / len(x) + model.spatial_loss(values.alpha, values.beta)).backward()
            opt.step()
            it += 1
            if it == steps:
                break
    batches = list(itertools.islice(td.epoch_batches(999, 256), 2))
    return rule_quantities(model, cfg, batches, opt, model_split(model, cfg.split_layers, 2))


# Three seeds: one seed of a 400-step run is chaotic (its pressure moved 2.34 -> 3.27 between two
# CPUs and orders of running); the median of three stays inside the tolerances below, which are
# taken from the spread over five seeds (docs/width-rule.md, "Measured").
RULE_SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def trained():
    """Per rule, each quantity's median over ``RULE_SEEDS`` at 4x over its median at 1x."""
    torch.set_num_threads(1)
    def medians(w, rule):
        runs = [_trained_quantities(w, rule, s) for s in RULE_SEEDS]
        return {k: statistics.median(r[k] for r in runs) for k in runs[0] if all(r.get(k) is not None for r in runs)}
    one = medians(1, "auto")
    return {rule: {k: v / one[k] for k, v in medians(4, rule).items() if one.get(k)} for rule in ("auto", "glorot")}


def test_the_rule_holds_its_quantities_in_trained_nets_from_1x_to_4x(trained):
    # after 400 steps (a trained regime: the costs at full strength have pruned and the sheets
    # have spread), each quantity of the 4x net against the 1x net's, within the stated tolerance
    r = trained["auto"]
    for l in (3, 4, 5):
        assert 0.8 < r[f"pull_push/{l}"] < 1.25, (l, r[f"pull_push/{l}"])     # pull / push on a position
        assert 0.75 < r[f"spacing_length/{l}"] < 1.33, (l, r[f"spacing_length/{l}"])  # spacing / density length
    # the readout's L1 price / task gradient: per seed 0.8-1.5 over five seeds, a factor of 1.26 in
    # log-sd, so the median of three lies within a factor of 1.6 of 1 but for 1 in 100
    assert 0.6 < r["pressure/5"] < 1.7, r["pressure/5"]
    for l in (3, 4):
        # how task-specific the weights have become in the same steps: the weights' clock
        assert r[f"own_share/{l}"] > 0.9, (l, r[f"own_share/{l}"])


def test_the_rule_presses_the_hidden_weights_harder_than_its_earlier_form(trained):
    # the hidden layers' pressure is not held in this regime: over five seeds the 4x net's reads
    # 2.1 (layer 3) and 1.6 (layer 4) times the 1x net's under the rule, 0.57 and 0.67 under the
    # earlier form, each seed's 1x value spread by a factor of 1.5 (docs/width-rule.md)
    rule, earlier = trained["auto"], trained["glorot"]
    for l in (3, 4):
        assert rule[f"pressure/{l}"] > 1.5 * earlier[f"pressure/{l}"], (l, rule, earlier)


def test_the_earlier_form_of_the_rule_lets_the_weights_clock_drift(trained):
    # every width from the initialiser's scale: a weight takes sqrt(w) times longer to reshape
    # (five seeds: 0.67-0.85 of the 1x net's own-task share at layer 3, the rule's 1.22-1.51)
    r = trained["glorot"]
    assert r["own_share/3"] < 0.9 and r["own_share/3"] < trained["auto"]["own_share/3"] - 0.3, r


def _trained_task_gradients(n: int, seed: int, steps: int = 400) -> dict:
    """RMS task gradient of one weight of layers 3, 4, 5 of a regular net n times the paper's
    width after ``steps`` Adam steps at the rule's learning rates (the mean over the last 20)."""
    from spatialnet.model import build_model
    from spatialnet.training.loop import _make_optimizer

    cfg = TrainConfig(data="subset", net="regular", hidden=[128 * n, 128 * n, 128 * n, 256 * n]).validate()
    torch.manual_seed(seed)
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
    # gradient falls as 1 / width and the readout's does not (at init it is about 1 / sqrt(w)).
    # Each seed's ratio is chaotic; over seeds 0-4 layer 3 read 0.22-0.35, layer 4 0.33-0.39 and
    # layer 5 0.73-0.94, so the test reads the medians of three seeds
    runs = {n: [_trained_task_gradients(n, s) for s in RULE_SEEDS] for n in (1, 4)}
    g = {l: statistics.median(f[l] for f in runs[4]) / statistics.median(o[l] for o in runs[1]) for l in (3, 4, 5)}
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
    # the records' JSON form keys layers by strings
    assert v.to_json()["alpha"] == {"3": 1.3, "4": 1.3, "5": 1.3}
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
    # the spatial layers start at the scale training gives them, fan_in(ref) / fan_in over the
    # reference's: the initialiser's times 1/sqrt(w); the first two layers and the regular net not
    assert v.init_scale == {1: 1.0, 2: 1.0, 3: 0.5, 4: 0.5, 5: 0.5}
    from spatialnet.model import build_model
    cfg = TrainConfig(hidden=[512, 512, 512, 1024]).validate()
    spatial, glorot = build_model(cfg), build_model(cfg.replace(width_rule="glorot"))
    for l in (1, 2, 3, 4, 5):
        ratio = float(spatial.layer(l).weight.detach().abs().mean() / glorot.layer(l).weight.detach().abs().mean())
        assert ratio == pytest.approx(v.init_scale[l], rel=1e-6), l
    assert cfg.replace(net="regular").per_layer_values().init_scale[3] == 1.0


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
    # the late-output-sheet probe slows the output layer's positions alone
    late = cfg.replace(output_pos_lr_scale=0.25).validate()
    opt, _ = _make_optimizer(model, late, 10)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    out = len(late.hidden) + 1
    assert lr_of[id(model.layer(out).positions)] == pytest.approx(0.0025)
    assert lr_of[id(model.layer(out - 1).positions)] == pytest.approx(0.01)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="output_pos_lr_scale"):
        cfg.replace(output_pos_lr_scale=-1.0).validate()


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
        assert sum(got) / len(got) == pytest.approx(2 * density_push("per_pair", n, length), rel=0.05)
    assert _pair_push(1.0) == pytest.approx(0.1045, abs=5e-4)
