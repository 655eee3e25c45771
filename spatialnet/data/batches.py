"""The batches a run trains on, in the paper's three input modes, for M tasks, gathered on the
training device, and the summed cross-entropy of each task's head. How the data are read and the
validation split carved: ``read.py``.

- ``concat``: one image of every task side by side (1568-d for the paper's two tasks).
- ``mix``: a 784-d vector, the element-wise sum of one image of each task (pixels in [0, M]).
- ``sequential``: a 784-d vector, one image of one task; the loss is taken on its own head.

The network has 10 M outputs: logits 10 t .. 10 t + 9 are task t's head (the paper: 0..9 MNIST,
10..19 Fashion-MNIST). Pixels are scaled to [0, 1]. Which tasks: ``spatialnet/data/tasks.py``.

Pairs. In training, every epoch pairs the i-th image of a fresh permutation of each task's
training set (the epoch's generator is seeded by ``(seed, epoch)``, so a resumed run sees the
same pairs). For testing (concat and mix), task 0's test image i is paired with task t's test
image ``perm_t[i]``, the permutations drawn from a generator seeded with ``seed`` alone: the
test pairs are fixed per seed and the same for every net (regular or spatial) trained with it.
"""
from __future__ import annotations

import torch

from .read import (NUM_CLASSES, DoubleMNIST, Split, check_mode, input_dim, load, val_size,
                   with_validation)
from .tasks import DEFAULT_TASKS, build_tasks


def _float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0)


class TaskData:
    """Batches and test sets of one mode for M tasks, held in memory (uint8 images, made float32
    in [0, 1] per batch), on the CPU or, after :meth:`to`, on the training device.

    Batches are gathered from whole-dataset tensors with index tensors, so on a GPU a step
    needs no host synchronisation; the epoch's order is drawn on the CPU and moved once.
    """

    def __init__(self, data: DoubleMNIST, mode: str, seed: int, tasks=DEFAULT_TASKS):
        self.mode = check_mode(mode)
        self.seed = seed
        self.source = data.source
        self.tasks = build_tasks(data, tasks)
        self.task_names = tuple(t.name for t in self.tasks)
        self.num_tasks = M = len(self.tasks)
        self.input_dim = input_dim(mode, M)
        self.device = torch.device("cpu")
        self.train_x = [t.train_x for t in self.tasks]
        self.train_y = [t.train_y for t in self.tasks]
        if mode == "sequential":
            # one pool of every task's images; example k belongs to task all_task[k]
            self.all_x = torch.cat(self.train_x)
            self.all_y = torch.cat(self.train_y)
            self.all_task = torch.cat([torch.full((len(x),), t, dtype=torch.long) for t, x in enumerate(self.train_x)])
            self.test_sets = [(_float(t.test_x), t.test_y) for t in self.tasks]
        else:
            g = torch.Generator().manual_seed(seed)
            n = min(len(t.test_x) for t in self.tasks)
            # task 0's test image i is paired with task t's test image perm_t[i]
            perms = [torch.arange(n)] + [torch.randperm(len(t.test_x), generator=g)[:n] for t in self.tasks[1:]]
            x = self._combine([_float(t.test_x[p]) for t, p in zip(self.tasks, perms)])
            # every task sees the same paired inputs; task t reads its own head
            self.test_sets = [(x, t.test_y[p]) for t, p in zip(self.tasks, perms)]

    def to(self, device) -> "TaskData":
        """Moves the training images and the test sets to ``device`` (in place; returns self)."""
        device = torch.device(device)
        if device != self.device:
            self.train_x = [x.to(device) for x in self.train_x]
            self.train_y = [y.to(device) for y in self.train_y]
            if self.mode == "sequential":
                self.all_x, self.all_y, self.all_task = (t.to(device) for t in (self.all_x, self.all_y, self.all_task))
            self.test_sets = [(x.to(device), y.to(device)) for x, y in self.test_sets]
            self.device = device
        return self

    def _combine(self, xs: list[torch.Tensor]) -> torch.Tensor:
        if self.mode == "concat":
            return torch.cat(xs, dim=1)
        out = xs[0].clone()
        for x in xs[1:]:
            out += x
        return out

    def _num_train(self) -> int:
        sizes = [len(x) for x in self.train_x]
        return sum(sizes) if self.mode == "sequential" else min(sizes)

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-self._num_train() // batch_size)

    def epoch_batches(self, epoch: int, batch_size: int):
        """Yields ``(x, y, task)`` global batches on this data's device: for the paired modes
        y (B, M) labels and task None; for sequential y (B,) labels and task (B,) in 0..M-1.
        The order depends on (seed, epoch) alone: the same for every process and on resume."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        if self.mode == "sequential":
            order = torch.randperm(len(self.all_x), generator=g).to(self.device)
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                yield _float(self.all_x[idx]), self.all_y[idx], self.all_task[idx]
        else:
            n = self._num_train()
            perms = torch.stack([torch.randperm(len(x), generator=g)[:n] for x in self.train_x]).to(self.device)
            for s in range(0, n, batch_size):
                idx = perms[:, s:s + batch_size]  # [M, B]
                x = self._combine([_float(x[i]) for x, i in zip(self.train_x, idx)])
                yield x, torch.stack([y[i] for y, i in zip(self.train_y, idx)], 1), None


def task_loss_sum(logits: torch.Tensor, y: torch.Tensor, task) -> torch.Tensor:
    """Summed (not averaged) cross-entropy over the batch: every head for paired modes (y is
    (B, M)), each example's own head for sequential (y and task are (B,)). The caller divides
    by the global batch size."""
    B = len(logits)
    heads = logits.view(B, -1, NUM_CLASSES)  # [B, M, 10]
    if task is None:
        return torch.nn.functional.cross_entropy(heads.reshape(-1, NUM_CLASSES), y.reshape(-1), reduction="sum")
    own = heads.gather(1, task.view(B, 1, 1).expand(B, 1, NUM_CLASSES)).squeeze(1)  # [B, 10]
    return torch.nn.functional.cross_entropy(own, y, reduction="sum")


def load_data(cfg, data_dir=None, dataset: DoubleMNIST | None = None) -> TaskData:
    """The TaskData of a run's config (``config.TrainConfig``: data, val_size, eval_split,
    max_train, mode, seed, tasks), from ``dataset`` when given (already loaded), else from disk."""
    ds = dataset if dataset is not None else load(cfg.data, data_dir)
    # the validation split is carved first, so max_train and every mode see the same one
    ds = with_validation(ds, val_size(ds.source, cfg.val_size), cfg.eval_split)
    if cfg.max_train:
        t = ds.train
        ds = DoubleMNIST(Split(t.mnist_x[:cfg.max_train], t.mnist_y[:cfg.max_train],
                                                 t.fashion_x[:cfg.max_train], t.fashion_y[:cfg.max_train]),
                                  ds.test, ds.source)
    td = TaskData(ds, cfg.mode, cfg.seed, cfg.tasks)
    td.eval_split = cfg.eval_split
    return td
