"""Training, evaluation before/after the split, checkpoints and resuming, one or many processes.

One process: ``train(cfg, out_dir)``. Many: ``torchrun --nproc-per-node=N -m spatialnet train ...``
wraps the model in DistributedDataParallel (gloo on CPU, nccl on GPU). Every process draws the
same global batch and takes a strided shard of it; each shard's loss is its summed cross-entropy
times ``world_size / global_batch``, so DDP's gradient average equals the gradient of the global
batch's mean loss, as in one process (the spatial loss, the same on every process, averages to
itself).

Each epoch ends with an atomic ``checkpoint.pt`` (state dicts + config, loadable with
``torch.load(weights_only=True)``) and ``metrics.json``; a killed run loses at most its current
epoch, and ``resume=True`` continues from the last checkpoint. A non-finite loss stops training
with :class:`NonFiniteLossError` and leaves the last good checkpoint in place.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from . import data as data_mod
from ._io import save_torch, write_json
from .model import SpatialMLP, check_spatial_layers
from .split import model_split, task_masks

CHECKPOINT_FORMAT = "spatialnet-checkpoint"
CHECKPOINT_VERSION = 1
NETS = ("regular", "spatial")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")


class NonFiniteLossError(ValueError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults: the paper's setup plus the choices documented in
    results/README.md (epochs, transport normalisation, schedule)."""
    mode: str = "concat"
    net: str = "spatial"
    seed: int = 0
    epochs: int = 14
    hidden: list = field(default_factory=lambda: [128, 128, 128, 256])
    spatial_layers: list = field(default_factory=lambda: [3, 4, 5])
    alpha: float = 1.0
    beta: float = 3.0
    lr: float = 0.005
    batch_size: int = 256
    optimizer: str = "adam"
    schedule: str = "cosine"
    transport_norm: str = "paper"
    density_norm: str = "paper"
    activation: str = "sigmoid"
    dim: int = 2
    init: str = "glorot"
    init_gain: float = 4.0
    head_offset: float = 0.0
    pos_lr_scale: float = 1.0  # learning rate of the positions = lr * pos_lr_scale
    cost_warmup: float = 0.0    # epochs over which the spatial loss ramps linearly from 0 to full
    threads: int = 1            # torch and numba threads per process (not part of the identity)
    data: str = "full"          # full | subset | auto
    max_train: int = 0          # >0: use only this many training images per dataset (probes)

    def validate(self) -> "TrainConfig":
        data_mod.check_mode(self.mode)
        if self.net not in NETS:
            raise ValueError(f"net must be one of {NETS}, got {self.net!r}")
        for name in ("epochs", "batch_size", "seed", "max_train", "dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int, got {v!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.max_train < 0:
            raise ValueError(f"epochs and batch_size must be >= 1 and max_train >= 0, got "
                             f"epochs={self.epochs}, batch_size={self.batch_size}, max_train={self.max_train}")
        if not isinstance(self.hidden, (list, tuple)) or not self.hidden:
            raise ValueError(f"hidden must be a non-empty list of widths, got {self.hidden!r}")
        for h in self.hidden:
            if isinstance(h, bool) or not isinstance(h, int) or h < 1:
                raise ValueError(f"hidden widths must be positive ints, got {self.hidden!r}")
        check_spatial_layers(list(self.spatial_layers), len(self.hidden) + 1)
        if not self.spatial_layers:
            raise ValueError("spatial_layers must name at least one layer (the split starts at the lowest)")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        for name in ("alpha", "beta"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.data not in ("full", "subset", "auto"):
            raise ValueError(f"data must be 'full', 'subset' or 'auto', got {self.data!r}")
        return self

    @property
    def sizes(self) -> list[int]:
        return [data_mod.input_dim(self.mode), *self.hidden, data_mod.NUM_TASKS * data_mod.NUM_CLASSES]

    @property
    def split_layers(self) -> list[int]:
        """The layers split for evaluation: lowest spatial layer .. output, for both nets."""
        return list(range(min(self.spatial_layers), len(self.hidden) + 2))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"], d["spatial_layers"] = list(self.hidden), list(self.spatial_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise TypeError(f"config must be a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"config has unknown keys {sorted(unknown)}")
        return cls(**d).validate()


def build_model(cfg: TrainConfig) -> SpatialMLP:
    """The spatial net, or the regular one: the same MLP without costs (and without positions)."""
    torch.manual_seed(cfg.seed)
    spatial = list(cfg.spatial_layers) if cfg.net == "spatial" else []
    return SpatialMLP(cfg.sizes, spatial, cfg.activation, dim=cfg.dim, transport_norm=cfg.transport_norm,
                      density_norm=cfg.density_norm, init=cfg.init, init_gain=cfg.init_gain,
                      head_offset=cfg.head_offset if cfg.net == "spatial" else 0.0)


def set_threads(n: int) -> None:
    """Threads for torch and for the numba kernels. NOTE: the numba costs take 33 ms/step with 2
    threads on a busy 2-core box and 4 ms with 1, so one thread per process is the default."""
    torch.set_num_threads(n)
    try:
        import numba
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass


def load_data(cfg: TrainConfig, data_dir=None, dataset: data_mod.DoubleMNIST | None = None) -> data_mod.TaskData:
    ds = dataset if dataset is not None else data_mod.load(cfg.data, data_dir)
    if cfg.max_train:
        t = ds.train
        ds = data_mod.DoubleMNIST(data_mod.Split(t.mnist_x[:cfg.max_train], t.mnist_y[:cfg.max_train],
                                                 t.fashion_x[:cfg.max_train], t.fashion_y[:cfg.max_train]),
                                  ds.test, ds.source)
    return data_mod.TaskData(ds, cfg.mode, cfg.seed)


# ---------------------------------------------------------------------------------------------
# evaluation

@torch.no_grad()
def task_accuracy(model, x, y, task: int, masks=None, batch: int = 4096) -> float:
    model.eval()
    correct = 0
    lo = task * data_mod.NUM_CLASSES
    device = next(model.parameters()).device
    for s in range(0, len(x), batch):
        logits = model(x[s:s + batch].to(device), masks)[:, lo:lo + data_mod.NUM_CLASSES]
        correct += (logits.argmax(1) == y[s:s + batch].to(device)).sum().item()
    model.train()
    return correct / max(len(x), 1)


def evaluate(model: SpatialMLP, cfg: TrainConfig, td: data_mod.TaskData) -> dict:
    """Per-task accuracy of the full network and of each task's subnetwork (other tasks'
    neurons disabled in the split layers); ``full``/``split`` are the means over the tasks."""
    assignment = model_split(model, cfg.split_layers, data_mod.NUM_TASKS)
    full, split = [], []
    for t, (x, y) in enumerate(td.test_sets):
        full.append(task_accuracy(model, x, y, t))
        split.append(task_accuracy(model, x, y, t, task_masks(assignment, t)))
    sizes = {str(l): [int((g == t).sum()) for t in range(data_mod.NUM_TASKS)] for l, g in assignment.items()}
    return {"full": sum(full) / len(full), "split": sum(split) / len(split),
            "full_per_task": full, "split_per_task": split,
            "drop": sum(full) / len(full) - sum(split) / len(split), "split_sizes": sizes}


# ---------------------------------------------------------------------------------------------
# checkpoints

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


# ---------------------------------------------------------------------------------------------
# training

def _make_optimizer(model, cfg: TrainConfig, total_steps: int):
    opt_cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.SGD
    kw = {"momentum": 0.9} if cfg.optimizer == "sgd" else {}
    pos = [p for n, p in model.named_parameters() if n.endswith("positions")]
    rest = [p for n, p in model.named_parameters() if not n.endswith("positions")]
    groups = [{"params": rest}] + ([{"params": pos, "lr": cfg.lr * cfg.pos_lr_scale}] if pos else [])
    opt = opt_cls(groups, lr=cfg.lr, **kw)
    if cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return opt, sched


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed_from_env(device: str = "auto") -> bool:
    """Starts the process group when launched by torchrun (WORLD_SIZE > 1): nccl when the
    processes train on CUDA, gloo on CPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dev = resolve_device(device)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        return True
    return False


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: this process's GPU (``cuda:$LOCAL_RANK``) when CUDA is available, else the CPU."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a str, got {type(device).__name__}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device {device!r} is not a torch device: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available")
    return dev


def train(cfg: TrainConfig, out_dir, *, resume: bool = False, data_dir=None, progress: bool = True,
          dataset: data_mod.DoubleMNIST | None = None, device: str = "auto", log=print) -> dict:
    """Trains, writing ``out_dir/checkpoint.pt`` and ``out_dir/metrics.json`` every epoch; returns
    the final evaluation (see :func:`evaluate`) with the config and timing."""
    cfg.validate()
    set_threads(cfg.threads)
    out_dir = Path(out_dir)
    ckpt_path, metrics_path = out_dir / "checkpoint.pt", out_dir / "metrics.json"
    rank, world = _dist_info()
    td = load_data(cfg, data_dir, dataset)
    if td.source == "subset" and rank == 0:
        log(data_mod.SUBSET_BANNER)
    dev = resolve_device(device)
    model = build_model(cfg).to(dev)
    steps = td.steps_per_epoch(cfg.batch_size)
    opt, sched = _make_optimizer(model, cfg, steps * cfg.epochs)
    start_epoch, history = 0, []
    if resume and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        old, new = ckpt["config"].to_dict(), cfg.to_dict()
        old.pop("threads"), new.pop("threads")
        if old != new:
            diff = {k: (v, new[k]) for k, v in old.items() if new[k] != v}
            raise ValueError(f"--resume: checkpoint {ckpt_path} was made with another config "
                             f"(checkpoint vs now: {diff})")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start_epoch, history = ckpt["epoch"], ckpt["history"]
        if rank == 0:
            log(f"resuming {ckpt_path} after epoch {start_epoch}")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None)
    use_costs = cfg.net == "spatial"
    t0 = time.time()
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm
        bar = tqdm(total=cfg.epochs, initial=start_epoch, desc=f"{cfg.mode}/{cfg.net}/seed{cfg.seed}",
                   unit="epoch", dynamic_ncols=True)
    for epoch in range(start_epoch, cfg.epochs):
        ce_sum = sp_sum = 0.0
        for step, (x, y, task) in enumerate(td.epoch_batches(epoch, cfg.batch_size)):
            B = len(x)
            x, y = x[rank::world].to(dev), y[rank::world].to(dev)
            task = task[rank::world].to(dev) if task is not None else None
            loss = data_mod.task_loss_sum(net(x), y, task) * (world / B)
            ce_val = loss.detach()
            if use_costs:
                sp = model.spatial_loss(cfg.alpha, cfg.beta)
                if cfg.cost_warmup > 0:
                    sp = sp * min(1.0, (epoch + step / steps) / cfg.cost_warmup)
                loss = loss + sp
                sp_sum += sp.item()
            finite = torch.isfinite(loss.detach()).float()
            if world > 1:  # every process stops together, none is left waiting in backward
                dist.all_reduce(finite, op=dist.ReduceOp.MIN)
            if not finite.item():
                raise NonFiniteLossError(
                    f"loss became {loss.item() if world == 1 else 'non-finite on some process'} at epoch "
                    f"{epoch + 1}, step {step + 1} "
                    f"(lr={cfg.lr}, alpha={cfg.alpha}, beta={cfg.beta}); training stopped, the last good "
                    f"checkpoint is kept at {ckpt_path if ckpt_path.exists() else '(none yet)'}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            ce_sum += ce_val.item()
        record = {"epoch": epoch + 1, "task_loss": ce_sum / steps, "spatial_loss": sp_sum / steps,
                  "seconds": round(time.time() - t0, 2)}
        if rank == 0:
            ev = evaluate(model, cfg, td)
            record.update(full=ev["full"], split=ev["split"])
            history.append(record)
            save_checkpoint(ckpt_path, model, opt, sched, cfg, epoch + 1, history)
            write_json(metrics_path, {"config": cfg.to_dict(), "data": td.source, "history": history})
            if bar is not None:
                bar.set_postfix(loss=f"{record['task_loss']:.3f}", sp=f"{record['spatial_loss']:.3f}",
                                full=f"{ev['full']:.3f}", split=f"{ev['split']:.3f}")
                bar.update(1)
        if world > 1:
            dist.barrier()
    if bar is not None:
        bar.close()
    result = evaluate(model, cfg, td) if rank == 0 else {}
    result.update(config=cfg.to_dict(), data=td.source, train_seconds=round(time.time() - t0, 2))
    if rank == 0:
        write_json(out_dir / "result.json", result)
    return result
