"""The tasks' images as images: MNIST and Fashion-MNIST side by side, one 28 x 56 picture per pair
(for convolutional and vision-transformer models)."""
from __future__ import annotations

import torch

from .batches import TaskData
from .read import load, val_size, with_validation


def concat_data(seed: int, data_dir=None, eval_split: str = "test") -> TaskData:
    """MNIST + Fashion-MNIST side by side (1568-d), the validation split held out of training,
    read on ``eval_split``; the data folder as every command takes it (``data_dir``, else
    $SPATIALNET_DATA, else the cache)."""
    ds = load("full", data_dir)
    return TaskData(with_validation(ds, val_size(ds.source), eval_split), "concat", seed)


def as_image(x: torch.Tensor) -> torch.Tensor:
    """(B, 1568) -> (B, 1, 28, 56): the two 28x28 images side by side."""
    return x.view(len(x), 2, 28, 28).permute(0, 2, 1, 3).reshape(len(x), 1, 28, 56)
