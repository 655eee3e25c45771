"""The training stage: the loop with checkpoints, resuming and DDP (``loop.py``), the float32
master weights (``optim.py``), checkpoints (``checkpoint.py``) and the positions' per-epoch
record (``positions.py``)."""
from .loop import NonFiniteLossError, init_distributed_from_env, resolve_device, set_threads, train

__all__ = ["NonFiniteLossError", "init_distributed_from_env", "resolve_device", "set_threads", "train"]
