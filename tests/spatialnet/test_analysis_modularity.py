"""Modularity measures and dead neurons, on hand-built nets whose answers are worked out by hand."""
import pytest
import torch

from spatialnet.model import SpatialMLP
from spatialnet.analysis.modularity import layer_segregation, measures
from spatialnet.analysis.task_split import greedy_split, model_split, task_masks


def _net(weights, positions=None):
    """A SpatialMLP 2 -> 4 -> 4 -> 4 whose layers 2 and 3 carry ``weights`` (W2, W3)."""
    m = SpatialMLP([2, 4, 4, 4], (2, 3))
    with torch.no_grad():
        for l, W in zip((2, 3), weights):
            m.layer(l).weight.copy_(W)
        for l, p in (positions or {}).items():
            m.layer(l).positions.copy_(p)
    return m


# outputs 0,1 -> task 0, 2,3 -> task 1
W3 = torch.tensor([[1.0, 2.0, 0.0, 0.0],
                   [1.0, 0.0, 0.0, 0.0],
                   [0.0, 0.5, 3.0, 0.0],
                   [0.0, 0.0, 1.0, 0.0]])   # neuron 3 of layer 2 feeds nothing: dead
W2 = torch.tensor([[2.0, 0.0, 1.0, 0.0],
                   [0.0, 1.0, 0.0, 0.0],
                   [0.0, 0.0, 3.0, 0.0],
                   [0.5, 0.0, 0.0, 4.0]])   # row 3: the dead layer-2 neuron's inputs


def test_split_marks_dead_neurons_and_masks_disable_them():
    m = _net([W2, W3])
    a = model_split(m, [2, 3], 2)
    # layer 2: n0 -> task 0 (2 vs 0), n1 -> 0 (2 vs 0.5), n2 -> 1 (0 vs 4), n3 dead (0)
    assert a[2].tolist() == [0, 0, 1, -1]
    assert a[3].tolist() == [0, 0, 1, 1]
    for t in (0, 1):
        assert task_masks(a, t)[2].tolist() == [float(t == 0), float(t == 0), float(t == 1), 0.0]
    # the paper's rule (no dead tolerance) hands the dead neuron to task 0
    assert greedy_split([W2, W3], torch.tensor([0, 0, 1, 1]), 2, dead_tol=0.0)[0].tolist() == [0, 0, 1, 0]


def test_dead_neurons_pass_no_pull_backward():
    # layer-1 neuron 3 feeds only the dead layer-2 neuron 3 (weight 4): it is dead too, not task 0
    W1 = torch.zeros(4, 4)
    W1[0, 0], W1[2, 1], W1[1, 2], W1[3, 3] = 1.0, 1.0, 1.0, 4.0
    g1, g2, _ = greedy_split([torch.zeros(4, 1), W1, W3], torch.tensor([0, 0, 1, 1]), 2, dead_tol=0.1)
    assert g2.tolist() == [0, 0, 1, -1]
    assert g1.tolist() == [0, 1, 0, -1]


def test_dead_tolerance_is_relative_to_the_layer():
    # outgoing sums 10, 10, 10, 10, 10, 10, 10, 10, 10, 0.9: the last is below 0.1 x the 90th percentile
    W = torch.ones(2, 10) * 5.0
    W[:, 9] = 0.45
    assert greedy_split([torch.zeros(10, 1), W], torch.tensor([0, 1]), 2, dead_tol=0.1)[0].tolist()[-1] == -1
    W[:, 9] = 0.55  # 1.1 > 1.0: alive
    assert greedy_split([torch.zeros(10, 1), W], torch.tensor([0, 1]), 2, dead_tol=0.1)[0].tolist()[-1] == 0


def _share(m, a):
    return measures(m, a, 2)["cross_task_share"]


def test_cross_task_share_by_hand():
    m = _net([W2, W3])
    a = model_split(m, [2, 3], 2)
    # live connections of W3 (rows: outputs, cols: layer-2 neurons 0..2): cross ones are
    # (out 2 <- n1) 0.5; total 1 + 2 + 1 + 0.5 + 3 + 1 = 8.5
    assert _share(m, a) == pytest.approx(0.5 / 8.5)
    a3 = model_split(m, [1, 2, 3], 2)
    # layer 1 (W2's inputs): n0 -> 0 (2 vs 0; the 0.5 to the dead neuron does not count), n1 -> 0
    # (1 vs 0), n2 -> 1 (1 vs 3), n3 dead (its only pull, 4.0, is from the dead neuron). W2 live:
    # rows 0,1,2 x cols 0,1,2: 2, 1, 1, 3 with (row 0 task 0 <- col 2 task 1) = 1 cross; W3 as before
    assert a3[1].tolist() == [0, 0, 1, -1]
    assert _share(m, a3) == pytest.approx((1.0 + 0.5) / (7.0 + 8.5))
    # chance: W3's pair has outputs 2/2 and live layer-2 neurons 2/1 -> 1 - (1/2 * 2/3 + 1/2 * 1/3) = 1/2
    out = measures(m, a, 2)
    assert out["share_chance"] == pytest.approx(0.5)
    assert out["share_norm"] == pytest.approx((0.5 / 8.5) / 0.5)
    assert out["per_layer"]["2"]["sizes"] == [2, 1] and out["per_layer"]["2"]["dead"] == 1
    assert out["dead"] == 1 and out["dead_fraction"] == pytest.approx(1 / 4)


def test_segregation_by_hand():
    p = torch.tensor([[0.0], [1.0], [5.0], [6.0], [7.5]])
    g = torch.tensor([0, 0, 1, 1, 0])
    # nearest neighbours: 0->1 same, 1->0 same, 5->6 same, 6->5 same, 7.5->6 other: 4/5;
    # chance = (3 * 2/4 + 2 * 1/4) / 5 = 0.4; (0.8 - 0.4) / 0.6 = 2/3
    assert layer_segregation(p, g, k=1) == pytest.approx(2 / 3)
    assert layer_segregation(p[:4], torch.tensor([0, 0, 1, 1]), k=1) == pytest.approx(1.0)
    # alternating: nobody's nearest neighbour shares its task: (0 - 1/3) / (2/3)
    assert layer_segregation(torch.tensor([[0.0], [1.0], [2.5], [4.0]]), torch.tensor([0, 1, 0, 1]), k=1) == \
        pytest.approx(-0.5)
    # a dead neuron (-1) sitting inside the other task's group changes nothing
    p_dead = torch.cat([p, torch.tensor([[5.5]])])
    assert layer_segregation(p_dead, torch.cat([g, torch.tensor([-1])]), k=1) == pytest.approx(2 / 3)
    # one task only, or a single neuron: undefined
    assert layer_segregation(p, torch.zeros(5, dtype=torch.long)) is None
    assert layer_segregation(p[:1], g[:1]) is None


def test_segregation_is_zero_on_average_under_shuffled_labels():
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(60, 2, generator=gen)
    g = torch.tensor([0] * 25 + [1] * 35)
    vals = [layer_segregation(p, g[torch.randperm(60, generator=gen)]) for _ in range(300)]
    assert abs(sum(vals) / len(vals)) < 0.03
    assert max(vals) < 0.5  # no random labelling looks clustered


def test_measures_of_a_clustered_net():
    # 12 neurons a layer, two clusters of 6 far apart in every layer, block-diagonal weights:
    # share 0 and segregation 1 (k = 5 neighbours, all of them the neuron's own task)
    torch.manual_seed(0)
    blocks = torch.block_diag(torch.rand(6, 6) + 0.1, torch.rand(6, 6) + 0.1)
    far = torch.cat([torch.randn(6, 2), torch.randn(6, 2) + 20.0])
    m = SpatialMLP([2, 12, 12, 12], (2, 3))
    with torch.no_grad():
        for l in (2, 3):
            m.layer(l).weight.copy_(blocks)
        for l in (1, 2, 3):
            m.layer(l).positions.copy_(far)
    a = model_split(m, [2, 3], 2)
    out = measures(m, a)
    assert out["cross_task_share"] == 0.0 and out["share_norm"] == 0.0 and out["dead"] == 0
    assert out["silhouette"] > 0.9 and out["ari"] == pytest.approx(1.0)
    for l in (2, 3):  # each neuron's 5 nearest neighbours serve its own task
        assert layer_segregation(m.layer(l).positions.detach(), a[l]) == pytest.approx(1.0)
    # mixing one weight across tasks: the share is that weight over the total
    with torch.no_grad():
        m.layer(3).weight[0, 11] = 2.0
    share = 2.0 / float(m.layer(3).weight.detach().abs().sum())
    assert _share(m, model_split(m, [2, 3], 2)) == pytest.approx(share)
    # a regular net (no positions) has no segregation
    regular = SpatialMLP([2, 12, 12, 12], ())
    with torch.no_grad():
        regular.layer(3).weight.copy_(blocks)
    reg = measures(regular, model_split(regular, [2, 3], 2))
    assert reg["silhouette"] is None and reg["ari"] is None and reg["cross_task_share"] is not None
    assert layer_segregation(m.layer(3).positions.detach(), a[3], k=1) == pytest.approx(1.0)
