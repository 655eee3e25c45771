"""SpatialMLP on spatial_kernels.nn: its costs are the nn layer's, over the layers' own positions,
and training on them follows training on the float64 reference formula step by step."""
import pytest
import torch

from spatial_kernels import density_cost_reference, transport_cost_reference
from spatialnet.model import SpatialMLP


def _reference_loss(m, alpha, beta):
    """(1/|L|) sum_l [alpha T(l) + beta V(l)] from spatial_kernels' naive PyTorch reference, with
    the normalisations written out here."""
    k = len(m.spatial_layers)
    total = 0
    for l in m.spatial_layers:
        W, p_in, p_out = m.layer(l).weight, m.layer(l - 1).positions, m.layer(l).positions
        n_out, n_in = W.shape
        n = p_out.shape[0]
        c_t = 1 / n_out if m.transport_norm == "per_out" else 1 / (n_out * n_in)
        c_v = 1 / (n * n) if m.density_norm == "per_pair" else 1 / n
        total = total + alpha * c_t * transport_cost_reference(W, p_in, p_out) + beta * c_v * density_cost_reference(p_out)
    return total / k


def test_positions_are_the_layers_own():
    m = SpatialMLP([30, 16, 16, 12, 20], (3, 4))
    c = m._costs
    assert c.positions_of("layers.2", "in") is m.layer(2).positions
    assert c.positions_of("layers.2", "out") is m.layer(3).positions is c.positions_of("layers.3", "in")
    assert sorted(k for k in m.state_dict() if "positions" in k) == [f"layers.{i}.positions" for i in (1, 2, 3)]


@pytest.mark.parametrize("backend", ["numba", "reference"])
@pytest.mark.parametrize("norms", [("per_connection", "per_neuron"), ("per_out", "per_pair")])
def test_training_follows_the_float64_reference(backend, norms):
    """Ten Adam steps in float64, driven by spatial_loss and by the reference formula, from one seed:
    the same losses and parameters to float64 rounding."""
    nets = []
    for _ in range(2):
        torch.manual_seed(7)
        nets.append(SpatialMLP([30, 16, 16, 12, 12, 20], (3, 4, 5), transport_norm=norms[0], density_norm=norms[1],
                               init_gain=2.0, head_offset=1.6, backend=backend).double())
    new, ref = nets
    start = [p.detach().clone() for p in new.parameters()]
    opts = [torch.optim.Adam(n.parameters(), lr=0.01) for n in nets]
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        x = torch.rand(16, 30, generator=g, dtype=torch.float64)
        losses = []
        for net, opt, fn in ((new, opts[0], lambda n: n.spatial_loss(9.0, 20.0)),
                             (ref, opts[1], lambda n: _reference_loss(n, 9.0, 20.0))):
            opt.zero_grad()
            loss = net(x).double().square().mean() + fn(net)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[0], losses[1], rtol=1e-10, atol=0)
    for (name, a), b, a0 in zip(new.named_parameters(), ref.parameters(), start):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10, msg=name)
        assert float((a - a0).detach().abs().max()) > 1e-3, name  # every parameter trained
