"""A small GPT-2 trained on text every Python install holds (the standard library's own source
files), plain against spatial at one strength, on CPU in a few minutes: the path from
``transformers`` to the kernels end to end (GPT-2's Conv1D weights, stored (in, out), read as they
lie). It demonstrates that the path works; it makes no claim about language modules.

    spatialnet study gpt2-text [--steps 400] [--out results/gpt2-text]

Text: the ``.py`` files of the standard library (``sysconfig``'s ``stdlib`` path), in sorted
order, read as bytes (a 256-token vocabulary: no tokenizer to download), the last tenth held out
for the validation loss. Model: ``GPT2LMHeadModel(GPT2Config(vocab_size=256, n_embd=128,
n_layer=4, n_head=4, n_positions=128))``, random init, the same seed for both nets. The spatial
net has the costs on every block's ``mlp.c_fc`` and ``mlp.c_proj`` (``spatialize``: the hidden
sheet of 512 per block and the residual stream of 128, one sheet that every ``c_proj`` writes and
every ``c_fc`` reads). Strength: alpha such that, at
initialisation, the transport's RMS gradient on the MLP weights is ``--pressure`` (0.1) of the
task loss's, and beta so that each sheet's pull equals its push there (``analysis.invariants``),
as the paper net's width rule holds them. Both nets: AdamW, lr 1e-3, a 50-step warm-up then a
cosine decay, ``training.fit``.

Writes ``OUT/record.json`` (both loss curves, the strength, step times), ``OUT/loss.png`` (the
training and validation loss of both nets) and ``OUT/sheets.png`` (each block's hidden sheet:
the neurons' positions, their size the neuron's outgoing sum |w|). Step time: the median of
alternating steps with and without the costs on one copy of the model (``training.timing``).
"""
from __future__ import annotations

import itertools
import math
import sysconfig
import time
from pathlib import Path

import torch

from .._io import atomic, write_json
from .registry import register_study

LAYERS = ["transformer.h.*.mlp.c_fc", "transformer.h.*.mlp.c_proj"]


def stdlib_text(limit_bytes: int) -> bytes:
    """The standard library's .py files, sorted, concatenated, at most ``limit_bytes``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = bytearray()
    for path in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py")):
        if any(part.startswith("test") or part == "site-packages" for part in path.relative_to(root).parts):
            continue
        out += path.read_bytes()
        if len(out) >= limit_bytes:
            break
    if len(out) < 100_000:
        raise ValueError(f"found only {len(out)} bytes of Python source under {root}")
    return bytes(out[:limit_bytes])


def batches(data: torch.Tensor, block: int, batch: int, seed: int):
    """Endless random windows of ``block + 1`` tokens, ``(x, y, None)`` shifted by one."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        starts = torch.randint(0, len(data) - block - 1, (batch,), generator=gen)
        w = torch.stack([data[s:s + block + 1] for s in starts.tolist()])
        yield w[:, :-1], w[:, 1:], None


def make_model(seed: int, layers: int = 4, dim: int = 128, block: int = 128):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=256, n_embd=dim, n_layer=layers, n_head=4, n_positions=block,
                                      bos_token_id=0, eos_token_id=0))


def lm_loss(model, x, y):
    logits = model(input_ids=x).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def derived_strength(model, costs, x, y, pressure: float) -> dict:
    """alpha (one for every layer) making the transport's RMS gradient on the MLP weights
    ``pressure`` of the task's at initialisation, and beta per sheet balancing pull and push."""
    from ..analysis.invariants import pull_push
    names = costs.layers
    weights = [model.get_submodule(n).weight for n in names]
    task = torch.autograd.grad(lm_loss(model, x, y), weights)
    trans = torch.autograd.grad(sum(costs.transport_cost(n) for n in names), weights)
    rms = lambda gs: math.sqrt(sum(float(g.pow(2).sum()) for g in gs) / sum(g.numel() for g in gs))  # noqa: E731
    alpha = pressure * rms(task) / rms(trans)
    sheets = costs.density_sheets
    pos = {s: costs.positions[costs.sheets[s].key] for s in sheets}
    transport = sum(costs.transport_cost(n, alpha) for n in names)
    ratio = pull_push(transport, {s: costs.density_cost(s, 1.0) for s in sheets}, pos)
    return {"alpha": alpha, "beta": {s: ratio[s] for s in sheets}}


def evaluate(model, data, block: int, batch: int, n: int = 8) -> float:
    model.eval()
    with torch.no_grad():
        losses = [float(lm_loss(model, x, y)) for x, y, _ in itertools.islice(batches(data, block, batch, 123), n)]
    model.train()
    return sum(losses) / len(losses)


def _arguments(p) -> None:
    p.add_argument("--out", default="results/gpt2-text")
    p.add_argument("--steps", type=int, default=400, help="training steps of each net")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--bytes", type=int, default=4_000_000, help="bytes of standard-library source to read")
    p.add_argument("--pressure", type=float, default=0.1,
                   help="the transport's RMS gradient on the MLP weights against the task's, at initialisation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)


@register_study("gpt2-text", question="Does a small GPT-2 train with the costs on its MLPs (Conv1D weights) on CPU, "
                                      "beside the plain model, and what does a step cost?",
                outputs=("gpt2-text/record.json", "gpt2-text/loss.png", "gpt2-text/sheets.png"),
                arguments=_arguments)
def run(args) -> None:
    from spatial_kernels.nn import spatialize

    from ..training import fit, make_scheduler, set_threads
    from ..training.timing import time_steps
    set_threads(args.threads)
    text = torch.frombuffer(bytearray(stdlib_text(args.bytes)), dtype=torch.uint8).long()
    cut = int(0.9 * len(text))
    train_data, val_data = text[:cut], text[cut:]
    record = {"config": {k: v for k, v in vars(args).items() if k != "rerun"}, "tokens": len(text), "runs": {}}
    spatial_model = spatial_costs = None
    for net in ("plain", "spatial"):
        model = make_model(args.seed, args.layers, block=args.block)
        costs, strength = None, None
        if net == "spatial":
            # the residual stream is one sheet: every c_proj writes it, every c_fc reads it (the data's
            # flow joins them too; the name keeps the record's key, positions.residual)
            residual = {f"transformer.h.{i}.mlp.{n}": ("residual", None) if n == "c_fc" else (None, "residual")
                        for i in range(args.layers) for n in ("c_fc", "c_proj")}
            costs = spatialize(model, LAYERS, sheets=residual, generator=torch.Generator().manual_seed(args.seed))
            x, y, _ = next(batches(train_data, args.block, args.batch, args.seed))
            strength = derived_strength(model, costs, x, y, args.pressure)
            print(costs.summary())
            print(f"strength: alpha {strength['alpha']:.3g}, beta " +
                  ", ".join(f"{s} {b:.3g}" for s, b in strength["beta"].items()))
            spatial_model, spatial_costs = model, costs
        groups = costs.param_groups(model, lr=1e-3, position_lr=1e-3, weight_decay=0.01) if costs else \
            [{"params": list(model.parameters()), "weight_decay": 0.01}]
        opt = torch.optim.AdamW(groups, lr=1e-3)
        sched = make_scheduler(opt, args.steps, "cosine", warmup=50)
        per_epoch = 50  # an "epoch" here: 50 steps, one validation read each
        hist, t0 = [], time.perf_counter()
        stream = batches(train_data, args.block, args.batch, args.seed)

        def log(rec):
            rec["val_loss"] = evaluate(model, val_data, args.block, args.batch)
            rec["step"] = rec["epoch"] * per_epoch
            rec["seconds"] = time.perf_counter() - t0
            print(f"[{net}] step {rec['step']}: train {rec['task_loss']:.3f} val {rec['val_loss']:.3f}"
                  + (f" costs {rec['spatial_loss']:.4f}" if costs else "") + f" ({rec['seconds']:.0f} s)", flush=True)
            hist.append(rec)

        fit(opt, lambda epoch: itertools.islice(stream, per_epoch), lambda x, y, t: lm_loss(model, x, y),
            epochs=math.ceil(args.steps / per_epoch), steps_per_epoch=per_epoch,
            costs=(lambda: costs(strength["alpha"], strength["beta"])) if costs else None, scheduler=sched,
            on_epoch_end=log)
        record["runs"][net] = {"history": hist, "strength": strength, "train_seconds": time.perf_counter() - t0}
        if costs is not None:
            pairs = ((x, y) for x, y, _ in batches(train_data, args.block, args.batch, args.seed + 1))
            record["step_timing"] = {k: v for k, v in time_steps(
                model, costs, pairs, lm_loss, 1e-3, strength["alpha"], strength["beta"], 10).items()
                if k != "samples"}
            record["sheets"] = {s.name: s.size for s in costs.sheets.values()}
    out = Path(args.out)
    write_json(out / "record.json", record)
    _plot(record, spatial_model, spatial_costs, out)
    t = record.get("step_timing", {})
    print(f"wrote {out}/record.json, loss.png, sheets.png; a step {t.get('plain', 0) * 1e3:.0f} ms plain, "
          f"{t.get('spatial', 0) * 1e3:.0f} ms spatial ({100 * t.get('added_share', 0):+.1f} %); rerun: {args.rerun}")


def _plot(record, model, costs, out: Path) -> None:
    plot_losses(record, out)
    plot_sheets(costs, out)


def plot_losses(record, out: Path) -> None:
    """``OUT/loss.png``: both nets' training and validation loss (the plain net's drawn wide, under)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for net, colour, width in (("plain", "0.6", 4.0), ("spatial", "tab:blue", 1.5)):
        h = record["runs"][net]["history"]
        ax.plot([r["step"] for r in h], [r["task_loss"] for r in h], "-", c=colour, lw=width, label=f"{net}, train")
        ax.plot([r["step"] for r in h], [r["val_loss"] for r in h], "--", c=colour, lw=width,
                label=f"{net}, validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per byte)")
    ax.set_title("GPT-2 (4 layers) on the standard library's source")
    ax.legend()
    fig.tight_layout()
    atomic(out / "loss.png", lambda f: fig.savefig(f, dpi=120, format="png"))
    plt.close(fig)


def plot_sheets(costs, out: Path) -> None:
    """``OUT/sheets.png``: each block's hidden sheet, a neuron's size its outgoing sum |w|."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hidden = [s for s in costs.sheets.values() if s.writers and s.writers[0].endswith("c_fc")]
    fig, axes = plt.subplots(1, len(hidden), figsize=(3.2 * len(hidden), 3.2))
    for ax, s in zip(list(axes) if len(hidden) > 1 else [axes], hidden):
        p = costs.positions[s.key].detach()
        reader = s.readers[0]
        out_w = costs.strength(reader).sum(0)  # each hidden neuron's outgoing sum |w| (c_proj reads it)
        size = 40 * out_w / out_w.max()
        ax.scatter(p[:, 0], p[:, 1], s=size.clamp_min(0.5).numpy(), c=out_w.numpy(), cmap="viridis")
        ax.set_title(s.name.replace("transformer.", ""), fontsize=8)
        ax.set_aspect("equal")
    fig.suptitle("each block's MLP sheet: size and colour = the neuron's outgoing sum |w|", fontsize=9)
    fig.tight_layout()
    atomic(out / "sheets.png", lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)
