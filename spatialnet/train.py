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

A step never waits for the device: the data sit on the training device, the losses and the
finite check are accumulated there, and the host reads them once every ``sync_every`` steps
and at the end of an epoch. The test-set evaluation and the split run at the end of training
and, with ``eval_every = K``, after every K-th epoch.
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
from .modularity import measures
from .split import model_split, task_masks
from .tasks import DEFAULT_TASKS, check_tasks

CHECKPOINT_FORMAT = "spatialnet-checkpoint"
CHECKPOINT_VERSION = 1
NETS = ("regular", "spatial")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
# how a run is executed, not what it computes: a checkpoint resumes whatever these are
RUNTIME_KEYS = ("threads", "eval_every", "compile")
WEIGHT_DTYPES = ("float32", "bfloat16")
WIDTH_RULES = ("auto", "none")
PAPER_MEAN_HIDDEN = 160  # (128 + 128 + 128 + 256) / 4
SYNC_EVERY = 100  # steps between host reads of the loss sums and the finite flag


class NonFiniteLossError(ValueError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults: the paper's setup (net, alpha = 1, beta = 3, Adam
    at lr 0.005, batch 256) with the recipe that reproduces its Table 1 where it is silent or
    where its printed formula differs from its authors' code (results/README.md): transport as
    the mean over connections, Glorot-uniform init with gain 1, a constant lr, 30 epochs."""
    mode: str = "concat"
    net: str = "spatial"
    seed: int = 0
    epochs: int = 30
    hidden: list = field(default_factory=lambda: [128, 128, 128, 256])
    spatial_layers: list = field(default_factory=lambda: [3, 4, 5])
    tasks: list = field(default_factory=lambda: list(DEFAULT_TASKS))
    alpha: float = 1.0
    beta: float = 3.0
    lr: float = 0.005
    batch_size: int = 256
    optimizer: str = "adam"
    schedule: str = "constant"
    transport_norm: str = "mean"
    density_norm: str = "paper"
    activation: str = "sigmoid"
    dim: int = 2
    init: str = "glorot"
    init_gain: float = 1.0
    head_offset: float = 0.0
    pos_lr_scale: float = 1.0  # learning rate of the positions = lr * pos_lr_scale
    width_rule: str = "auto"   # auto: alpha and the weights' lr follow the width (see effective())
    cost_warmup: float = 0.0    # epochs over which the spatial loss ramps linearly from 0 to full
    threads: int = 1            # torch and numba threads per process (not part of the identity)
    data: str = "full"          # full | subset | auto
    max_train: int = 0          # >0: use only this many training images per dataset (probes)
    weight_dtype: str = "float32"  # bfloat16: weights and biases (not positions) in bf16; GPU (triton)
    eval_every: int = 0         # >0: also evaluate and split after every K-th epoch (not identity)
    compile: bool = False       # torch.compile the step's loss, forward and backward (not identity)

    def validate(self) -> "TrainConfig":
        data_mod.check_mode(self.mode)
        if self.net not in NETS:
            raise ValueError(f"net must be one of {NETS}, got {self.net!r}")
        for name in ("epochs", "batch_size", "seed", "max_train", "dim", "eval_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int, got {v!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.max_train < 0 or self.eval_every < 0:
            raise ValueError(f"epochs and batch_size must be >= 1, max_train and eval_every >= 0, got "
                             f"epochs={self.epochs}, batch_size={self.batch_size}, max_train={self.max_train}, "
                             f"eval_every={self.eval_every}")
        self.tasks = list(check_tasks(self.tasks))
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
        if self.width_rule not in WIDTH_RULES:
            raise ValueError(f"width_rule must be one of {WIDTH_RULES}, got {self.width_rule!r}")
        if self.weight_dtype not in WEIGHT_DTYPES:
            raise ValueError(f"weight_dtype must be one of {WEIGHT_DTYPES}, got {self.weight_dtype!r}")
        if not isinstance(self.compile, bool):
            raise TypeError(f"compile must be a bool, got {self.compile!r}")
        if self.data not in ("full", "subset", "auto"):
            raise ValueError(f"data must be 'full', 'subset' or 'auto', got {self.data!r}")
        return self

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def sizes(self) -> list[int]:
        return [data_mod.input_dim(self.mode, self.num_tasks), *self.hidden, self.num_tasks * data_mod.NUM_CLASSES]

    @property
    def split_layers(self) -> list[int]:
        """The layers split for evaluation: lowest spatial layer .. output, for both nets."""
        return list(range(min(self.spatial_layers), len(self.hidden) + 2))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"], d["spatial_layers"], d["tasks"] = list(self.hidden), list(self.spatial_layers), list(self.tasks)
        return d

    @property
    def width_factor(self) -> float:
        """w = the mean hidden width over the paper's (160), at least 1; 1 without the width rule."""
        if self.width_rule == "none":
            return 1.0
        return max(1.0, sum(self.hidden) / len(self.hidden) / PAPER_MEAN_HIDDEN)

    def effective(self) -> dict:
        """The values training uses. The width rule (results/wide.md), for a net w times the
        paper's width: the transport weight grows as w^1.5 and the weights' Adam lr falls as
        1/w, while the positions keep their lr (lr * pos_lr_scale). At w = 1 it changes nothing."""
        w = self.width_factor
        return {"width_factor": w, "alpha": self.alpha * w ** 1.5, "lr": self.lr / w,
                "pos_lr": self.lr * self.pos_lr_scale, "beta": self.beta}

    def identity(self) -> dict:
        """What the run computes: the config without the runtime keys (threads, eval_every)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_KEYS}

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
    model = SpatialMLP(cfg.sizes, spatial, cfg.activation, dim=cfg.dim, transport_norm=cfg.transport_norm,
                       density_norm=cfg.density_norm, init=cfg.init, init_gain=cfg.init_gain,
                       head_offset=cfg.head_offset if cfg.net == "spatial" else 0.0, num_heads=cfg.num_tasks)
    return model.weights_to(getattr(torch, cfg.weight_dtype))


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
    return data_mod.TaskData(ds, cfg.mode, cfg.seed, cfg.tasks)


# ---------------------------------------------------------------------------------------------
# evaluation

@torch.no_grad()
def task_accuracy(model, x, y, task: int, masks=None, batch: int = 4096) -> float:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    lo = task * data_mod.NUM_CLASSES
    correct = torch.zeros((), dtype=torch.long, device=device)
    for s in range(0, len(x), batch):
        logits = model(x[s:s + batch].to(device), masks)[:, lo:lo + data_mod.NUM_CLASSES]
        correct += (logits.argmax(1) == y[s:s + batch].to(device)).sum()
    model.train(was_training)
    return correct.item() / max(len(x), 1)


def evaluate(model: SpatialMLP, cfg: TrainConfig, td: data_mod.TaskData) -> dict:
    """Per-task accuracy of the full network and of each task's subnetwork (other tasks' and
    dead neurons disabled in the split layers), ``full``/``split`` the means over the tasks,
    and the modularity measures of the split (``modularity.py``)."""
    assignment = model_split(model, cfg.split_layers, cfg.num_tasks)
    full, split = [], []
    for t, (x, y) in enumerate(td.test_sets):
        full.append(task_accuracy(model, x, y, t))
        split.append(task_accuracy(model, x, y, t, task_masks(assignment, t)))
    sizes = {str(l): [int((g == t).sum()) for t in range(cfg.num_tasks)] for l, g in assignment.items()}
    mean_full, mean_split = sum(full) / len(full), sum(split) / len(split)
    return {"tasks": list(cfg.tasks), "full": mean_full, "split": mean_split,
            "full_per_task": full, "split_per_task": split, "drop": mean_full - mean_split,
            "split_sizes": sizes, **measures(model, assignment)}


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
    eff = cfg.effective()
    groups = [{"params": rest}] + ([{"params": pos, "lr": eff["pos_lr"]}] if pos else [])
    opt = opt_cls(groups, lr=eff["lr"], **kw)
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


def _step_loss_fn(net, model: SpatialMLP, cfg: TrainConfig):
    """``(task loss, spatial loss)`` of a shard, the task loss scaled by ``world / global batch``
    (see the module docstring); compiled with torch.compile when ``cfg.compile``."""
    use_costs = cfg.net == "spatial"
    eff = cfg.effective()

    def step_loss(x, y, task, task_scale: float):
        loss = data_mod.task_loss_sum(net(x), y, task) * task_scale
        sp = model.spatial_loss(eff["alpha"], eff["beta"]) if use_costs else loss.new_zeros(())
        return loss, sp

    # dynamic=False: a batch has one of two sizes (full, last), each compiled once
    return torch.compile(step_loss, dynamic=False) if cfg.compile else step_loss


def _nonfinite_error(epoch, step, value, world, cfg, ckpt_path) -> NonFiniteLossError:
    what = f"{value:g}" if world == 1 else "non-finite on some process"
    return NonFiniteLossError(
        f"loss became {what} at epoch {epoch + 1}, step {step + 1} (lr={cfg.lr}, alpha={cfg.alpha}, "
        f"beta={cfg.beta}); training stopped, the last good checkpoint is kept at "
        f"{ckpt_path if ckpt_path.exists() else '(none yet)'}")


def train(cfg: TrainConfig, out_dir, *, resume: bool = False, data_dir=None, progress: bool = True,
          dataset: data_mod.DoubleMNIST | None = None, device: str = "auto", log=print,
          sync_every: int = SYNC_EVERY) -> dict:
    """Trains, writing ``out_dir/checkpoint.pt`` and ``out_dir/metrics.json`` every epoch; returns
    the final evaluation (see :func:`evaluate`) with the config and timing."""
    cfg.validate()
    set_threads(cfg.threads)
    out_dir = Path(out_dir)
    ckpt_path, metrics_path = out_dir / "checkpoint.pt", out_dir / "metrics.json"
    rank, world = _dist_info()
    dev = resolve_device(device)
    td = load_data(cfg, data_dir, dataset).to(dev)
    if td.source == "subset" and rank == 0:
        log(data_mod.SUBSET_BANNER)
    model = build_model(cfg).to(dev)
    steps = td.steps_per_epoch(cfg.batch_size)
    opt, sched = _make_optimizer(model, cfg, steps * cfg.epochs)
    start_epoch, history = 0, []
    if resume and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        old, new = ckpt["config"].identity(), cfg.identity()
        if old != new:
            diff = {k: (v, new.get(k)) for k, v in old.items() if new.get(k) != v}
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
    step_loss = _step_loss_fn(net, model, cfg)
    t0 = time.time()
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm
        bar = tqdm(total=cfg.epochs, initial=start_epoch, desc=f"{cfg.mode}/{cfg.net}/seed{cfg.seed}",
                   unit="epoch", dynamic_ncols=True)
    ev = None
    for epoch in range(start_epoch, cfg.epochs):
        # on the device: [task loss, spatial loss] sums, and the first non-finite step and its loss
        sums = torch.zeros(2, device=dev)
        bad_step = torch.full((), -1, dtype=torch.long, device=dev)
        bad_loss = torch.zeros((), device=dev)
        for step, (x, y, task) in enumerate(td.epoch_batches(epoch, cfg.batch_size)):
            B = len(x)
            x, y = x[rank::world], y[rank::world]
            task = task[rank::world] if task is not None else None
            loss, sp = step_loss(x, y, task, world / B)
            if cfg.cost_warmup > 0:
                sp = sp * min(1.0, (epoch + step / steps) / cfg.cost_warmup)
            total = loss + sp
            with torch.no_grad():
                sums += torch.stack([loss, sp])
                first = ~torch.isfinite(total) & (bad_step < 0)
                bad_step = torch.where(first, step, bad_step)
                bad_loss = torch.where(first, total, bad_loss)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            sched.step()
            if (step + 1) % sync_every == 0 or step + 1 == steps:
                # the one host read per interval; every process stops together, none is left in backward
                flag = bad_step.clone()
                if world > 1:
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                if flag.item() >= 0:
                    raise _nonfinite_error(epoch, int(flag.item()), float(bad_loss), world, cfg, ckpt_path)
        task_loss, sp_loss = (sums / steps).tolist()
        record = {"epoch": epoch + 1, "task_loss": task_loss, "spatial_loss": sp_loss,
                  "seconds": round(time.time() - t0, 2)}
        last = epoch + 1 == cfg.epochs
        if rank == 0:
            ev = None
            if last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0):
                ev = evaluate(model, cfg, td)
                record.update(full=ev["full"], split=ev["split"], cross_task_share=ev["cross_task_share"])
            history.append(record)
            save_checkpoint(ckpt_path, model, opt, sched, cfg, epoch + 1, history)
            write_json(metrics_path, {"config": cfg.to_dict(), "data": td.source, "history": history})
            if bar is not None:
                post = dict(loss=f"{task_loss:.3f}", sp=f"{sp_loss:.3f}")
                if ev is not None:
                    post.update(full=f"{ev['full']:.3f}", split=f"{ev['split']:.3f}")
                bar.set_postfix(post)
                bar.update(1)
        if world > 1:
            dist.barrier()
    if bar is not None:
        bar.close()
    result = {}
    if rank == 0:
        result = ev if ev is not None else evaluate(model, cfg, td)
        result.update(config=cfg.to_dict(), effective=cfg.effective(), data=td.source,
                      train_seconds=round(time.time() - t0, 2))
        write_json(out_dir / "result.json", result)
    return result
