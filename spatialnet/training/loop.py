"""Training: one loop, :func:`fit`, for any model and its costs, and :func:`train`, the paper's
MLP through it with checkpoints, resuming, evaluation and DDP.

``fit`` steps an optimiser over a model's task loss plus its spatial costs (ramped up over a
warm-up), epoch by epoch, never waiting for the device within an epoch: the losses and the finite
check are accumulated where the model is, and the host reads them every ``sync_every`` steps and
at the end of an epoch. A non-finite loss stops it with :class:`NonFiniteLossError`.

``train(cfg, out_dir)`` builds the net of a ``TrainConfig`` and fits it. One process, or many:
``torchrun --nproc-per-node=N -m spatialnet train ...`` wraps the model in
DistributedDataParallel (gloo on CPU, nccl on GPU). Every process draws the same global batch and
takes a strided shard of it; each shard's loss is its summed cross-entropy times ``world_size /
global_batch``, so DDP's gradient average equals the gradient of the global batch's mean loss, as
in one process (the spatial loss, the same on every process, averages to itself).

Each epoch ends with an atomic ``checkpoint.pt`` (state dicts + config, loadable with
``torch.load(weights_only=True)``) and ``metrics.json``; a killed run loses at most its current
epoch, ``resume=True`` continues from the last checkpoint, and a finished run on a constant
schedule continues past its last epoch when asked for more. The evaluation and the split run at
the end of training and, with ``eval_every = K``, after every K-th epoch.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.distributed as dist

from .. import data as data_mod
from .._io import write_json
from ..analysis.evaluate import evaluate
from ..config import TrainConfig
from ..data import load_data
from ..model import SpatialMLP, build_model
from .checkpoint import load_checkpoint, save_checkpoint
from .optim import LOW_PRECISION, MasterWeights
from .positions import POSITIONS_FILE, PositionTrack
from .progress import Progress
from .schedule import make_scheduler

SYNC_EVERY = 100  # steps between host reads of the loss sums and the finite flag


class NonFiniteLossError(ValueError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def set_threads(n: int) -> None:
    """Threads for torch and for the numba kernels. NOTE: the numba costs take 33 ms/step with 2
    threads on a busy 2-core box and 4 ms with 1, so one thread per process is the default."""
    torch.set_num_threads(n)
    try:
        import numba
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass


def fit(optimizer, batches: Callable[[int], Iterable], loss_fn: Callable, *, epochs: int, steps_per_epoch: int,
        costs: Callable | None = None, cost_warmup: float = 0.0, scheduler=None, start_epoch: int = 0,
        on_epoch_end: Callable | None = None, sync_every: int = SYNC_EVERY, world: int = 1,
        nonfinite: Callable | None = None, device=None) -> list[dict]:
    """Trains from ``start_epoch`` to ``epochs``; returns one record per epoch run: ``{"epoch",
    "task_loss", "spatial_loss"}`` (means over its steps).

    Args:
        optimizer: steps every parameter (and ``scheduler``, if given, steps after it).
        batches: ``batches(epoch)`` gives the epoch's ``(x, y, task)`` batches.
        loss_fn: ``loss_fn(x, y, task) -> (task loss, spatial loss)`` of a batch, the spatial
            loss at full strength (a zero tensor without costs), or ``-> task loss`` with
            ``costs`` giving the spatial loss: ``costs() -> tensor``.
        cost_warmup: epochs over which the spatial loss ramps up linearly from 0.
        on_epoch_end: ``on_epoch_end(record)`` after each epoch (checkpoints, evaluation); it
            may add to the record.
        world: processes (DDP): the non-finite flag is reduced over them.
        nonfinite: ``nonfinite(epoch, step, value) -> Exception`` for a non-finite loss
            (default :class:`NonFiniteLossError` naming the step).
    """
    history = []
    for epoch in range(start_epoch, epochs):
        # on the device: [task loss, spatial loss] sums, and the first non-finite step and its loss
        sums = torch.zeros(2, device=device)
        bad_step = torch.full((), -1, dtype=torch.long, device=device)
        bad_loss = torch.zeros((), device=device)
        step = -1
        for step, (x, y, task) in enumerate(batches(epoch)):
            out = loss_fn(x, y, task)
            loss, sp = out if isinstance(out, tuple) else (out, costs() if costs is not None else out.new_zeros(()))
            if cost_warmup > 0:
                sp = sp * min(1.0, (epoch + step / steps_per_epoch) / cost_warmup)
            total = loss + sp
            with torch.no_grad():
                sums += torch.stack([loss.detach(), sp.detach()]).to(sums)
                first = ~torch.isfinite(total) & (bad_step < 0)
                bad_step = torch.where(first, step, bad_step)
                bad_loss = torch.where(first, total.detach().to(bad_loss), bad_loss)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if (step + 1) % sync_every == 0 or step + 1 == steps_per_epoch:
                # the one host read per interval; every process stops together, none is left in backward
                flag = bad_step.clone()
                if world > 1:
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                first_bad = int(flag.item())
                if first_bad >= 0:
                    value = float(bad_loss)
                    raise (nonfinite or _nonfinite)(epoch, first_bad, value)
        n = max(step + 1, 1)
        task_loss, sp_loss = (sums / n).tolist()
        record = {"epoch": epoch + 1, "task_loss": task_loss, "spatial_loss": sp_loss}
        if on_epoch_end is not None:
            on_epoch_end(record)
        history.append(record)
    return history


def _nonfinite(epoch, step, value) -> NonFiniteLossError:
    return NonFiniteLossError(f"loss became {value:g} at epoch {epoch + 1}, step {step + 1}; training stopped")


def _make_optimizer(model, cfg: TrainConfig, total_steps: int):
    opt_cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.SGD
    kw = {"momentum": 0.9} if cfg.optimizer == "sgd" else {}
    # frozen positions (the control) are left out: they never move
    pos = [p for n, p in model.named_parameters() if n.endswith("positions") and p.requires_grad]
    out_pos = getattr(model.layers[-1], "positions", None) if cfg.output_pos_lr_scale != 1.0 else None
    slow = [p for p in pos if p is out_pos]  # the output sheet at its own lr (a probe)
    pos = [p for p in pos if p is not out_pos]
    rest = [p for n, p in model.named_parameters() if not n.endswith("positions")]
    values = cfg.per_layer_values()
    # the width rule's lr per weight matrix, biases at the base lr: parameters sharing an lr share a group
    lr_of = {id(lin.weight): values.lr[l] for l, lin in enumerate(model.layers, start=1)}
    by_lr: dict[float, list] = {}
    for p in rest:
        by_lr.setdefault(lr_of.get(id(p), values.bias_lr), []).append(p)
    groups = [{"params": ps, "lr": v} for v, ps in by_lr.items()]
    groups += [{"params": pos, "lr": values.pos_lr}] if pos else []
    groups += [{"params": slow, "lr": values.pos_lr * cfg.output_pos_lr_scale}] if slow else []
    if any(p.dtype in LOW_PRECISION for p in rest):  # bf16 weights: the steps go to float32 masters
        opt = MasterWeights(groups, opt_cls, lr=values.bias_lr, **kw)
    else:
        opt = opt_cls(groups, lr=values.bias_lr, **kw)
    return opt, make_scheduler(opt, total_steps, cfg.schedule)


def _extends(old: TrainConfig, new: TrainConfig) -> bool:
    """Whether ``new`` continues the run ``old`` made past its last epoch: the same config but for
    more epochs, which a constant schedule allows (a ValueError says why not where the schedule
    would change the steps already taken)."""
    a, b = old.identity(), new.identity()
    if {k for k in a if a[k] != b.get(k)} != {"epochs"} or new.epochs <= old.epochs:
        return False
    if new.schedule != "constant":
        raise ValueError(f"--resume --epochs {new.epochs}: the run was made for {old.epochs} epochs on a "
                         f"{new.schedule} schedule, whose learning rate at every step depends on the run's length; "
                         f"only a constant schedule can be extended")
    return True


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


def _step_loss_fn(net, model: SpatialMLP, cfg: TrainConfig, rank: int, world: int):
    """``(task loss, spatial loss)`` of this process's shard of a batch, the task loss scaled by
    ``world / global batch`` (see the module docstring); compiled with torch.compile when
    ``cfg.compile``."""
    use_costs = cfg.net == "spatial"
    values = cfg.per_layer_values()

    def step_loss(x, y, task, task_scale: float):
        loss = data_mod.task_loss_sum(net(x), y, task) * task_scale
        sp = model.spatial_loss(values.alpha, values.beta) if use_costs else loss.new_zeros(())
        return loss, sp

    # dynamic=False: a batch has one of two sizes (full, last), each compiled once
    fn = torch.compile(step_loss, dynamic=False) if cfg.compile else step_loss

    def shard_loss(x, y, task):
        B = len(x)
        return fn(x[rank::world], y[rank::world], task[rank::world] if task is not None else None, world / B)

    return shard_loss


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
        if old != new and _extends(ckpt["config"], cfg):
            old = new
            if rank == 0:
                log(f"extending {ckpt_path} from {ckpt['config'].epochs} to {cfg.epochs} epochs (constant schedule)")
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
    # a resumed run's clock continues from its last saved epoch: the history's seconds and
    # train_seconds count the whole training, not only this process's part
    t0 = time.time() - (history[-1]["seconds"] if history else 0.0)
    bar = Progress(cfg.epochs, start_epoch, f"{cfg.mode}/{cfg.net}/seed{cfg.seed}", log) \
        if progress and rank == 0 else None
    track = PositionTrack(out_dir / POSITIONS_FILE, start_epoch, model) if rank == 0 else None
    if rank == 0 and start_epoch == 0 and 0 in cfg.keep_epochs:
        save_checkpoint(out_dir / "checkpoint-e0.pt", model, opt, sched, cfg, 0, [])
    last_eval = {}

    def end_of_epoch(record):
        epoch = record["epoch"]
        record["seconds"] = round(time.time() - t0, 2)
        if rank == 0:
            last_eval.clear()
            if epoch == cfg.epochs or (cfg.eval_every and epoch % cfg.eval_every == 0):
                last_eval.update(evaluate(model, cfg, td))
                record.update({k: last_eval[k] for k in ("full", "split", "cross_task_share", "share_norm",
                                                         "silhouette", "ari", "nn", "stacked", "dead_fraction")})
            history.append(record)
            save_checkpoint(ckpt_path, model, opt, sched, cfg, epoch, history)
            if epoch in cfg.keep_epochs:
                import shutil
                shutil.copyfile(ckpt_path, ckpt_path.with_name(f"checkpoint-e{epoch}.pt"))
            track.append(epoch, model)
            write_json(metrics_path, {"config": cfg.to_dict(), "data": td.source, "history": history})
            if bar is not None:
                post = dict(loss=f"{record['task_loss']:.3f}", sp=f"{record['spatial_loss']:.3f}")
                if last_eval:
                    post.update(full=f"{last_eval['full']:.3f}", split=f"{last_eval['split']:.3f}")
                bar.update(epoch, post)
        if world > 1:
            dist.barrier()

    def nonfinite(epoch, step, value):
        what = f"{value:g}" if world == 1 else "non-finite on some process"
        return NonFiniteLossError(
            f"loss became {what} at epoch {epoch + 1}, step {step + 1} (lr={cfg.lr}, alpha={cfg.alpha}, "
            f"beta={cfg.beta}); training stopped, the last good checkpoint is kept at "
            f"{ckpt_path if ckpt_path.exists() else '(none yet)'}")

    fit(opt, lambda epoch: td.epoch_batches(epoch, cfg.batch_size), _step_loss_fn(net, model, cfg, rank, world),
        epochs=cfg.epochs, steps_per_epoch=steps, cost_warmup=cfg.cost_warmup, scheduler=sched,
        start_epoch=start_epoch, on_epoch_end=end_of_epoch, sync_every=sync_every, world=world,
        nonfinite=nonfinite, device=dev)
    if bar is not None:
        bar.close()
    result = {}
    if rank == 0:
        result = dict(last_eval) if last_eval else evaluate(model, cfg, td)
        result.update(config=cfg.to_dict(), effective=cfg.per_layer_values().to_json(), data=td.source,
                      train_seconds=round(time.time() - t0, 2))
        write_json(out_dir / "result.json", result)
    return result
