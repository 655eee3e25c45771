"""Atomic writes: a temp file in the same folder, then ``os.replace``, so a reader (or a run
killed mid-write) sees the old file or the new one, never half of one."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch


def atomic(path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    atomic(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def write_text(path, text: str) -> None:
    atomic(path, lambda f: f.write(text.encode()))


def save_torch(path, obj) -> None:
    atomic(path, lambda f: torch.save(obj, f))
