"""The training stage: one loop for any model and its costs (``fit``), the paper's MLP through it
with checkpoints, resuming and DDP (``train``; ``loop.py``), the learning-rate schedules
(``schedule.py``), the float32 master weights (``optim.py``), checkpoints (``checkpoint.py``), the
positions' per-epoch record (``positions.py``), and timing a step with and without the costs
(``timing.py``)."""
from .loop import NonFiniteLossError, fit, init_distributed_from_env, resolve_device, set_threads, train
from .schedule import lr_factor, make_scheduler

__all__ = ["NonFiniteLossError", "fit", "init_distributed_from_env", "lr_factor", "make_scheduler", "resolve_device",
           "set_threads", "train"]
