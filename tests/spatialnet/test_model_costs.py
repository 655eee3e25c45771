"""SpatialMLP on spatial_kernels.nn: its costs are the nn layer's, over the layers' own positions,
and training gives the same numbers to the bit as the per-layer sum it took before."""
import pytest
import torch

from spatial_kernels import fused_density_cost, fused_transport_cost
from spatialnet.model import SpatialMLP


def _old_spatial_loss(m, alpha, beta):
    """SpatialMLP.spatial_loss as it was before the nn layer (commit 2d4b550), term by term."""
    k = len(m.spatial_layers)
    total = 0
    for l in m.spatial_layers:
        W, p_in, p_out = m.layer(l).weight, m.layer(l - 1).positions, m.layer(l).positions
        n_out, n_in = W.shape
        norm = n_out if m.transport_norm == "per_out" else n_out * n_in  # the model keeps the new names
        n = p_out.shape[0]
        total = total + (fused_transport_cost(W, p_in, p_out, scale=alpha / k / norm, backend=m.backend)
                         + fused_density_cost(p_out, scale=beta / k / (n * n if m.density_norm == "per_pair" else n),
                                              backend=m.backend))
    return total


def test_positions_are_the_layers_own():
    m = SpatialMLP([30, 16, 16, 12, 20], (3, 4))
    c = m._costs
    assert c.positions_of("layers.2", "in") is m.layer(2).positions
    assert c.positions_of("layers.2", "out") is m.layer(3).positions is c.positions_of("layers.3", "in")
    assert sorted(k for k in m.state_dict() if "positions" in k) == [f"layers.{i}.positions" for i in (1, 2, 3)]


@pytest.mark.parametrize("backend", ["numba", "reference"])
@pytest.mark.parametrize("norms", [("mean", "neuron"), ("paper", "paper")])
def test_training_is_bit_identical_to_the_old_sum(backend, norms):
    """Ten Adam steps driven by the new spatial_loss and by the old sum, from one seed."""
    nets = []
    for _ in range(2):
        torch.manual_seed(7)
        nets.append(SpatialMLP([30, 16, 16, 12, 12, 20], (3, 4, 5), transport_norm=norms[0], density_norm=norms[1],
                               init="glorot", init_gain=2.0, head_offset=1.6, backend=backend))
    new, old = nets
    opts = [torch.optim.Adam(n.parameters(), lr=0.01) for n in nets]
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        x = torch.rand(16, 30, generator=g)
        losses = []
        for net, opt, fn in ((new, opts[0], lambda n: n.spatial_loss(9.0, 20.0)),
                             (old, opts[1], lambda n: _old_spatial_loss(n, 9.0, 20.0))):
            opt.zero_grad()
            loss = net(x).square().mean() + fn(net)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        assert torch.equal(losses[0], losses[1])
    for (name, a), b in zip(new.named_parameters(), old.parameters()):
        assert torch.equal(a, b), name
