"""The positions of a run, epoch by epoch: ``RUN/positions.pt``, written by training and read by
the figures (``studies/plots.py``) and the studies that follow a run's trajectory. One format,
one owner: this module writes and reads it."""
from __future__ import annotations

from pathlib import Path

import torch

from .._io import save_torch

POSITIONS_FILE = "positions.pt"


class PositionTrack:
    """The positions of every positioned layer after each epoch (epoch 0: the initial ones), in
    ``run/positions.pt``: ``{"epochs": [0, 1, ...], "layers": {"l": (E, N_l, D) float32}}``,
    rewritten atomically each epoch (4 kB an epoch for the paper's net). On resume the rows after
    the checkpoint's epoch are dropped, and a run without the file starts it at that epoch."""

    def __init__(self, path: Path, start_epoch: int, model):
        self.path, self.epochs, self.rows = path, [], {}
        if start_epoch > 0 and path.is_file():
            old = torch.load(path, map_location="cpu", weights_only=True)
            keep = [i for i, e in enumerate(old["epochs"]) if e <= start_epoch]
            self.epochs = [old["epochs"][i] for i in keep]
            self.rows = {l: [p[i] for i in keep] for l, p in old["layers"].items()}
        if not self.epochs or self.epochs[-1] != start_epoch:
            self.append(start_epoch, model)

    def append(self, epoch: int, model) -> None:
        if not any(hasattr(lin, "positions") for lin in model.layers):
            return
        self.epochs.append(epoch)
        for l, lin in enumerate(model.layers, start=1):
            if hasattr(lin, "positions"):
                self.rows.setdefault(str(l), []).append(lin.positions.detach().float().cpu().clone())
        save_torch(self.path, {"epochs": self.epochs, "layers": {l: torch.stack(r) for l, r in self.rows.items()}})


def load_positions(run_dir) -> dict:
    """``{"epochs": [0, 1, ...], "layers": {"l": (E, N_l, D) float32 tensor}}`` of a run folder
    (or of the folder of a checkpoint path); FileNotFoundError names what is missing."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        run_dir = run_dir.parent
    path = run_dir / POSITIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: train the run with this version of spatialnet "
                                f"(positions are saved after every epoch), or give a run folder")
    return torch.load(path, map_location="cpu", weights_only=True)
