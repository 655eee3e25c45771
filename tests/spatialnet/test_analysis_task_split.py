"""The greedy backward split on hand-built networks, and the masks it makes."""
import pytest
import torch

from spatialnet.model import SpatialMLP
from spatialnet.analysis.task_split import balanced_split, greedy_split, model_split, task_masks


def test_greedy_split_two_tasks_by_hand():
    # 4 outputs: heads {0,1} -> task 0, {2,3} -> task 1
    W_out = torch.tensor([[0.9, 0.0, 0.1, -0.2, 0.0],
                          [-0.5, 0.1, 0.0, 0.3, 0.0],
                          [0.1, 0.7, 0.0, -0.4, 0.3],
                          [0.0, 0.2, -0.6, 0.3, -0.3]])
    # neuron sums: task0 = |col rows 0,1|, task1 = |col rows 2,3|
    # n0: 1.4 vs 0.1 -> 0; n1: 0.1 vs 0.9 -> 1; n2: 0.1 vs 0.6 -> 1; n3: 0.5 vs 0.7 -> 1; n4: 0 vs 0.6 -> 1
    W_mid = torch.tensor([[1.0, 0.0, 0.0],    # n0 (task 0) reads input 0
                          [0.0, -2.0, 0.1],   # n1 (task 1) reads input 1
                          [0.0, 0.5, 0.0],    # n2 (task 1)
                          [0.3, 0.0, 0.4],    # n3 (task 1)
                          [0.0, 0.0, -0.2]])  # n4 (task 1)
    # inputs: i0: task0 1.0 vs task1 0.3 -> 0; i1: 0 vs 2.5 -> 1; i2: 0 vs 0.7 -> 1
    g = greedy_split([W_mid, W_out], torch.tensor([0, 0, 1, 1]), 2)
    assert [t.tolist() for t in g] == [[0, 1, 1, 1, 1], [0, 0, 1, 1]]
    g3 = greedy_split([torch.zeros(5, 3), W_mid, W_out], torch.tensor([0, 0, 1, 1]), 2)
    assert g3[0].tolist() == [0, 1, 1]


def test_greedy_split_three_tasks_block_diagonal():
    torch.manual_seed(0)
    M, per = 3, (4, 6, 2)  # neurons per task in layers a, b, output
    def block(rows, cols):
        W = torch.zeros(M * rows, M * cols)
        for t in range(M):
            W[t * rows:(t + 1) * rows, t * cols:(t + 1) * cols] = torch.randn(rows, cols)
        return W
    perm_a, perm_b = torch.randperm(M * per[0]), torch.randperm(M * per[1])
    W_b = block(per[1], per[0])[perm_b][:, perm_a]
    W_out = block(per[2], per[1])[:, perm_b]
    g_a, g_b, g_out = greedy_split([torch.zeros(M * per[0], 5), W_b, W_out], torch.arange(M * per[2]) // per[2], M)
    assert torch.equal(g_b, (torch.arange(M * per[1]) // per[1])[perm_b])
    assert torch.equal(g_a, (torch.arange(M * per[0]) // per[0])[perm_a])


def test_ties_go_to_lowest_task_and_bad_args():
    g = greedy_split([torch.ones(3, 4), torch.ones(2, 3)], torch.tensor([1, 0]), 2)
    assert g[0].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="output_groups"):
        greedy_split([torch.ones(2, 2)], torch.tensor([0, 2]), 2)
    with pytest.raises(ValueError, match="output_groups"):
        greedy_split([torch.ones(2, 2)], torch.tensor([0, 1, 1]), 2)


def _block_net():
    """4 -> 6 -> 4 -> 4: two independent halves (inputs 0-1 -> task 0, 2-3 -> task 1)."""
    torch.manual_seed(0)
    m = SpatialMLP([4, 6, 4, 4], (2, 3))
    with torch.no_grad():
        for l, (r, c) in zip((1, 2, 3), ((3, 2), (2, 3), (2, 2))):
            W = m.layer(l).weight
            W.zero_()
            W[:r, :c] = torch.randn(r, c)
            W[r:, c:] = torch.randn(r, c)
    return m


def test_model_split_and_masks_disable_exactly_other_tasks():
    m = _block_net()
    a = model_split(m, [2, 3], 2)
    assert a[2].tolist() == [0, 0, 1, 1] and a[3].tolist() == [0, 0, 1, 1]
    for t in range(2):
        masks = task_masks(a, t)
        assert masks[2].tolist() == [float(g == t) for g in a[2].tolist()]
        seen = {}
        h = m.layer(3).register_forward_hook(lambda mod, inp, out: seen.update({"in": inp[0].clone()}))
        x = torch.rand(8, 4)
        out = m(x, masks)
        h.remove()
        assert torch.all(seen["in"][:, a[2] != t] == 0)
        assert torch.all(seen["in"][:, a[2] == t] > 0)  # sigmoid outputs of kept neurons untouched
        # the block net's halves are independent, so the task's own head is unchanged
        full = m(x)
        head = slice(2 * t, 2 * t + 2)
        torch.testing.assert_close(out[:, head], full[:, head], rtol=0, atol=0)
        assert torch.all(out[:, a[3] != t] == 0)


def test_model_split_rejects_non_contiguous_layers():
    m = _block_net()
    with pytest.raises(ValueError, match="contiguous"):
        model_split(m, [2], 2)
    with pytest.raises(ValueError, match="heads"):
        model_split(m, [3], 3)


def _collapsing_net(seed=0):
    """Two layers into 2 x 3 outputs where task 0's output weights are 4 times task 1's on every
    neuron: the greedy split hands the whole hidden layer to task 0."""
    g = torch.Generator().manual_seed(seed)
    W_out = torch.rand(6, 8, generator=g) + 0.1
    W_out[:3] *= 4
    W_hid = torch.rand(8, 5, generator=g)
    return [W_hid, W_out], torch.tensor([0, 0, 0, 1, 1, 1])


def test_greedy_split_collapses_where_the_balanced_one_cannot():
    weights, heads = _collapsing_net()
    assert greedy_split(weights, heads, 2)[0].tolist() == [0] * 8
    hidden = balanced_split(weights, heads, 2)[0]
    assert torch.bincount(hidden, minlength=2).tolist() == [4, 4]
    # the mean split compares averages over each task's neurons: no better here, by count it is equal
    assert greedy_split(weights, heads, 2, mean=True)[0].tolist() == [0] * 8


def test_balanced_split_is_the_best_equal_assignment_by_brute_force():
    # truth by enumeration: of every way to give 4 of 8 neurons to each task, the balanced split
    # takes the one with the most strength, each task's strengths over their mean in the layer
    import itertools
    for seed in range(3):
        weights, heads = _collapsing_net(seed)
        s = torch.stack([weights[1][heads == t].abs().sum(0) for t in range(2)]).double()
        s = s / s.mean(dim=1, keepdim=True)
        best = max(itertools.combinations(range(8), 4),
                   key=lambda c: sum(s[0, i] if i in c else s[1, i] for i in range(8)).item())
        got = balanced_split(weights, heads, 2)[0]
        assert sorted((got == 0).nonzero().squeeze(1).tolist()) == list(best)


def test_balanced_split_keeps_the_dead_out_and_takes_given_shares():
    weights, heads = _collapsing_net()
    weights[1][:, 2] = 0.0  # neuron 2 sends nothing: dead under any tolerance
    g = balanced_split(weights, heads, 2, dead_tol=0.1)[0]
    assert g[2] == -1 and torch.bincount(g[g >= 0], minlength=2).tolist() == [4, 3]
    g = balanced_split(weights, heads, 2, dead_tol=0.1, shares=[[1, 6]])[0]
    assert torch.bincount(g[g >= 0], minlength=2).tolist() == [1, 6]
    with pytest.raises(ValueError, match="shares must give 2"):
        balanced_split(weights, heads, 2, shares=[[1, 1, 1]])
    with pytest.raises(ValueError, match="split must be one of"):
        model_split(SpatialMLP([4, 6, 6, 4], spatial_layers=[2, 3]), [2, 3], 2, split="halves")


def test_disabling_by_inputs_leaves_sigmoid_of_the_bias():
    # the authors' read-out: a disabled neuron's incoming weights are zeroed, so it still sends
    # sigma(b) onward; by outputs it sends 0. Truth: the same net with the weights edited by hand.
    torch.manual_seed(0)
    m = SpatialMLP([4, 6, 6, 4], spatial_layers=[2, 3])
    with torch.no_grad():
        for lin in m.layers:
            lin.bias.uniform_(-1, 1)
    x = torch.randn(5, 4)
    mask = {2: torch.tensor([1., 0., 1., 0., 1., 1.])}
    edited = SpatialMLP([4, 6, 6, 4], spatial_layers=[2, 3])
    edited.load_state_dict(m.state_dict())
    with torch.no_grad():
        edited.layer(2).weight[mask[2] == 0] = 0.0
    assert torch.allclose(m(x, mask, disable="inputs"), edited(x), atol=1e-6)
    with torch.no_grad():
        edited.layer(3).weight[:, mask[2] == 0] = 0.0  # what zeroing the outputs does downstream
        edited.layer(2).weight.copy_(m.layer(2).weight)
    assert torch.allclose(m(x, mask, disable="outputs"), edited(x), atol=1e-6)
    assert not torch.allclose(m(x, mask, disable="inputs"), m(x, mask, disable="outputs"), atol=1e-3)
    with pytest.raises(ValueError, match="disable must be"):
        m(x, mask, disable="weights")
