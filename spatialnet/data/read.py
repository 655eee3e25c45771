"""Reading the tasks' data: MNIST and Fashion-MNIST from their files or the embedded subset, and the
fixed validation split; the batches a run trains on are ``batches.py``'s.

Validation (docs/protocol.md). A fixed validation split is carved from each training
set before anything else: ``VAL_SIZE`` images per dataset (5 000 of the 60 000 for the full data,
400 of the 2 000 of the embedded subset), the first ones of a permutation drawn from a generator
seeded with ``VAL_SEED``, the same for every run, seed and mode; training uses the rest (55 000).
Permuted-MNIST tasks take MNIST's split. Runs are read on the validation split by default
(``TrainConfig.eval_split = "val"``): sweeps, probes and every choice of setting read it; the test
sets appear only in final tables (``eval_split = "test"``). ``val_size = 0`` trains on every
training image.

Where the files come from: ``data_dir`` argument (``--data-dir``), else ``$SPATIALNET_DATA``, else
``$XDG_CACHE_HOME/spatialnet`` (``~/.cache/spatialnet``), in torchvision's layout
(``MNIST/raw/...``, ``FashionMNIST/raw/...``), downloading when files are missing. The embedded
subset (``spatialnet/assets/subset.npz``, made by ``python -m spatialnet.data.make_subset``) holds 2 000 train
and 1 000 test images per dataset and needs neither files nor network.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .tasks import PIXELS

MODES = ("concat", "mix", "sequential")
DATASETS = ("MNIST", "FashionMNIST")
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SUBSET_PATH = Path(__file__).resolve().parents[1] / "assets" / "subset.npz"
NUM_CLASSES = 10
VAL_SIZE = {"full": 5000, "subset": 400}  # validation images per dataset, by data source
VAL_SEED = 20_261_114
EVAL_SPLITS = ("val", "test")
SUBSET_BANNER = ("*** EMBEDDED SUBSET: 2 000 train (400 of them held out for validation) + 1 000 test images per dataset, not the full "
                 "MNIST/Fashion-MNIST; accuracies are not comparable with the paper's ***")


def check_mode(mode) -> str:
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a str, one of {MODES}, got {type(mode).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def input_dim(mode: str, num_tasks: int = 2) -> int:
    """Concat: one image per task side by side; mix and sequential: one image's pixels."""
    return num_tasks * PIXELS if check_mode(mode) == "concat" else PIXELS


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


def read_idx(path: Path) -> np.ndarray:
    """An uncompressed IDX file (the MNIST format): uint8 data, big-endian int32 dimensions."""
    raw = path.read_bytes()
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an uncompressed uint8 IDX file (MNIST format)")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: {data.size} bytes of data for dimensions {tuple(dims)}")
    return data.reshape(tuple(int(d) for d in dims))


def load_full(data_dir=None, download: bool = True) -> DoubleMNIST:
    """Full MNIST and Fashion-MNIST from their IDX files (torchvision's layout, downloaded through
    torchvision when missing); a FileNotFoundError names what is missing."""
    root = default_data_dir(data_dir)
    missing = missing_files(root)
    if missing:
        if not download:
            raise FileNotFoundError(_missing_message(root, missing, "downloading was not asked for"))
        if not _reachable(DOWNLOAD_HOST):
            raise FileNotFoundError(_missing_message(root, missing, f"offline: {DOWNLOAD_HOST}, where torchvision "
                                                                    f"downloads them from, cannot be reached"))
        try:
            import torchvision

            for cls in (torchvision.datasets.MNIST, torchvision.datasets.FashionMNIST):
                for train in (True, False):
                    cls(root=str(root), train=train, download=True)
        except Exception as exc:  # offline, mirror down, disk full: say what to put where
            raise FileNotFoundError(_missing_message(root, missing_files(root), f"download failed: {exc}")) from exc
    splits = {}
    for prefix, train in (("train", True), ("t10k", False)):
        parts = []
        for name in DATASETS:
            x = read_idx(root / name / "raw" / f"{prefix}-images-idx3-ubyte")
            y = read_idx(root / name / "raw" / f"{prefix}-labels-idx1-ubyte")
            parts += [torch.from_numpy(x.reshape(len(x), PIXELS).copy()), torch.from_numpy(y.astype(np.int64))]
        splits[train] = Split(*parts)
    return DoubleMNIST(splits[True], splits[False], "full")


DOWNLOAD_HOST = "ossci-datasets.s3.amazonaws.com"  # torchvision's first mirror of MNIST and Fashion-MNIST


def _reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether ``host`` answers on port 443 within ``timeout`` s: offline, say so at once rather
    than through the downloader's retries over every mirror."""
    import socket
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _missing_message(root: Path, missing: list[Path], why: str) -> str:
    lines = "\n  ".join(str(p) for p in missing)
    return (f"MNIST/Fashion-MNIST files are missing under {root} ({why}). Put these files there "
            f"(uncompressed idx files, torchvision layout), or pass --data-dir / set SPATIALNET_DATA "
            f"to a folder that has them, or use the embedded subset (--data subset):\n  {lines}")


def load_subset(path: str | os.PathLike = SUBSET_PATH) -> DoubleMNIST:
    """The embedded 2 000 + 1 000 images per dataset (see ``spatialnet/data/make_subset.py``)."""
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


def val_size(source: str, requested: int = -1) -> int:
    """Validation images per dataset: ``requested`` when >= 0, else ``VAL_SIZE[source]``."""
    return VAL_SIZE[source] if requested < 0 else requested


def validation_indices(n_train: int, n_val: int, seed: int = VAL_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """``(validation, rest)`` indices into a training set of ``n_train`` images, both sorted."""
    if not 0 <= n_val < n_train:
        raise ValueError(f"val_size must be in 0..{n_train - 1} for a training set of {n_train}, got {n_val}")
    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))
    return perm[:n_val].sort().values, perm[n_val:].sort().values


def with_validation(ds: DoubleMNIST, n_val: int, eval_split: str = "val") -> DoubleMNIST:
    """``ds`` with ``n_val`` images per dataset carved out of training (see the module
    docstring); its ``test`` is the validation split (``eval_split="val"``) or the test sets."""
    if eval_split not in EVAL_SPLITS:
        raise ValueError(f"eval_split must be one of {EVAL_SPLITS}, got {eval_split!r}")
    if n_val == 0:
        if eval_split == "val":
            raise ValueError("eval_split 'val' needs a validation split (val_size > 0)")
        return ds
    t = ds.train
    (vm, rm), (vf, rf) = validation_indices(len(t.mnist_x), n_val), validation_indices(len(t.fashion_x), n_val)
    rest = Split(t.mnist_x[rm], t.mnist_y[rm], t.fashion_x[rf], t.fashion_y[rf])
    val = Split(t.mnist_x[vm], t.mnist_y[vm], t.fashion_x[vf], t.fashion_y[vf])
    return DoubleMNIST(rest, val if eval_split == "val" else ds.test, ds.source)
