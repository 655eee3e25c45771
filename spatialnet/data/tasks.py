"""The tasks a net learns at once: MNIST, Fashion-MNIST and permuted-MNIST tasks.

``--tasks mnist,fashion,pmnist1,pmnist2`` names M tasks, in head order: task t owns logits
``10 t .. 10 t + 9``. ``pmnist<k>`` (k >= 1) is MNIST with a fixed pixel permutation, drawn from
a generator seeded with ``PMNIST_SEED + k``, the same on every machine and for every run
(permuted MNIST, the continual-learning classic; it needs no download). Its images are MNIST's,
so in the paired modes (concat, mix) each task's slot still gets its own, independently drawn
image.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

DEFAULT_TASKS = ("mnist", "fashion")
PMNIST_SEED = 20_190_000
PIXELS = 784
_PMNIST = re.compile(r"pmnist([1-9]\d*)")


def check_tasks(tasks) -> tuple[str, ...]:
    """``tasks`` as a tuple of known, distinct task names (a comma-separated str is accepted)."""
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    if not isinstance(tasks, (list, tuple)):
        raise TypeError(f"tasks must be a list of task names, got {type(tasks).__name__}")
    for t in tasks:
        if not isinstance(t, str) or not (t in DEFAULT_TASKS or _PMNIST.fullmatch(t)):
            raise ValueError(f"tasks: unknown task {t!r}; use mnist, fashion or pmnist<k> (k >= 1), "
                             f"e.g. mnist,fashion,pmnist1")
    if len(tasks) < 2:
        raise ValueError(f"tasks must name at least two tasks (the split divides the net among them), "
                         f"got {list(tasks)}")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks has repeated names: {list(tasks)}")
    return tuple(tasks)


def display_name(task: str) -> str:
    if task == "mnist":
        return "MNIST"
    if task == "fashion":
        return "Fashion-MNIST"
    return f"permuted MNIST {_PMNIST.fullmatch(task).group(1)}"


def pixel_permutation(task: str) -> torch.Tensor:
    """The fixed pixel order of ``pmnist<k>``: a ``(784,)`` permutation."""
    k = int(_PMNIST.fullmatch(task).group(1))
    return torch.randperm(PIXELS, generator=torch.Generator().manual_seed(PMNIST_SEED + k))


@dataclass
class Task:
    """One task's uint8 images ``(N, 784)`` and int64 labels, both splits."""
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def build_tasks(data, tasks) -> list[Task]:
    """The tasks named by ``tasks`` from a loaded ``data.DoubleMNIST``."""
    out = []
    for name in check_tasks(tasks):
        if name == "fashion":
            parts = (data.train.fashion_x, data.train.fashion_y, data.test.fashion_x, data.test.fashion_y)
        else:
            parts = (data.train.mnist_x, data.train.mnist_y, data.test.mnist_x, data.test.mnist_y)
            if name != "mnist":
                perm = pixel_permutation(name)
                parts = (parts[0][:, perm], parts[1], parts[2][:, perm], parts[3])
        out.append(Task(name, *parts))
    return out
