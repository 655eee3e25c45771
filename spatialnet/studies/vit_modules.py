"""Does each block's MLP of a timm ViT form task modules under the spatial costs, and where in
the depth? A small ViT on the 28x56 MNIST | Fashion-MNIST image (patch 4, two 10-way heads in
one 20-way head), trained with and without the costs from one seed, side by side.

    python -m spatialnet.studies.vit_modules --out results/vit-modules

The costs (spatial_kernels.nn.spatialize) go on every block's mlp.fc1 and mlp.fc2 and on the head:
the sheets inferred are one hidden sheet per block and one residual-stream sheet (every fc2
writes it, every fc1 reads it through its LayerNorm); the head, which reads the class token, is
named onto that sheet; plus the 20 outputs.

Per block, the paper's greedy backward split (spatialnet.split.greedy_split) goes head ->
residual (head weights) -> the block's hidden neurons (its fc2 weights); the block's modularity
is spatialnet.modularity.chain_measures of that chain. "MLP split" accuracy: each task evaluated
with every block's hidden neurons of the other task (and the dead ones) silenced.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch

from spatial_kernels.nn import spatialize

from ..analysis.modularity import chain_measures
from ..analysis.split import DEAD_TOL, greedy_split
from ..data import task_loss_sum
from .timing import accuracy, as_image, concat_data, time_steps

LAYERS = ["blocks.*.mlp.fc1", "blocks.*.mlp.fc2", "head"]
# the head reads the class token (x[:, 0], not element-wise): named onto the residual stream
SHEETS = {"head": ("residual", None), "blocks.0.mlp.fc2": (None, "residual")}


def make_vit(a, seed: int):
    import timm

    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=(28, 56), patch_size=a.patch, in_chans=1,
                             embed_dim=a.dim, depth=a.depth, num_heads=a.heads, num_classes=20)


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or a cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def loss_fn(model, x, y):
    return task_loss_sum(model(as_image(x)), y, None) / len(x)


def block_split(model, costs):
    """Per block: the greedy split of hidden <- residual <- heads, and the chain's measures."""
    heads = torch.arange(20) // 10
    out = []
    for b, blk in enumerate(model.blocks):
        W1, W2, Wh = blk.mlp.fc1.weight.detach(), blk.mlp.fc2.weight.detach(), model.head.weight.detach()
        g_hidden, g_res, g_out = greedy_split([W1, W2, Wh], heads, 2, DEAD_TOL)
        pos = None
        if costs is not None:
            pos = [costs.positions_of(f"blocks.{b}.mlp.fc1", "out").detach(),
                   costs.positions_of(f"blocks.{b}.mlp.fc2", "out").detach(), None]
        m = chain_measures([g_hidden, g_res, g_out], 2, weights=[None, W2, Wh], positions=pos,
                           names=["hidden", "residual", "head"])
        out.append({"groups": g_hidden, "measures": m})
    return out


@torch.no_grad()
def mlp_split_accuracy(model, td, splits) -> list[float]:
    """Task t's accuracy with every block's hidden neurons not in task t silenced (fc2's input)."""
    accs = []
    for t in range(2):
        hooks = [blk.mlp.fc2.register_forward_pre_hook(
            lambda mod, args, keep=(s["groups"] == t).float(): (args[0] * keep,))
            for blk, s in zip(model.blocks, splits)]
        accs.append(accuracy(model, td, as_image)[t])
        for h in hooks:
            h.remove()
    return accs


def train(a, variant: str, seed: int, td):
    model = make_vit(a, seed)
    costs = spatialize(model, LAYERS, sheets=SHEETS, density_norm=a.density_norm, generator=torch.Generator().manual_seed(seed)) \
        if variant == "spatial" else None
    groups = costs.param_groups(model, lr=a.lr, position_lr=a.lr * a.pos_lr_scale, weight_decay=a.wd) if costs \
        else [{"params": list(model.parameters()), "weight_decay": a.wd}]
    opt = torch.optim.AdamW(groups, lr=a.lr)
    per_epoch = min(a.steps or td.steps_per_epoch(a.batch), td.steps_per_epoch(a.batch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_factor(k, a.warmup, a.epochs * per_epoch, a.schedule))
    t0, hist = time.perf_counter(), []
    for epoch in range(a.epochs):
        tot = sp = 0.0
        n = 0
        for step, (x, y, _) in enumerate(td.epoch_batches(epoch, a.batch)):
            if a.steps and step >= a.steps:
                break
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, x, y)
            tot += loss.item()
            if costs is not None:
                c = costs(a.alpha, a.beta)
                sp += c.item()
                loss = loss + c
            loss.backward()
            opt.step()
            sched.step()
            n += 1
        hist.append({"epoch": epoch + 1, "task_loss": tot / n, "spatial_loss": sp / n if costs else None,
                     "seconds": time.perf_counter() - t0})
        print(f"[{variant} seed {seed}] epoch {epoch + 1}: task loss {tot / n:.4f}"
              + (f", costs {sp / n:.3f}" if costs else "") + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
    train_s = time.perf_counter() - t0
    acc = accuracy(model, td, as_image)
    splits = block_split(model, costs)
    rec = {"variant": variant + (a.tag if variant == "spatial" else ""), "seed": seed, "alpha": a.alpha, "beta": a.beta, "accuracy": acc, "mlp_split_accuracy": mlp_split_accuracy(model, td, splits),
           "train_seconds": train_s, "history": hist,
           "blocks": [s["measures"] for s in splits]}
    if costs is not None:
        rec["sheets"] = {s.name: s.size for s in costs.sheets.values()}
        batches = ((x, y) for x, y, _ in td.epoch_batches(10_000 + seed, a.batch))
        rec["step_timing"] = time_steps(model, costs, batches, loss_fn, a.lr, a.alpha, a.beta, a.timing_pairs)
    return rec


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None,
                   help="data folder (else $SPATIALNET_DATA, else ~/.cache/spatialnet)")
    p.add_argument("--out", default="results/vit-modules")
    p.add_argument("--seeds", default="0")
    p.add_argument("--variants", default="plain,spatial", help="plain (no costs) and/or spatial")
    p.add_argument("--tag", default="", help="appended to the spatial variant's name in the records")
    p.add_argument("--patch", type=int, default=4, help="patch side; 28 must be a multiple (4, 7, 14)")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--dim", type=int, default=96)
    p.add_argument("--heads", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--steps", type=int, default=0, help="batches per epoch (0: the whole training set)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=0.05)
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--warmup", type=int, default=0, help="steps of linear learning-rate warm-up")
    p.add_argument("--pos-lr-scale", type=float, default=1.0)
    p.add_argument("--alpha", type=float, default=9.0)
    p.add_argument("--beta", type=float, default=20.0)
    p.add_argument("--density-norm", choices=("neuron", "paper"), default="neuron")
    p.add_argument("--timing-pairs", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    if not set(a.variants.split(",")) <= {"plain", "spatial"}:
        p.error(f"--variants: plain and/or spatial, got {a.variants!r}")
    if a.patch < 1 or 28 % a.patch:
        p.error(f"--patch must divide 28 (each patch then lies in one task's image), got {a.patch}")
    torch.set_num_threads(a.threads)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(a.threads))
    records = []
    for seed in (int(s) for s in a.seeds.split(",")):
        td = concat_data(seed, a.data_dir)
        for variant in a.variants.split(","):
            records.append(train(a, variant, seed, td))
            Path(a.out + ".json").write_text(json.dumps({"config": vars(a), "runs": records}, indent=1))
    print(f"wrote {a.out}.json")


if __name__ == "__main__":
    main()
