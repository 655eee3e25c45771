"""spatial_kernels.nn.spatialize: the cost and its gradients against a hand-written float64 sum per
layer (torch.cdist, no spatial_kernels), sheet inference, state_dict, param groups and errors."""
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spatial_kernels.nn import spatialize

BACKENDS = ["reference", "numba"]


def _cdist(a, b):
    # exact pairwise distances, from the differences (not via a matmul), twice differentiable on
    # every torch (torch.cdist's backward has no derivative of its own on torch 2.11), with a zero
    # gradient at zero distance as the kernels have
    d2 = (a[:, None, :] - b[None, :, :]).square().sum(-1)
    pos = d2 > 0
    return torch.where(pos, torch.where(pos, d2, torch.ones_like(d2)).sqrt(), torch.zeros_like(d2))


def _hand_cost(layers, alpha, beta, tnorm, dnorm):
    """(1/|L|) [alpha sum_l T(l) + beta sum_s V(s)], from (W, p_in, p_out) per layer; V once per
    distinct written sheet (by object identity)."""
    total, written = 0.0, {}
    for W, p_in, p_out in layers:
        a = W.abs() if W.dim() == 2 else W.abs().sum(dim=tuple(range(2, W.dim())))
        n_out, n_in = a.shape
        total = total + alpha * (a * _cdist(p_out, p_in)).sum() / (n_out if tnorm == "per_out" else n_out * n_in)
        written[id(p_out)] = p_out
    for p in written.values():
        n = len(p)
        total = total + beta * torch.exp(-_cdist(p, p)).sum() / (n * n if dnorm == "per_pair" else n)
    return total / len(layers)


def _check_against_hand(model, costs, triples, alpha=9.0, beta=20.0, tnorm="per_connection", dnorm="per_pair"):
    # tnorm, dnorm: spatialize's defaults
    params = [p for p in model.parameters() if p.dim() > 1] + list(costs.positions.values())
    got = costs(alpha, beta)
    g_got = torch.autograd.grad(got, params)
    want = _hand_cost(triples, alpha, beta, tnorm, dnorm)
    g_want = torch.autograd.grad(want, params, allow_unused=True)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
    for p, a, b in zip(params, g_got, g_want):
        b = torch.zeros_like(p) if b is None else b
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
        assert b.abs().max() > 0  # every weight and position feels the cost


class Residual(nn.Module):
    """x -> fc0 -> h; h + 0.5 * fc2(gelu(fc1(h))) -> relu -> fc3: fc1 reads and fc2 writes h's sheet."""

    def __init__(self):
        super().__init__()
        self.fc0, self.fc1, self.fc2, self.fc3 = nn.Linear(5, 7), nn.Linear(7, 13), nn.Linear(13, 7), nn.Linear(7, 3)

    def forward(self, x):
        h = self.fc0(x)
        y = h + 0.5 * self.fc2(F.dropout(F.gelu(self.fc1(h)), 0.1, self.training))
        return self.fc3(torch.relu(y))


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self, a=16, b=16):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(a, b), nn.Linear(b, 4)

    def forward(self, x):
        h = self.fc1(x)
        if h.sum() > 0:
            h = h.relu()
        return self.fc2(h)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tnorm,dnorm", [("per_connection", "per_neuron"), ("per_out", "per_pair")])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_linear_chain_matches_hand_sum(backend, tnorm, dnorm, dim):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(9, 17), nn.Sigmoid(), nn.Linear(17, 129), nn.Dropout(0.2), nn.ReLU(),
                          nn.Linear(129, 1)).double()
    costs = spatialize(model, ["0", "2", "5"], dim=dim, transport_norm=tnorm, density_norm=dnorm, backend=backend)
    P = costs.positions_of
    assert P("2", "in") is P("0", "out") and P("5", "in") is P("2", "out")
    assert [s.size for s in costs.sheets.values()] == [9, 17, 129, 1]
    assert all(p.dtype == torch.float64 and p.shape[1] == dim for p in costs.positions.values())
    triples = [(model[i].weight, P(str(i), "in"), P(str(i), "out")) for i in (0, 2, 5)]
    _check_against_hand(model, costs, triples, tnorm=tnorm, dnorm=dnorm)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("conv", ["1d", "2d"])
def test_conv_chain_matches_hand_sum(backend, conv):
    torch.manual_seed(1)
    C, BN = (nn.Conv1d, nn.BatchNorm1d) if conv == "1d" else (nn.Conv2d, nn.BatchNorm2d)
    model = nn.Sequential(C(3, 8, 3), BN(8), nn.ReLU(), C(8, 6, 5, padding=2), nn.GELU(), C(6, 5, 1)).double()
    with torch.no_grad():
        model[3].weight[2, 4] = 0.0  # a channel pair with no weight at all
    costs = spatialize(model, ["0", "3", "5"], backend=backend)
    P = costs.positions_of
    assert P("3", "in") is P("0", "out") and P("5", "in") is P("3", "out")  # through BatchNorm and ReLU
    triples = [(model[i].weight, P(str(i), "in"), P(str(i), "out")) for i in (0, 3, 5)]
    _check_against_hand(model, costs, triples)
    x = torch.randn(2, 3, 12, dtype=torch.float64) if conv == "1d" else torch.randn(2, 3, 9, 9, dtype=torch.float64)
    assert model(x).shape[1] == 5  # the model still runs as before


@pytest.mark.parametrize("backend", BACKENDS)
def test_traced_residual_block(backend):
    torch.manual_seed(2)
    model = Residual().double()
    costs = spatialize(model, ["fc*"], backend=backend)
    P = costs.positions_of
    # the residual joins h = fc0's outputs, fc1's inputs, fc2's outputs and fc3's inputs
    h = P("fc0", "out")
    assert P("fc1", "in") is h and P("fc2", "out") is h and P("fc3", "in") is h
    assert P("fc2", "in") is P("fc1", "out")
    assert len(costs.sheets) == 4 and costs.sheet("fc0", "out").writers == ("fc0", "fc2")
    triples = [(getattr(model, f"fc{i}").weight, P(f"fc{i}", "in"), P(f"fc{i}", "out")) for i in range(4)]
    _check_against_hand(model, costs, triples)


@pytest.mark.parametrize("backend", ["numba", "triton"])
def test_float32_residual_and_conv_on_the_fused_backends(backend):
    """float32 weights and positions (triton's dtype; under TRITON_INTERPRET=1 on CPU), against the
    float64 hand-written sum of the same numbers."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv1d(3, 5, 3), nn.ReLU(), nn.Conv1d(5, 4, 1))
    res = Residual()
    for m, names in ((model, ["0", "2"]), (res, ["fc0", "fc1", "fc2", "fc3"])):
        costs = spatialize(m, names, backend=backend)
        got = costs(9.0, 20.0)
        params = [mod.weight for mod in (m.get_submodule(n) for n in names)] + list(costs.positions.values())
        grads = torch.autograd.grad(got, params)
        d = {id(p): p.detach().double().requires_grad_(True) for p in params}
        P = lambda n, port: d[id(costs.positions_of(n, port))]  # noqa: E731
        want = _hand_cost([(d[id(m.get_submodule(n).weight)], P(n, "in"), P(n, "out")) for n in names],
                          9.0, 20.0, "per_connection", "per_pair")  # spatialize's defaults
        g_want = torch.autograd.grad(want, [d[id(p)] for p in params])
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, rtol=2e-5, atol=0)
        for a, b in zip(grads, g_want):
            torch.testing.assert_close(a.double(), b, rtol=2e-5, atol=2e-6 * b.abs().max().item())


def test_torchvision_mlp_and_timm_mlp_sheets():
    from timm.layers import Mlp
    from torchvision.ops import MLP

    m = MLP(10, [32, 32, 4], dropout=0.1)
    c = spatialize(m, ["3", "6"])
    assert c.positions_of("6", "in") is c.positions_of("3", "out") and c.sheet("3", "in").size == 32
    t = Mlp(8, 24, 8)
    c = spatialize(t, ["fc1", "fc2"])
    assert c.positions_of("fc2", "in") is c.positions_of("fc1", "out")
    assert c.positions_of("fc1", "in") is not c.positions_of("fc2", "out")  # no residual inside Mlp


def test_timm_vit_residual_stream_is_one_sheet():
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=8, patch_size=4, embed_dim=12,
                            depth=3, num_heads=2, num_classes=4)
    c = spatialize(vit, ["blocks.*.mlp.fc1", "blocks.*.mlp.fc2", "head"])
    res = c.sheet("blocks.0.mlp.fc2", "out")
    assert res.writers == ("blocks.0.mlp.fc2", "blocks.1.mlp.fc2", "blocks.2.mlp.fc2")
    assert res.readers == ("blocks.0.mlp.fc1", "blocks.1.mlp.fc1", "blocks.2.mlp.fc1")
    # the head reads the class token, x[:, 0]: an index is not element-wise, so it is named
    assert c.sheet("head", "in") != res
    c = spatialize(vit, ["blocks.*.mlp.fc1", "blocks.*.mlp.fc2", "head"],
                   sheets={"head": ("residual", None), "blocks.0.mlp.fc2": (None, "residual")})
    res = c.sheet("head", "in")
    assert res.name == "residual" and res.writers == ("blocks.0.mlp.fc2", "blocks.1.mlp.fc2", "blocks.2.mlp.fc2")
    assert res.readers == ("blocks.0.mlp.fc1", "blocks.1.mlp.fc1", "blocks.2.mlp.fc1", "head")
    assert [c.sheet(f"blocks.{b}.mlp.fc1", "out").readers for b in range(3)] == [(f"blocks.{b}.mlp.fc2",) for b in range(3)]
    assert sorted(s.size for s in c.sheets.values()) == [4, 12, 48, 48, 48]
    loss = vit(torch.randn(2, 3, 8, 8)).square().mean() + c(1.0, 3.0)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in c.positions.values())


def test_torchvision_resnet_stages_are_residual_sheets():
    from torchvision.models import resnet18

    c = spatialize(resnet18(num_classes=10), ["layer*.*.conv*", "layer*.0.downsample.0", "fc"])
    stage2 = c.sheet("layer2.0.conv2", "out")
    # the stage's residual stream: written by its blocks' conv2 and by the downsample conv (the
    # shortcut that adds to it), read by its blocks' conv1 and by the next stage's first convs
    assert stage2.writers == ("layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2")
    assert stage2.readers == ("layer2.1.conv1", "layer3.0.conv1", "layer3.0.downsample.0")
    assert c.sheet("layer2.0.conv1", "out").readers == ("layer2.0.conv2",)
    assert c.sheet("fc", "in").writers == ()  # after pooling and flatten: a sheet of its own
    assert len(c.sheets) == 14


def test_shared_sheet_moves_both_costs():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    costs = spatialize(model, ["0", "2"], backend="numba")
    before = costs.transport_cost("2").item(), costs.transport_cost("0").item()
    with torch.no_grad():
        costs.positions_of("0", "out")[1] += 5.0  # move one of fc1's output neurons far away
    after = costs.transport_cost("2").item(), costs.transport_cost("0").item()
    assert after[0] > before[0] + 0.1 and after[1] > before[1] + 0.1
    g = torch.autograd.grad(costs.transport_cost("2"), costs.positions_of("0", "out"))[0]
    assert g[1].abs().sum() > 0


def test_untraceable_model_uses_names_or_fresh_sheets():
    model = Untraceable()
    apart = pytest.warns(UserWarning, match=r"cannot follow the data through 'Untraceable' \(TraceError")
    with apart, pytest.raises(ValueError, match=r"cannot infer the sheets of layer 'fc1'.*sheets="):
        spatialize(model, ["fc1", "fc2"])
    with apart:
        c = spatialize(model, ["fc1", "fc2"], sheets={"fc1": (None, "h"), "fc2": ("h", None)})
    assert c.positions_of("fc2", "in") is c.positions_of("fc1", "out") and "h" in c.sheets
    with apart:
        c = spatialize(Untraceable(16, 8), ["fc2"])  # one layer, 8 -> 4: nothing to confuse it with
    assert [s.size for s in c.sheets.values()] == [8, 4]
    c = spatialize(Untraceable(), ["fc1", "fc2"], infer=False)
    assert len(c.sheets) == 4
    c = spatialize(Residual(), ["fc*"], infer=False)
    assert len(c.sheets) == 8


def test_sequential_chain_when_its_trace_fails():
    """A Sequential holding an untraceable child with a selected layer: fx fails on the whole, the
    chain rule still joins its own layers, and the child's layer (no port of a size it could share)
    gets sheets of its own."""
    seq = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 5), Untraceable(5, 7))
    with pytest.raises(Exception):
        torch.fx.symbolic_trace(seq)
    with pytest.warns(UserWarning, match=r"through 'Sequential' \(TraceError.*joined only within \['Sequential "
                                         r"\(its children as a chain\)'\].*covers: \['3.fc2'\]"):
        c = spatialize(seq, ["0", "2", "3.fc2"])
    assert c.positions_of("2", "in") is c.positions_of("0", "out")
    assert [s.size for s in c.sheets.values()] == [3, 6, 5, 7, 4]


def test_chain_for_the_split():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv1d(2, 5, 3), nn.ReLU(), nn.Conv1d(5, 4, 1), nn.ReLU(), nn.Linear(4, 3))
    c = spatialize(model, ["0", "2", "4"], infer=False, sheets={"0": (None, "a"), "2": ("a", "b"), "4": ("b", None)})
    strengths, positions = c.chain(["0", "2", "4"])
    assert [tuple(s.shape) for s in strengths] == [(5, 2), (4, 5), (3, 4)]
    torch.testing.assert_close(strengths[0], model[0].weight.detach().abs().sum(-1), rtol=0, atol=0)
    assert positions[1] is c.positions["a"] and positions[2] is c.positions["b"] and len(positions) == 4
    with pytest.raises(ValueError, match=r"'4' reads sheet 'b', not '0''s output sheet 'a'"):
        c.chain(["0", "4"])


def test_state_dict_round_trip_and_attach():
    torch.manual_seed(4)
    model = Residual()
    costs = spatialize(model, ["fc*"])
    buf = io.BytesIO()
    torch.save(costs.state_dict(), buf)
    other = spatialize(model, ["fc*"], generator=torch.Generator().manual_seed(99))
    assert not torch.equal(other.positions_of("fc1", "out"), costs.positions_of("fc1", "out"))
    buf.seek(0)
    other.load_state_dict(torch.load(buf, weights_only=True))
    for k, v in costs.state_dict().items():
        assert torch.equal(other.state_dict()[k], v)
    assert other(1.0, 3.0).item() == costs(1.0, 3.0).item()
    attached = spatialize(model, ["fc*"], attach="spatial")
    keys = [k for k in model.state_dict() if k.startswith("spatial.positions.")]
    assert len(keys) == 4 and model.spatial is attached
    assert not any("positions" in k for k in costs.state_dict() if not k.startswith("positions."))


def test_param_groups():
    model = Residual()
    costs = spatialize(model, ["fc1", "fc2"], attach="spatial")
    groups = costs.param_groups(model, lr=1e-3, position_lr=5e-3, weight_decay=0.05)
    pos = {id(p) for p in costs.positions.values()}
    assert {id(p) for p in groups[1]["params"]} == pos and groups[1]["weight_decay"] == 0.0 and groups[1]["lr"] == 5e-3
    assert not pos & {id(p) for p in groups[0]["params"]} and groups[0]["weight_decay"] == 0.05
    assert len(groups[0]["params"]) == 8  # 4 weights + 4 biases, positions excluded
    opt = torch.optim.AdamW(groups)
    before = [p.detach().clone() for p in costs.positions.values()]
    for p in costs.positions.values():
        p.grad = torch.zeros_like(p)
    opt.step()  # zero gradient and no decay: the positions stay put
    assert all(torch.equal(a, b) for a, b in zip(before, costs.positions.values()))


def test_double_backward():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    costs = spatialize(model, ["0", "2"], backend="numba")
    p = costs.positions_of("0", "in")  # read by layer 0 only: transport, no density term
    (g,) = torch.autograd.grad(costs(1.0, 3.0), p)  # first order: fine
    with pytest.raises(RuntimeError, match="backend='reference'"):
        torch.autograd.grad(costs(1.0, 3.0), p, create_graph=True)
    # the reference differentiates twice: a Hessian-vector product against the hand-written sum
    # (of a sheet without a density term: the second derivative of ||p_i - p_i|| at 0 is NaN there)
    ref = spatialize(model, ["0", "2"], backend="reference")
    ref.load_state_dict(costs.state_dict())
    v = torch.randn_like(p)
    (g1,) = torch.autograd.grad(ref(1.0, 3.0), ref.positions_of("0", "in"), create_graph=True)
    hv = torch.autograd.grad((g1 * v).sum(), ref.positions_of("0", "in"))[0]
    q = p.detach().clone().requires_grad_(True)
    P = ref.positions_of
    hand = _hand_cost([(model[0].weight, q, P("0", "out")), (model[2].weight, P("2", "in"), P("2", "out"))],
                      1.0, 3.0, "per_connection", "per_pair")
    (h1,) = torch.autograd.grad(hand, q, create_graph=True)
    h2 = torch.autograd.grad((h1 * v).sum(), q)[0]
    torch.testing.assert_close(g, h1.detach(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g1, h1, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(hv, h2, rtol=1e-9, atol=1e-12)
    assert h2.abs().max() > 0


def test_errors_name_the_module():
    model = Residual()
    with pytest.raises(ValueError, match=r"'blocks\.\*' matches no module"):
        spatialize(model, ["blocks.*"])
    with pytest.raises(TypeError, match=r"pattern 'act'.*GELU.*nn.Linear"):
        spatialize(nn.ModuleDict({"act": nn.GELU(), "fc": nn.Linear(2, 2)}), ["act"])
    with pytest.raises(TypeError, match=r"Bilinear.*supported layer: nn.Linear, nn.Conv1d/2d/3d \(any groups\)"):
        spatialize(nn.Sequential(nn.Bilinear(2, 2, 2)), ["0"])
    bad = nn.Conv2d(6, 6, 3, groups=2)
    bad.groups = 4  # channels that do not divide by the groups
    with pytest.raises(ValueError, match=r"'0' is a Conv2d with groups=4, which does not divide its 6 input"):
        spatialize(nn.Sequential(bad), ["0"])
    assert spatialize(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), ["0"]).geometry["0"].groups == 2
    with pytest.raises(ValueError, match=r"'fc1' output \(13 neurons\).*'fc3' input \(7 neurons\)"):
        spatialize(model, ["fc1", "fc3"], sheets={"fc1": (None, "s"), "fc3": ("s", None)})
    with pytest.raises(ValueError, match=r"'fc9', which is not a selected layer"):
        spatialize(model, ["fc1"], sheets={"fc9": (None, "s")})
    with pytest.raises(ValueError, match="dim"):
        spatialize(model, ["fc1"], dim=4)
    with pytest.raises(ValueError, match="transport_norm"):
        spatialize(model, ["fc1"], transport_norm="sum")
    with pytest.raises(TypeError, match="layers must be a list"):
        spatialize(model, "fc1")
    c = spatialize(model, ["fc1", "fc2"])
    model.fc1.weight = nn.Parameter(torch.randn(14, 7))
    with pytest.raises(ValueError, match=r"layer 'fc1' has weight \(14, 7\), but its sheets hold 13 output"):
        c(1.0, 3.0)
    with pytest.raises(ValueError, match=r"attach='spatial': a Sequential runs or lists every child"):
        spatialize(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 2)), ["0", "1"], attach="spatial")

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(self.fc(x))

    with pytest.raises(ValueError, match=r"'fc' is called more than once"):
        spatialize(Twice(), ["fc"])
    with pytest.warns(UserWarning), pytest.raises(
            ValueError, match=r"cannot infer the sheets of layer 'fc1'.*input \(16 neurons\).*'fc2' input"):
        spatialize(Untraceable(), ["fc2", "fc1"])


def test_a_lazy_layer_not_yet_initialised_is_a_clear_error():
    model = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.Linear(8, 4))
    with pytest.raises(ValueError, match=r"layer .0. is a lazy LazyLinear whose input size is not known yet: run one forward pass"):
        spatialize(model, ["0", "2"])
    model(torch.randn(2, 5))  # now it is an nn.Linear(5, 8)
    costs = spatialize(model, ["0", "2"])
    assert [s.size for s in costs.sheets.values()] == [5, 8, 4]


def test_a_module_registered_under_two_names_is_one_layer():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(6, 6)
            self.b = self.a  # the same module, a second name
            self.out = nn.Linear(6, 3)

        def forward(self, x):
            return self.out(torch.relu(self.b(torch.relu(self.a(x)))))

    m = Tied()
    for names in (["a", "out"], ["b", "out"], ["a", "b", "out"]):
        costs = spatialize(m, names, infer=False)
        assert costs.layers == ["a", "out"], names
    torch.testing.assert_close(spatialize(m, ["b", "out"], infer=False,
                                          generator=torch.Generator().manual_seed(0))(1.0, 3.0),
                               spatialize(m, ["a", "out"], infer=False,
                                          generator=torch.Generator().manual_seed(0))(1.0, 3.0))
