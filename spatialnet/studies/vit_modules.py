"""Does each block's MLP of a timm ViT form task modules under the spatial costs, and where in
the depth? A small ViT on the 28x56 MNIST | Fashion-MNIST image (patch 4, two 10-way heads in
one 20-way head), trained with and without the costs from one seed, side by side.

    spatialnet study vit-modules       # seeds 0-1 at the derived strength, then seed 0 at 3x and 1/3

The costs (spatial_kernels.nn.spatialize) go on every block's mlp.fc1 and mlp.fc2 and on the head:
the sheets inferred are one hidden sheet per block and one residual-stream sheet (every fc2
writes it, every fc1 reads it through its LayerNorm); the head, which reads the class token, is
named onto that sheet; plus the 20 outputs.

**Strength** (``--strength derived``, the default): the width rule's two terms
(docs/width-rule.md) carried to the ViT by measurement, not by tuning. The paper's net at the
chosen setting (``config.CHOSEN["concat"]``) fixes two targets: the transport's pressure on a
trained weight against its task gradient (hidden-to-hidden layers, and the readout), from the
1x regular net of results/width-rule-gradients.json; and the transport's pull against the
density's push on a sheet at initialisation (its hidden sheets, and its output sheet). For the
ViT, each layer's alpha is set so that its pressure on a trained weight of the plain ViT of the
same seed (fc1, fc2: hidden-to-hidden; the head: the readout) meets the target, and each
sheet's beta so that its pull/push at initialisation does; each sheet's density length is
sqrt(160 / N) (the paper's mean hidden width over the sheet's; 1 for the 20 outputs).
``--scale`` multiplies every alpha and beta (3 and 1/3 beside 1).

Per block, the paper's greedy backward split (spatialnet.analysis.task_split.greedy_split) goes head ->
residual (head weights) -> the block's hidden neurons (its fc2 weights); the block's modularity
is spatialnet.analysis.modularity.chain_measures of that chain. "MLP split" accuracy: each task evaluated
with every block's hidden neurons of the other task (and the dead ones) silenced.

Training goes through ``training.fit`` with AdamW, a linear warm-up then a cosine decay
(``training.schedule``), the costs ramped up over the chosen setting's share of the run.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import time
from pathlib import Path

import torch

from spatial_kernels.nn import DENSITY_NORMS, spatialize

from ..analysis.evaluate import head_accuracy
from ..analysis.invariants import measure_invariants, radial, rms_task_gradients
from ..analysis.modularity import chain_measures
from ..analysis.task_split import DEAD_TOL, greedy_split
from ..data import task_loss_sum
from ..data.images import as_image, concat_data
from ..training import fit, make_scheduler
from ..training.timing import time_steps
from .registry import register_study
from .vit_tables import vit, vit_summary

LAYERS = ["blocks.*.mlp.fc1", "blocks.*.mlp.fc2", "head"]
# the head reads the class token (x[:, 0], not element-wise): named onto the residual stream
SHEETS = {"head": ("residual", None), "blocks.0.mlp.fc2": (None, "residual")}


def make_vit(args, seed: int):
    import timm

    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=(28, 56), patch_size=args.patch, in_chans=1,
                             embed_dim=args.dim, depth=args.depth, num_heads=args.heads, num_classes=20)


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
        accs.append(head_accuracy(model, td, as_image)[t])
        for h in hooks:
            h.remove()
    return accs


def task_gradients(model, td, names, batches: int = 8, batch: int = 128) -> dict[str, float]:
    """RMS over each named layer's weights of the task loss's gradient, over ``batches`` batches."""
    return rms_task_gradients(model, {n: model.get_submodule(n).weight for n in names},
                              itertools.islice(td.epoch_batches(20_000, batch), batches),
                              lambda m, x, y, task: loss_fn(m, x, y))


def paper_targets(gradients_json: str) -> dict:
    """The paper net's pressure on a trained weight (per layer kind) and pull/push at
    initialisation (per sheet kind) at the chosen concat setting: what the ViT's terms match."""
    from spatial_kernels.nn import transport_divisor

    from ..config import TrainConfig
    from ..data import load_data, load_subset

    cfg = TrainConfig(data="subset").validate()  # the paper's widths, the chosen concat setting
    g = json.loads(Path(gradients_json).read_text())["rows"]["1"]["trained"]  # the 1x regular net, layers 2..5
    sizes = cfg.sizes
    L = len(cfg.spatial_layers)

    def pressure(l):  # RMS of alpha / |L| c_T sign(w) d, d of N(0, I_2) positions: sqrt(E d^2) = 2
        return cfg.alpha / L / transport_divisor(cfg.transport_norm, sizes[l], sizes[l - 1]) * 2.0 / g[str(l)]

    td = load_data(cfg, dataset=load_subset())
    x, y, task = next(td.epoch_batches(0, 256))
    inv = measure_invariants(cfg, x, y, task)
    return {"pressure": {"hidden": (pressure(3) + pressure(4)) / 2, "readout": pressure(5)},
            "pull_push": {"hidden": (inv["pull_push/3"] + inv["pull_push/4"]) / 2, "output": inv["pull_push/5"]},
            "setting": {k: getattr(cfg, k) for k in ("alpha", "beta", "pos_lr_scale", "cost_warmup")}}


def derived_strength(model, costs, td, targets: dict, scale: float = 1.0) -> dict:
    """Per-layer alpha and per-sheet beta for the spatialized ViT (see the module docstring),
    from the task gradients of ``model`` (the trained plain ViT of the same seed; its weights
    are read, not changed) and the pull/push of ``costs``'s sheets at their initial positions."""
    from spatial_kernels.nn import transport_divisor

    names = costs.layers
    k = len(names)
    g = task_gradients(model, td, names)
    alpha = {}
    for n in names:
        s_in, s_out = costs.sheet(n, "in"), costs.sheet(n, "out")
        kind = "readout" if n == "head" else "hidden"
        c = 1.0 / transport_divisor(costs.transport_norm, s_out.size, s_in.size)
        alpha[n] = targets["pressure"][kind] * g[n] * k / (c * 2.0)
    # pull/push at the initial positions: the transport with these alphas, the density per unit beta
    transport = sum(costs.transport_cost(n, alpha[n] / k) for n in names)
    sheets = costs.density_sheets
    pos = [costs.positions[costs.sheets[s].key] for s in sheets]
    pulls = torch.autograd.grad(transport, pos, allow_unused=True)
    beta = {}
    for s, p, g_t in zip(sheets, pos, pulls):
        (g_v,) = torch.autograd.grad(costs.density_cost(s, 1.0 / k), p)
        pull = radial(g_t, p) if g_t is not None else 0.0
        push = -radial(g_v, p)
        kind = "output" if costs.sheets[s].size == 20 else "hidden"
        beta[s] = pull / (targets["pull_push"][kind] * push) if push > 0 else 0.0
    model.zero_grad()
    # --scale multiplies both (pull/push is then the derived one's)
    return {"alpha": {n: scale * v for n, v in alpha.items()}, "beta": {s: scale * v for s, v in beta.items()}}


def train(args, variant: str, seed: int, td, plain=None, targets=None, scale: float = 1.0, tag: str = ""):
    model = make_vit(args, seed)
    costs = None
    strength = None
    if variant == "spatial":
        gen = torch.Generator().manual_seed(seed)
        lengths = None
        if args.strength == "derived":
            probe = spatialize(model, LAYERS, sheets=SHEETS, density_norm=args.density_norm, generator=gen)
            lengths = {s.name: (1.0 if s.size == 20 else math.sqrt(160 / s.size)) for s in probe.sheets.values()}
            gen = torch.Generator().manual_seed(seed)
        costs = spatialize(model, LAYERS, sheets=SHEETS, density_norm=args.density_norm, generator=gen,
                           density_length=lengths if lengths else 1.0)
        if args.strength == "derived":
            strength = derived_strength(plain, costs, td, targets, scale)
            print(f"[{variant} seed {seed}] derived strength x{scale:g}: alpha "
                  + ", ".join(f"{n} {v:.3g}" for n, v in strength["alpha"].items()) + "; beta "
                  + ", ".join(f"{s} {v:.3g}" for s, v in strength["beta"].items()), flush=True)
    groups = costs.param_groups(model, lr=args.lr, position_lr=args.lr * args.pos_lr_scale, weight_decay=args.wd) if costs \
        else [{"params": list(model.parameters()), "weight_decay": args.wd}]
    opt = torch.optim.AdamW(groups, lr=args.lr)
    per_epoch = min(args.steps or td.steps_per_epoch(args.batch), td.steps_per_epoch(args.batch))
    sched = make_scheduler(opt, args.epochs * per_epoch, args.schedule, args.warmup)
    t0 = time.perf_counter()

    def batches(epoch):
        return ((x, y, t) for step, (x, y, t) in enumerate(td.epoch_batches(epoch, args.batch)) if step < per_epoch)

    def cost():
        return costs(strength["alpha"], strength["beta"]) if strength else costs(args.alpha, args.beta)

    def log(record):
        record["seconds"] = time.perf_counter() - t0
        if costs is None:
            record["spatial_loss"] = None
        print(f"[{variant} seed {seed}] epoch {record['epoch']}: task loss {record['task_loss']:.4f}"
              + (f", costs {record['spatial_loss']:.3f}" if costs else "") + f" ({record['seconds']:.0f} s)",
              flush=True)

    # the costs ramp up over the chosen setting's share of the run, as its warm-up
    hist = fit(opt, batches, lambda x, y, t: loss_fn(model, x, y), epochs=args.epochs, steps_per_epoch=per_epoch,
               costs=cost if costs is not None else None, cost_warmup=args.cost_warmup_frac * args.epochs,
               scheduler=sched, on_epoch_end=log)
    train_s = time.perf_counter() - t0
    acc = head_accuracy(model, td, as_image)
    splits = block_split(model, costs)
    rec = {"variant": variant + (tag if variant == "spatial" else ""), "seed": seed, "alpha": args.alpha, "beta": args.beta,
           "strength": strength, "scale": scale if variant == "spatial" else None,
           "accuracy": acc, "mlp_split_accuracy": mlp_split_accuracy(model, td, splits),
           "train_seconds": train_s, "history": hist,
           "blocks": [s["measures"] for s in splits]}
    if costs is not None:
        rec["sheets"] = {s.name: s.size for s in costs.sheets.values()}
        batches = ((x, y) for x, y, _ in td.epoch_batches(10_000 + seed, args.batch))
        rec["step_timing"] = time_steps(model, costs, batches, loss_fn, args.lr,
                                        strength["alpha"] if strength else args.alpha,
                                        strength["beta"] if strength else args.beta, args.timing_pairs)
    return rec, model


def _arguments(p) -> None:
    from ..config import CHOSEN
    chosen = CHOSEN["concat"]
    p.add_argument("--out", default="results/vit-modules")
    p.add_argument("--runs-dir", default="runs/vit-modules", help="the plain ViTs' weights, for a resumed study")
    p.add_argument("--seeds", default="0,1", help="seeds of the derived strength (default 0,1)")
    p.add_argument("--scale-seeds", default="0", help="seeds of the other --scales (default 0)")
    p.add_argument("--variants", default="plain,spatial", help="plain (no costs) and/or spatial")
    p.add_argument("--tag", default="", help="appended to the spatial variant's name in the records")
    p.add_argument("--patch", type=int, default=7, help="patch side; 28 must be a multiple (4, 7, 14)")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--dim", type=int, default=96)
    p.add_argument("--heads", type=int, default=3)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--steps", type=int, default=0, help="batches per epoch (0: the whole training set)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=0.05)
    p.add_argument("--schedule", choices=("constant", "cosine"), default="cosine")
    p.add_argument("--warmup", type=int, default=200, help="steps of linear learning-rate warm-up")
    p.add_argument("--strength", choices=("derived", "flags"), default="derived",
                   help="derived: alpha per layer and beta per sheet from the paper net's invariants (the module "
                        "docstring); flags: --alpha and --beta on every term")
    p.add_argument("--scales", default="1,3,0.333",
                   help="multiples of the derived strength, one spatial net each: the first on --seeds, the "
                        "others on --scale-seeds")
    p.add_argument("--gradients", default="results/width-rule-gradients.json",
                   help="the paper net's trained task gradients (spatialnet study width-gradients)")
    p.add_argument("--pos-lr-scale", type=float, default=chosen["pos_lr_scale"])
    p.add_argument("--cost-warmup-frac", type=float, default=chosen["cost_warmup"] / 30,
                   help="the part of the run over which the costs ramp up from 0 (the chosen setting's: its "
                        "warm-up epochs over its 30)")
    p.add_argument("--alpha", type=float, default=chosen["alpha"])
    p.add_argument("--beta", type=float, default=chosen["beta"])
    p.add_argument("--density-norm", choices=DENSITY_NORMS, default="per_pair")
    p.add_argument("--timing-pairs", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)


@register_study("vit-modules", question="Does any block of a timm ViT form task modules under the costs at the "
                                        "strength the width rule's invariants give (and at 3x and 1/3 of it), beside "
                                        "the plain ViT?", outputs=("vit-modules.md", "vit-modules.json"),
                arguments=_arguments)
def run(args) -> None:
    if not set(args.variants.split(",")) <= {"plain", "spatial"}:
        raise ValueError(f"--variants: plain and/or spatial, got {args.variants!r}")
    if args.patch < 1 or 28 % args.patch:
        raise ValueError(f"--patch must divide 28 (each patch then lies in one task's image), got {args.patch}")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    from .._io import save_torch, write_json

    out = Path(args.out + ".json")
    records = json.loads(out.read_text())["runs"] if out.is_file() else []  # a resumed study keeps its runs
    done = {(r["variant"], r["seed"]) for r in records}
    targets = paper_targets(args.gradients) if args.strength == "derived" and "spatial" in args.variants else None
    scales = [float(v) for v in args.scales.split(",")] if args.strength == "derived" else [1.0]
    seeds = [int(s) for s in args.seeds.split(",")]
    scale_seeds = [int(s) for s in args.scale_seeds.split(",")]
    config = {k: v for k, v in vars(args).items() if k != "rerun"}
    for seed in dict.fromkeys(seeds + scale_seeds):
        td = concat_data(seed, args.data_dir)
        plain_path = Path(args.runs_dir) / f"plain-seed{seed}.pt"
        plain = None
        if ("plain", seed) not in done:
            rec, plain = train(args, "plain", seed, td)
            save_torch(plain_path, plain.state_dict())
            records.append(rec)
            write_json(out, {"config": config, "targets": targets, "runs": records})
        for i, scale in enumerate(scales if "spatial" in args.variants else []):
            if seed not in (seeds if i == 0 else scale_seeds):
                continue
            tag = f" x{scale:g}" if args.strength == "derived" else args.tag
            if ("spatial" + tag, seed) in done:
                continue
            if plain is None and args.strength == "derived":
                plain = make_vit(args, seed)
                plain.load_state_dict(torch.load(plain_path, weights_only=True))
            rec, _ = train(args, "spatial", seed, td, plain=plain, targets=targets, scale=scale, tag=tag)
            records.append(rec)
            write_json(out, {"config": config, "targets": targets, "runs": records})
    print(vit_summary({"runs": records}) + "\n\nPer run:\n\n" + vit({"runs": records}))
    print(f"wrote {out}; rerun: {args.rerun}")
