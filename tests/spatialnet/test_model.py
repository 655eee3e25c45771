"""SpatialLinear / SpatialMLP: shapes, layer convention, and spatial_loss against the formula."""
import pytest
import torch

from spatial_kernels import density_cost_reference, transport_cost_reference
from spatialnet.model import SpatialLinear, SpatialMLP


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_spatial_linear_positions(dim):
    torch.manual_seed(0)
    lin = SpatialLinear(7, 4000, dim=dim)
    assert lin.positions.shape == (4000, dim)
    assert lin.positions.requires_grad
    assert isinstance(lin, torch.nn.Linear)
    # N(0, 1): 4000*dim draws, the sample mean/std are within 5 sigma of 0/1
    p = lin.positions.detach()
    assert abs(p.mean().item()) < 5 / (4000 * dim) ** 0.5
    assert abs(p.std().item() - 1) < 5 * (0.5 / (4000 * dim)) ** 0.5


def test_spatial_linear_rejects_bad_dim():
    with pytest.raises(ValueError, match="dim"):
        SpatialLinear(3, 3, dim=4)


@pytest.mark.parametrize("n_in", [1568, 784])
def test_paper_net_shapes_and_layers(n_in):
    m = SpatialMLP([n_in, 128, 128, 128, 256, 20], (3, 4, 5))
    assert m.forward(torch.rand(5, n_in)).shape == (5, 20)
    # positions on the spatial layers and on layer 2, which feeds the first one; none on layer 1
    assert [hasattr(m.layer(l), "positions") for l in range(1, 6)] == [False, True, True, True, True]
    assert m.layer(5).positions.shape == (20, 2)
    assert m.layer(4).positions.shape == (256, 2)


def test_regular_net_has_no_positions_and_zero_cost():
    m = SpatialMLP([10, 6, 4], ())
    assert not any("positions" in n for n, _ in m.named_parameters())
    assert m.spatial_loss(1.0, 3.0).item() == 0.0


@pytest.mark.parametrize("layers,err", [((1, 2), ValueError), ((6,), ValueError), ((0,), ValueError),
                                        ((3, 3), ValueError), (("3",), TypeError), (3, TypeError)])
def test_bad_spatial_layers(layers, err):
    with pytest.raises(err, match="spatial_layers"):
        SpatialMLP([784, 128, 128, 128, 256, 20], layers)


def test_bad_sizes_and_options():
    with pytest.raises(TypeError, match="sizes"):
        SpatialMLP([784, 12.5, 20], (2,))
    with pytest.raises(ValueError, match="sizes"):
        SpatialMLP([784, 0, 20], (2,))
    with pytest.raises(ValueError, match="activation"):
        SpatialMLP([4, 3, 2], (2,), activation="gelu")
    with pytest.raises(ValueError, match="transport_norm"):
        SpatialMLP([4, 3, 2], (2,), transport_norm="sum")
    with pytest.raises(ValueError, match="x must have shape"):
        SpatialMLP([4, 3, 2], (2,))(torch.rand(2, 5))


def _by_hand(m, alpha, beta, norm, dnorm="per_pair"):
    """The paper's formula with explicit torch.cdist math, independent of spatial_kernels."""
    total = 0.0
    for l in m.spatial_layers:
        W = m.layer(l).weight
        p_in, p_out = m.layer(l - 1).positions, m.layer(l).positions
        n_out, n_in = W.shape
        T = (W.abs() * torch.cdist(p_out, p_in)).sum() / (n_out if norm == "per_out" else n_out * n_in)
        V = torch.exp(-torch.cdist(p_out, p_out)).sum() / (n_out ** 2 if dnorm == "per_pair" else n_out)
        total = total + alpha * T + beta * V
    return total / len(m.spatial_layers)


@pytest.mark.parametrize("norm,dnorm", [("per_out", "per_pair"), ("per_connection", "per_pair"), ("per_out", "per_neuron")])
@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_spatial_loss_matches_formula(norm, dnorm, dim, backend):
    torch.manual_seed(1)
    m = SpatialMLP([9, 7, 5, 6, 4], (3, 4), dim=dim, transport_norm=norm, density_norm=dnorm,
                   backend=backend).double()
    alpha, beta = 1.7, 3.0
    got = m.spatial_loss(alpha, beta)
    got.backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad()
    want = _by_hand(m, alpha, beta, norm, dnorm)
    want.backward()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    assert set(grads) == {n for n, p in m.named_parameters() if p.grad is not None}
    for n, p in m.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[n], p.grad, rtol=1e-10, atol=1e-12, msg=n)
    # layer 2 positions get a gradient only through T(3); layer 1 has none and biases none
    assert "layers.1.positions" in grads and "layers.0.weight" not in grads


def test_spatial_loss_with_reference_functions():
    """Same thing, using spatial_kernels' reference functions as the truth, on the paper's widths."""
    torch.manual_seed(2)
    m = SpatialMLP([30, 128, 128, 128, 256, 20], (3, 4, 5), transport_norm="per_out").double()
    want = 0.0
    for l in (3, 4, 5):
        W, pi, po = m.layer(l).weight, m.layer(l - 1).positions, m.layer(l).positions
        want = want + transport_cost_reference(W, pi, po) / W.shape[0] + 3 * density_cost_reference(po) / len(po) ** 2
    torch.testing.assert_close(m.spatial_loss(1.0, 3.0), want / 3, rtol=1e-12, atol=0)


def test_masks_zero_outputs_bias_included():
    torch.manual_seed(3)
    m = SpatialMLP([5, 4, 3, 2], (2, 3))
    x = torch.rand(6, 5)
    mask = torch.tensor([1.0, 0.0, 1.0])
    seen = {}
    m.layer(3).register_forward_hook(lambda mod, inp, out: seen.update({"in3": inp[0]}))
    m(x, {2: mask})
    assert torch.all(seen["in3"][:, 1] == 0)  # sigmoid(bias) would be > 0: the bias is silenced
    h1 = torch.sigmoid(m.layer(1)(x))
    h2 = torch.sigmoid(m.layer(2)(h1)) * mask
    torch.testing.assert_close(m(x, {2: mask}), m.layer(3)(h2), rtol=0, atol=0)


@pytest.mark.parametrize("dim", [1, 2])
def test_head_offset_moves_heads_apart(dim):
    torch.manual_seed(4)
    plain = SpatialMLP([6, 5, 5, 20], (2, 3), dim=dim).layer(3).positions.detach()
    torch.manual_seed(4)
    moved = SpatialMLP([6, 5, 5, 20], (2, 3), dim=dim, head_offset=3.0).layer(3).positions.detach()
    shift = moved - plain
    want = torch.zeros(20, dim)
    want[:10, 0], want[10:, 0] = (3.0, -3.0) if dim == 2 else (-3.0, 3.0)
    torch.testing.assert_close(shift, want, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="head_offset"):
        SpatialMLP([6, 5, 5, 20], (2,), head_offset=1.0)
