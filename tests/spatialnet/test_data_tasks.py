"""M-task data: the task names, permuted MNIST, batches of three tasks, and a 3-task net end to end."""
import pytest
import torch

from spatialnet import data as D
from spatialnet.data.tasks import build_tasks, check_tasks, display_name, pixel_permutation
from spatialnet.config import TrainConfig
from spatialnet.training import train

THREE = ("mnist", "fashion", "pmnist1")


@pytest.fixture(scope="module")
def subset():
    return D.load_subset()


@pytest.mark.parametrize("tasks,msg", [
    ("mnist,cifar", "unknown task 'cifar'"), ("mnist,pmnist0", "unknown task 'pmnist0'"),
    ("mnist", "at least two"), ("mnist,fashion,mnist", "repeated"), (3, "tasks must be a list"),
])
def test_bad_task_lists(tasks, msg):
    with pytest.raises((ValueError, TypeError), match=msg):
        check_tasks(tasks)
    with pytest.raises((ValueError, TypeError), match="tasks"):
        TrainConfig(tasks=tasks).validate()


def test_permuted_mnist_is_mnist_with_a_fixed_pixel_order(subset):
    p1, p1b, p2 = pixel_permutation("pmnist1"), pixel_permutation("pmnist1"), pixel_permutation("pmnist2")
    assert torch.equal(p1, p1b) and not torch.equal(p1, p2)
    assert torch.equal(torch.sort(p1).values, torch.arange(784))
    mnist, fashion, pm1, pm2 = build_tasks(subset, ["mnist", "fashion", "pmnist1", "pmnist2"])
    assert torch.equal(pm1.train_x, mnist.train_x[:, p1]) and torch.equal(pm1.test_y, mnist.test_y)
    assert torch.equal(pm2.test_x, mnist.test_x[:, p2])
    assert torch.equal(fashion.train_x, subset.train.fashion_x)
    assert [display_name(t.name) for t in (mnist, fashion, pm2)] == ["MNIST", "Fashion-MNIST", "permuted MNIST 2"]


def test_three_task_paired_batches(subset):
    cat = D.TaskData(subset, "concat", seed=1, tasks=THREE)
    mix = D.TaskData(subset, "mix", seed=1, tasks=THREE)
    assert cat.input_dim == 3 * 784 and mix.input_dim == 784
    (x, y, task), (xm, ym, _) = next(cat.epoch_batches(0, 16)), next(mix.epoch_batches(0, 16))
    assert task is None and y.shape == (16, 3) and x.shape == (16, 3 * 784)
    for k in range(16):
        for t in range(3):
            pool = cat.tasks[t].train_x.float() / 255
            i = int(torch.nonzero((pool == x[k, 784 * t:784 * (t + 1)]).all(1))[0])
            assert y[k, t] == cat.tasks[t].train_y[i]
    # same seed and epoch: mix sees the same triples, summed
    assert torch.equal(ym, y)
    torch.testing.assert_close(xm, x[:, :784] + x[:, 784:1568] + x[:, 1568:], rtol=0, atol=1e-6)
    # test pairs: every task reads the same inputs through its own head
    assert len(cat.test_sets) == 3 and all(ts[0] is cat.test_sets[0][0] for ts in cat.test_sets)


def test_three_task_sequential_batches_cover_every_task(subset):
    td = D.TaskData(subset, "sequential", seed=0, tasks=THREE)
    seen = torch.zeros(3, dtype=torch.long)
    for x, y, task in td.epoch_batches(0, 1000):
        seen += torch.bincount(task, minlength=3)
        for k in range(0, len(x), 97):
            pool = td.tasks[int(task[k])].train_x.float() / 255
            i = int(torch.nonzero((pool == x[k]).all(1))[0])
            assert y[k] == td.tasks[int(task[k])].train_y[i]
    assert seen.tolist() == [2000, 2000, 2000]


def test_task_loss_of_three_heads_is_the_sum_of_per_head_losses():
    torch.manual_seed(0)
    logits, y = torch.randn(5, 30), torch.randint(0, 10, (5, 3))
    ce = torch.nn.functional.cross_entropy
    expected = sum(ce(logits[:, 10 * t:10 * t + 10], y[:, t], reduction="sum") for t in range(3))
    torch.testing.assert_close(D.task_loss_sum(logits, y, None), expected)
    task, yy = torch.tensor([2, 0, 1, 2, 0]), torch.randint(0, 10, (5,))
    own = sum(ce(logits[k:k + 1, 10 * int(task[k]):10 * int(task[k]) + 10], yy[k:k + 1], reduction="sum")
              for k in range(5))
    torch.testing.assert_close(D.task_loss_sum(logits, yy, task), own)


@pytest.mark.parametrize("mode", ["concat", "sequential"])
def test_three_task_net_trains_and_splits(tmp_path, subset, mode):
    cfg = TrainConfig(mode=mode, tasks=list(THREE), data="subset", max_train=256, batch_size=64,
                      hidden=[16, 16, 16, 24], epochs=1).validate()
    assert cfg.sizes == [3 * 784 if mode == "concat" else 784, 16, 16, 16, 24, 30]
    res = train(cfg, tmp_path, progress=False, dataset=subset, log=lambda *a: None)
    assert res["tasks"] == list(THREE) and len(res["full_per_task"]) == len(res["split_per_task"]) == 3
    assert res["split_sizes"]["5"] == [10, 10, 10]
    assert sum(res["split_sizes"]["4"]) + res["dead_per_layer"]["4"] == 24
