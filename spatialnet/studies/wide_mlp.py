"""What do the spatial costs add to a training step of a wide MLP built from torchvision parts
(``torchvision.ops.MLP``, hidden >= 2048, far wider than the paper's 128-256), on the CPU?

    python -m spatialnet.studies.wide_mlp --out results/wide-torchvision-mlp

``MLP(1568, [2048, 2048, 2048, 20])`` (ReLU, torchvision's default) on MNIST | Fashion-MNIST
concat; the costs (spatial_kernels.nn.spatialize) on its last three Linear layers, the paper's
choice of layers; the weights' lr and alpha follow spatialnet's width rule (results/wide.md).
The step times are medians of steps taken alternately with and without the costs on one model;
then both nets train for ``--epochs`` from one seed and are split (spatialnet's greedy split) and
measured (spatialnet.analysis.modularity.chain_measures).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torchvision.ops import MLP

from spatial_kernels.nn import spatialize

from ..analysis.modularity import chain_measures
from ..analysis.split import DEAD_TOL, greedy_split
from ..config import TrainConfig
from ..data import task_loss_sum
from .timing import accuracy, concat_data, time_steps


def loss_fn(model, x, y):
    return task_loss_sum(model(x), y, None) / len(x)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None,
                   help="data folder (else $SPATIALNET_DATA, else ~/.cache/spatialnet)")
    p.add_argument("--out", default="results/wide-torchvision-mlp")
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--steps", type=int, default=0, help="batches per epoch (0: the whole training set)")
    p.add_argument("--timing-pairs", type=int, default=20)
    p.add_argument("--timing-only", action="store_true", help="time the steps, train nothing")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(a.threads))
    h = a.hidden
    # the width rule of spatialnet's MLP with these widths, costs on Linear layers 2, 3, 4
    eff = TrainConfig(hidden=[h, h, h], spatial_layers=[2, 3, 4]).effective()
    batch = TrainConfig().batch_size
    td = concat_data(a.seed, a.data_dir)
    layers = ["3", "6", "9"]  # Linear layers 2, 3, 4 of 0..9 (ReLU and Dropout between)
    # per term: each layer (and the sheet it writes, named after it) gets its Linear layer's value
    alpha = {n: eff["alpha"][str(l)] for n, l in zip(layers, (2, 3, 4))}
    beta = {n: eff["beta"][str(l)] for n, l in zip(layers, (2, 3, 4))}
    lr = eff["lr"]["2"]  # every weight matrix at the hidden layers' lr (the first layer's would keep lr)
    rec = {"config": vars(a) | {"effective": eff, "batch": batch, "layers": layers}, "runs": []}
    for variant in ("timing",) if a.timing_only else ("timing", "plain", "spatial"):
        torch.manual_seed(a.seed)
        model = MLP(1568, [h, h, h, 20])
        costs = spatialize(model, layers, generator=torch.Generator().manual_seed(a.seed))
        if variant == "timing":
            batches = ((x, y) for x, y, _ in td.epoch_batches(10_000, batch))
            rec["step_timing"] = time_steps(model, costs, batches, loss_fn, lr, alpha, beta,
                                            a.timing_pairs)
            rec["sheets"] = {s.name: s.size for s in costs.sheets.values()}
            print("step timing", rec["step_timing"], flush=True)
            continue
        use = variant == "spatial"
        opt = torch.optim.Adam(costs.param_groups(model, lr=lr, position_lr=eff["pos_lr"]) if use
                               else model.parameters(), lr=lr)
        t0 = time.perf_counter()
        for epoch in range(a.epochs):
            for step, (x, y, _) in enumerate(td.epoch_batches(epoch, batch)):
                if a.steps and step >= a.steps:
                    break
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model, x, y)
                if use:
                    loss = loss + costs(alpha, beta)
                loss.backward()
                opt.step()
            print(f"[{variant}] epoch {epoch + 1} ({time.perf_counter() - t0:.0f} s)", flush=True)
        Ws = [model.get_submodule(n).weight.detach() for n in ["0"] + layers]
        groups = greedy_split(Ws, torch.arange(20) // 10, 2, DEAD_TOL)  # layers 0, 3, 6, 9's outputs
        pos = [costs.positions_of("3", "in").detach()] + [costs.positions_of(n, "out").detach() for n in layers] \
            if use else None
        m = chain_measures(groups, 2, weights=[None] + Ws[1:], positions=pos, names=["0", *layers])
        rec["runs"].append({"variant": variant, "accuracy": accuracy(model, td), "train_seconds": time.perf_counter() - t0,
                            "measures": m})
        Path(a.out + ".json").write_text(json.dumps(rec, indent=1))
    Path(a.out + ".json").write_text(json.dumps(rec, indent=1))
    print(f"wrote {a.out}.json")


if __name__ == "__main__":
    main()
