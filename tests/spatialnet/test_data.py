"""Input modes, pairing, the embedded subset and the missing-data message."""
from pathlib import Path

import pytest
import torch

from spatialnet import data as D


@pytest.fixture(scope="module")
def subset():
    return D.load_subset()


def test_subset_is_small_real_and_balanced(subset):
    assert D.SUBSET_PATH.stat().st_size < 5_000_000
    for split, n in ((subset.train, 2000), (subset.test, 1000)):
        for x, y in ((split.mnist_x, split.mnist_y), (split.fashion_x, split.fashion_y)):
            assert x.shape == (n, 784) and x.dtype == torch.uint8 and y.shape == (n,)
            assert torch.bincount(y, minlength=10).tolist() == [n // 10] * 10
            assert x.float().mean() > 20  # real images, not zeros
    assert not torch.equal(subset.train.mnist_x[:10], subset.train.fashion_x[:10])


@pytest.mark.parametrize("mode,dim", [("concat", 1568), ("mix", 784), ("sequential", 784)])
def test_batches_shapes(subset, mode, dim):
    td = D.TaskData(subset, mode, seed=0)
    x, y, task = next(td.epoch_batches(0, 64))
    assert x.shape == (64, dim) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= (2 if mode == "mix" else 1)
    if mode == "sequential":
        assert y.shape == (64,) and task.shape == (64,)
        assert td.steps_per_epoch(64) == -(-4000 // 64)
    else:
        assert y.shape == (64, 2) and task is None
        assert td.steps_per_epoch(64) == -(-2000 // 64)
    assert len(td.test_sets) == 2


def test_concat_and_mix_pair_the_right_images(subset):
    mx, fx = subset.train.mnist_x.float() / 255, subset.train.fashion_x.float() / 255
    cat = D.TaskData(subset, "concat", seed=3)
    mix = D.TaskData(subset, "mix", seed=3)
    xc, yc, _ = next(cat.epoch_batches(0, 32))
    xm, ym, _ = next(mix.epoch_batches(0, 32))
    assert torch.equal(yc, ym)  # same seed and epoch: same pairs
    for k in range(32):
        i = int(torch.nonzero((mx == xc[k, :784]).all(1))[0])
        j = int(torch.nonzero((fx == xc[k, 784:]).all(1))[0])
        assert yc[k].tolist() == [subset.train.mnist_y[i], subset.train.fashion_y[j]]
        torch.testing.assert_close(xm[k], mx[i] + fx[j], rtol=0, atol=0)


def test_sequential_batches_cover_both_datasets(subset):
    td = D.TaskData(subset, "sequential", seed=0)
    seen = torch.zeros(2, dtype=torch.long)
    for x, y, task in td.epoch_batches(0, 512):
        seen += torch.bincount(task, minlength=2)
        for k in (int(torch.nonzero(task == 0)[0]), int(torch.nonzero(task == 1)[0])):
            src = td.train_x[int(task[k])].float() / 255
            i = int(torch.nonzero((src == x[k]).all(1))[0])
            assert y[k] == td.train_y[int(task[k])][i]
    assert seen.tolist() == [2000, 2000]


def test_test_pairs_fixed_per_seed(subset):
    a, b, c = (D.TaskData(subset, "concat", s) for s in (0, 0, 1))
    assert torch.equal(a.test_sets[1][1], b.test_sets[1][1]) and torch.equal(a.test_sets[0][0], b.test_sets[0][0])
    assert not torch.equal(a.test_sets[1][1], c.test_sets[1][1])
    assert torch.equal(a.test_sets[0][1], subset.test.mnist_y)  # MNIST test image i stays at i


def test_epochs_differ_but_repeat(subset):
    td = D.TaskData(subset, "concat", seed=0)
    e0, e0b, e1 = (next(td.epoch_batches(e, 16))[1] for e in (0, 0, 1))
    assert torch.equal(e0, e0b) and not torch.equal(e0, e1)


def test_sequential_loss_uses_own_head():
    logits = torch.zeros(2, 20)
    logits[0, 3] = 10.0   # MNIST head says 3
    logits[1, 15] = 10.0  # Fashion head says 5
    y, task = torch.tensor([3, 5]), torch.tensor([0, 1])
    small = D.task_loss_sum(logits, y, task)
    assert small < 1e-3
    assert D.task_loss_sum(logits, y, torch.tensor([1, 0])) > 1.0


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        D.check_mode("interleaved")
    with pytest.raises(TypeError, match="mode"):
        D.check_mode(3)


def test_missing_files_message(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as e:
        D.load_full(tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte") in msg
    assert str(tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte") in msg

    import torchvision

    def offline(*a, **k):
        raise OSError("network is unreachable")
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    monkeypatch.setattr(D.read, "_reachable", lambda host, timeout=3.0: True)  # online, and the download fails
    with pytest.raises(FileNotFoundError, match="download failed: network is unreachable"):
        D.load_full(tmp_path, download=True)
    monkeypatch.setattr(D.read, "_reachable", lambda host, timeout=3.0: False)  # offline: no download tried
    with pytest.raises(FileNotFoundError, match=f"offline: {D.read.DOWNLOAD_HOST}"):
        D.load_full(tmp_path, download=True)


def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("SPATIALNET_DATA", str(tmp_path / "env"))
    assert D.default_data_dir("/x/y") == Path("/x/y")
    assert D.default_data_dir() == tmp_path / "env"
    monkeypatch.delenv("SPATIALNET_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert D.default_data_dir() == tmp_path / "cache" / "spatialnet"
    assert D.load("auto", tmp_path).source == "subset"


def _write_idx(path, arr):
    import numpy as np
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 8, arr.ndim]) + np.array(arr.shape, dtype=">i4").tobytes()
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_full_data_read_from_idx_files(tmp_path):
    import numpy as np
    rng = np.random.default_rng(0)
    files = {}
    for name in D.DATASETS:
        for prefix, n in (("train", 7), ("t10k", 3)):
            files[name, prefix] = (rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
            _write_idx(tmp_path / name / "raw" / f"{prefix}-images-idx3-ubyte", files[name, prefix][0])
            _write_idx(tmp_path / name / "raw" / f"{prefix}-labels-idx1-ubyte", files[name, prefix][1])
    d = D.load_full(tmp_path, download=False)
    assert d.source == "full"
    assert torch.equal(d.train.fashion_x, torch.from_numpy(files["FashionMNIST", "train"][0].reshape(7, 784)).byte())
    assert d.test.mnist_y.tolist() == files["MNIST", "t10k"][1].tolist() and d.test.mnist_y.dtype == torch.int64
    # a truncated file is an error that names it, not a silently short dataset
    p = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte is truncated"):
        D.load_full(tmp_path, download=False)
    p.write_bytes(b"\x1f\x8b" + bytes(20))  # gzip, not idx
    with pytest.raises(ValueError, match="not an uncompressed uint8 IDX"):
        D.load_full(tmp_path, download=False)
