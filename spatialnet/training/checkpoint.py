"""Checkpoints: state dicts and config in one file, written atomically, loadable with
``torch.load(weights_only=True)``, checked when read."""
from __future__ import annotations

from pathlib import Path

import torch

from .._io import save_torch
from ..config import TrainConfig
from ..model import SpatialMLP, build_model

CHECKPOINT_FORMAT = "spatialnet-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path, model, optimizer, scheduler, cfg: TrainConfig, epoch: int, history: list) -> None:
    save_torch(path, {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": cfg.to_dict(),
        "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "history": history,
    })


def load_checkpoint(path) -> dict:
    """A checked checkpoint dict; ValueError for corrupt or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"checkpoint {path} is corrupt or not a torch file: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} is not a spatialnet checkpoint (no format={CHECKPOINT_FORMAT!r})")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {path} has version {ckpt.get('version')!r}, expected {CHECKPOINT_VERSION}")
    for key in ("config", "epoch", "model", "optimizer", "scheduler", "history"):
        if key not in ckpt:
            raise ValueError(f"checkpoint {path} lacks {key!r}")
    ckpt["config"] = TrainConfig.from_dict(ckpt["config"])
    return ckpt


def model_from_checkpoint(path) -> tuple[SpatialMLP, TrainConfig, dict]:
    ckpt = load_checkpoint(path)
    cfg = ckpt["config"]
    model = build_model(cfg)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path}: weights do not fit its config: {exc}") from exc
    return model, cfg, ckpt


def load_run(run_dir) -> tuple[SpatialMLP, TrainConfig, dict]:
    """``(model, config, positions track)`` of a run folder (or of the folder of a checkpoint
    path): its last checkpoint and its positions epoch by epoch (``positions.load_positions``)."""
    from .positions import load_positions
    run_dir = Path(run_dir)
    if run_dir.is_file():
        run_dir = run_dir.parent
    model, cfg, _ = model_from_checkpoint(run_dir / "checkpoint.pt")
    return model, cfg, load_positions(run_dir)
