"""MNIST + Fashion-MNIST as one double-classification task, in the paper's three input modes.

- ``concat``: a 1568-d vector, one MNIST and one Fashion-MNIST image side by side.
- ``mix``: a 784-d vector, the element-wise sum of one image of each (so pixels lie in [0, 2]).
- ``sequential``: a 784-d vector, one image of either dataset; the loss is taken on its own head.

The network has 20 outputs: logits 0..9 are the MNIST head (task 0), 10..19 the Fashion head
(task 1). Pixels are scaled to [0, 1].

Pairs. In training, every epoch pairs the i-th image of a fresh permutation of MNIST with the
i-th image of a fresh permutation of Fashion-MNIST (the epoch's generator is seeded by
``(seed, epoch)``, so a resumed run sees the same pairs). For testing (concat and mix), MNIST
test image i is paired with Fashion test image ``perm[i]``, ``perm`` a permutation drawn from a
generator seeded with ``seed`` alone: the test pairs are fixed per seed and the same for every
net (regular or spatial) trained with that seed.

Where the files come from: ``data_dir`` argument (``--data-dir``), else ``$SPATIALNET_DATA``, else
``$XDG_CACHE_HOME/spatialnet`` (``~/.cache/spatialnet``), in torchvision's layout
(``MNIST/raw/...``, ``FashionMNIST/raw/...``), downloading when files are missing. The embedded
subset (``spatialnet/assets/subset.npz``, made by ``scripts/make_subset.py``) holds 2 000 train
and 1 000 test images per dataset and needs neither files nor network.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MODES = ("concat", "mix", "sequential")
DATASETS = ("MNIST", "FashionMNIST")
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SUBSET_PATH = Path(__file__).resolve().parent / "assets" / "subset.npz"
NUM_CLASSES = 10
NUM_TASKS = 2
PIXELS = 784
SUBSET_BANNER = ("*** EMBEDDED SUBSET: 2 000 train + 1 000 test images per dataset, not the full "
                 "MNIST/Fashion-MNIST; accuracies are not comparable with the paper's ***")


def check_mode(mode) -> str:
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a str, one of {MODES}, got {type(mode).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def input_dim(mode: str) -> int:
    return 2 * PIXELS if check_mode(mode) == "concat" else PIXELS


def default_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get("SPATIALNET_DATA", "").strip()
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "spatialnet"


def missing_files(root: Path) -> list[Path]:
    return [root / name / "raw" / f for name in DATASETS for f in RAW_FILES
            if not (root / name / "raw" / f).is_file()]


def full_data_present(data_dir=None) -> bool:
    return not missing_files(default_data_dir(data_dir))


@dataclass
class Split:
    """uint8 images ``(N, 784)`` and int64 labels ``(N,)`` of both datasets, one split."""
    mnist_x: torch.Tensor
    mnist_y: torch.Tensor
    fashion_x: torch.Tensor
    fashion_y: torch.Tensor


@dataclass
class DoubleMNIST:
    train: Split
    test: Split
    source: str  # "full" or "subset"


def load_full(data_dir=None, download: bool = True) -> DoubleMNIST:
    """Full MNIST and Fashion-MNIST through torchvision; a FileNotFoundError names what is missing."""
    import torchvision

    root = default_data_dir(data_dir)
    missing = missing_files(root)
    if missing:
        if not download:
            raise FileNotFoundError(_missing_message(root, missing, "downloading was not asked for"))
        try:
            for cls in (torchvision.datasets.MNIST, torchvision.datasets.FashionMNIST):
                for train in (True, False):
                    cls(root=str(root), train=train, download=True)
        except Exception as exc:  # offline, mirror down, disk full: say what to put where
            raise FileNotFoundError(_missing_message(root, missing_files(root), f"download failed: {exc}")) from exc
    splits = {}
    for train in (True, False):
        parts = []
        for cls in (torchvision.datasets.MNIST, torchvision.datasets.FashionMNIST):
            ds = cls(root=str(root), train=train, download=False)
            parts += [ds.data.reshape(len(ds.data), PIXELS).contiguous(), ds.targets.long()]
        splits[train] = Split(*parts)
    return DoubleMNIST(splits[True], splits[False], "full")


def _missing_message(root: Path, missing: list[Path], why: str) -> str:
    lines = "\n  ".join(str(p) for p in missing)
    return (f"MNIST/Fashion-MNIST files are missing under {root} ({why}). Put these files there "
            f"(uncompressed idx files, torchvision layout), or pass --data-dir / set SPATIALNET_DATA "
            f"to a folder that has them, or use the embedded subset (--data subset):\n  {lines}")


def load_subset(path: str | os.PathLike = SUBSET_PATH) -> DoubleMNIST:
    """The embedded 2 000 + 1 000 images per dataset (see ``scripts/make_subset.py``)."""
    with np.load(path) as z:
        def split(kind):
            return Split(*(torch.from_numpy(z[f"{name}_{kind}_{part}"].astype(dtype))
                           for name in ("mnist", "fashion")
                           for part, dtype in (("x", np.uint8), ("y", np.int64))))
        return DoubleMNIST(split("train"), split("test"), "subset")


def load(data: str = "full", data_dir=None) -> DoubleMNIST:
    """``data``: ``"full"`` (download when missing), ``"subset"`` (embedded), or ``"auto"`` (full
    when its files are present, else the subset)."""
    if data == "full":
        return load_full(data_dir)
    if data == "subset":
        return load_subset()
    if data == "auto":
        return load_full(data_dir, download=False) if full_data_present(data_dir) else load_subset()
    raise ValueError(f"data must be 'full', 'subset' or 'auto', got {data!r}")


def _float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0)


class TaskData:
    """Batches and test sets of one mode, pixels as float32 in [0, 1], held in memory."""

    def __init__(self, data: DoubleMNIST, mode: str, seed: int):
        self.mode = check_mode(mode)
        self.seed = seed
        self.source = data.source
        tr, te = data.train, data.test
        self.mx, self.my = _float(tr.mnist_x), tr.mnist_y
        self.fx, self.fy = _float(tr.fashion_x), tr.fashion_y
        self.input_dim = input_dim(mode)
        g = torch.Generator().manual_seed(seed)
        tmx, tfx = _float(te.mnist_x), _float(te.fashion_x)
        if mode == "sequential":
            self.test_sets = [(tmx, te.mnist_y), (tfx, te.fashion_y)]
        else:
            n = min(len(tmx), len(tfx))
            perm = torch.randperm(len(tfx), generator=g)[:n]
            x = self._combine(tmx[:n], tfx[perm])
            # both tasks see the same paired inputs; task t reads its own head
            self.test_sets = [(x, te.mnist_y[:n]), (x, te.fashion_y[perm])]

    def _combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cat([a, b], dim=1) if self.mode == "concat" else a + b

    def steps_per_epoch(self, batch_size: int) -> int:
        n = len(self.mx) + len(self.fx) if self.mode == "sequential" else min(len(self.mx), len(self.fx))
        return -(-n // batch_size)

    def epoch_batches(self, epoch: int, batch_size: int):
        """Yields ``(x, y, task)`` global batches: y (B, 2) labels for paired modes with task None;
        for sequential y (B,) labels and task (B,) in {0, 1}. Same order for every process."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        if self.mode == "sequential":
            nm = len(self.mx)
            order = torch.randperm(nm + len(self.fx), generator=g)
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                is_f = idx >= nm
                x = torch.empty(len(idx), PIXELS)
                x[~is_f] = self.mx[idx[~is_f]]
                x[is_f] = self.fx[idx[is_f] - nm]
                y = torch.where(is_f, self.fy[(idx - nm).clamp(min=0)], self.my[idx.clamp(max=nm - 1)])
                yield x, y, is_f.long()
        else:
            n = min(len(self.mx), len(self.fx))
            pm = torch.randperm(len(self.mx), generator=g)[:n]
            pf = torch.randperm(len(self.fx), generator=g)[:n]
            for s in range(0, n, batch_size):
                im, jf = pm[s:s + batch_size], pf[s:s + batch_size]
                yield self._combine(self.mx[im], self.fx[jf]), torch.stack([self.my[im], self.fy[jf]], 1), None


def task_loss_sum(logits: torch.Tensor, y: torch.Tensor, task) -> torch.Tensor:
    """Summed (not averaged) cross-entropy over the batch: both heads for paired modes, each
    example's own head for sequential. The caller divides by the global batch size."""
    ce = torch.nn.functional.cross_entropy
    if task is None:
        return ce(logits[:, :NUM_CLASSES], y[:, 0], reduction="sum") + \
            ce(logits[:, NUM_CLASSES:], y[:, 1], reduction="sum")
    heads = logits.view(len(logits), NUM_TASKS, NUM_CLASSES)[torch.arange(len(logits)), task]
    return ce(heads, y, reduction="sum")
