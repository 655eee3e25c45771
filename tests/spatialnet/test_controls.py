"""The controls: L1-only transport (every distance -> the layer's mean distance) and
frozen positions, checked against formulas written here with torch.cdist."""
import pytest
import torch

from spatialnet.config import TrainConfig
from spatialnet.model import build_model
from spatialnet.model import SpatialMLP
from spatialnet.training.loop import _make_optimizer


@pytest.mark.parametrize("norm", ["per_out", "per_connection"])
def test_constant_transport_is_mean_distance_times_l1(norm):
    torch.manual_seed(0)
    m = SpatialMLP([9, 7, 13, 5], (2, 3), transport_norm=norm, transport="constant").double()
    for l in (2, 3):
        W = m.layer(l).weight
        d = torch.cdist(m.layer(l).positions, m.layer(l - 1).positions)  # [N_l, N_{l-1}]
        n_out, n_in = W.shape
        c = 1 / n_out if norm == "per_out" else 1 / (n_out * n_in)
        expected = (2.5 * c * d.mean() * W.abs().sum()).detach()
        torch.testing.assert_close(m.transport_cost(l, 2.5).detach().double(), expected, rtol=1e-6, atol=0)
        # the distance-weighted cost of the same weights differs from it by more than rounding
        weighted = (2.5 * c * (W.abs() * d).sum()).detach()
        assert abs(float(weighted) - float(expected)) > 1e-3 * float(expected)


def test_constant_transport_gives_positions_no_pull():
    torch.manual_seed(1)
    m = SpatialMLP([6, 8, 8, 4], (2, 3), transport="constant")
    t = sum(m.transport_cost(l, 1.0) for l in (2, 3))
    t.backward()
    for l in (1, 2, 3):
        g = m.layer(l).positions.grad if hasattr(m.layer(l), "positions") else None
        assert g is None or torch.count_nonzero(g) == 0
    W = m.layer(3).weight
    # the default transport_norm is the mean over connections: dT/dW = mean_dist * sign(W) / (N_l N_{l-1})
    d = torch.cdist(m.layer(3).positions, m.layer(2).positions).mean().detach()
    torch.testing.assert_close(W.grad, d * torch.sign(W.detach()) / W.numel(), rtol=1e-5, atol=1e-9)


def test_frozen_positions_stay_and_weights_learn():
    cfg = TrainConfig(hidden=[16, 16, 16, 24], freeze_positions=True, head_offset=1.6, data="subset").validate()
    model = build_model(cfg)
    assert all(not p.requires_grad for n, p in model.named_parameters() if n.endswith("positions"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt, _ = _make_optimizer(model, cfg, 10)
    assert len(opt.param_groups) == 1  # no group for the positions
    x = torch.rand(8, cfg.sizes[0])
    for _ in range(3):
        loss = model(x).square().mean() + model.spatial_loss(cfg.alpha, cfg.beta)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n, p in model.named_parameters():
        if n.endswith("positions"):
            assert torch.equal(p, before[n]), n
        elif n.endswith("weight"):
            assert not torch.equal(p, before[n]), n
    # the head offset is part of the frozen initial positions
    heads = model.layer(5).positions.detach()
    assert (heads[:10].mean(0) - heads[10:].mean(0)).norm() > 2.0


def test_frozen_and_constant_survive_a_checkpoint(tmp_path):
    from spatialnet.training.checkpoint import model_from_checkpoint
    from spatialnet.training import train
    cfg = TrainConfig(hidden=[8, 8, 8, 8], epochs=1, data="subset", max_train=64,
                      freeze_positions=True, transport="constant").validate()
    train(cfg, tmp_path, progress=False, log=lambda *a: None)
    model, cfg2, _ = model_from_checkpoint(tmp_path / "checkpoint.pt")
    assert cfg2.freeze_positions and cfg2.transport == "constant"
    assert model.freeze_positions and model.transport == "constant"
    assert not model.layer(4).positions.requires_grad


def test_bad_control_options():
    with pytest.raises(ValueError, match="transport"):
        SpatialMLP([4, 4, 4], (2,), transport="none")
    with pytest.raises(ValueError, match="transport"):
        TrainConfig(transport="l1").validate()
    with pytest.raises(TypeError, match="freeze_positions"):
        TrainConfig(freeze_positions=1).validate()
