"""The demo (``spatialnet demo``): the spatial net and the regular one trained side by side in
concat mode, both split, their read-outs printed as one table, the spatial net's figures and the
GIF of its positions drawn, and everything written under OUT (``demo.json``)."""
from __future__ import annotations

import time
from pathlib import Path

from .._io import write_json
from ..analysis.evaluate import RECORD
from ..analysis.printout import print_nets_table
from ..config import REGULAR_HPARAMS, TrainConfig
from ..training import train

def run_demo(base: TrainConfig, out, dataset, *, data_dir=None, progress: bool = True, log=print) -> dict:
    """Trains ``base`` as the spatial net and, at its own settings (``REGULAR_HPARAMS``, the
    paper's lr and gain: a fair baseline), as the regular net, on ``dataset``; returns both
    read-outs and writes OUT/demo.json, OUT/figure1.png, figure2.png and positions.gif."""
    from ..analysis.figures import animate_positions, plot_figures
    from ..training.checkpoint import load_run, model_from_checkpoint

    t0 = time.time()
    out = Path(out)
    results = {}
    for net in ("spatial", "regular"):
        cfg = base.replace(mode="concat", net=net, **(REGULAR_HPARAMS if net == "regular" else {}))
        results[net] = train(cfg, out / net, data_dir=data_dir, dataset=dataset, progress=progress,
                             log=log if net == "spatial" else (lambda *a: None))
    log(f"\nconcat mode, {dataset.source} data"
        f"{f' ({cfg.max_train} training images per dataset)' if cfg.max_train else ''}, {cfg.epochs} epochs, "
        f"seed {cfg.seed}: before (full) and after (split) splitting each net into its tasks' subnetworks")
    print_nets_table(results, cfg.eval_split)
    write_json(out / "demo.json", {net: {k: r[k] for k in RECORD} for net, r in results.items()}
               | {"settings": {"data": dataset.source, "epochs": cfg.epochs, "seed": cfg.seed,
                               "seconds": round(time.time() - t0, 1)}})
    model, cfg, _ = model_from_checkpoint(out / "spatial" / "checkpoint.pt")
    for p in plot_figures(model, cfg.split_layers, out, tasks=cfg.tasks,
                          title=f"demo: concat/spatial ({dataset.source} data)"):
        log(f"wrote {p}")
    log(f"wrote {animate_positions(*load_run(out / 'spatial'), out / 'positions.gif')}")
    log(f"wrote {out / 'demo.json'}; demo took {time.time() - t0:.0f} s")
    return results
