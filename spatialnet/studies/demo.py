"""The demo (``spatialnet demo``): the spatial net and the regular one trained side by side in
concat mode, both split, their read-outs printed as one table, the spatial net's figures and the
GIF of its positions drawn, and everything written under OUT (``demo.json``).

The two nets train at once, the regular one in a second process: each run is one thread
(``TrainConfig.threads``), so on two cores the demo takes about the spatial net's time alone. Both
report their progress; a run's numbers do not depend on the process it runs in."""
from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .._io import write_json
from ..analysis.evaluate import RECORD
from ..analysis.printout import print_nets_table
from ..config import REGULAR_HPARAMS, TrainConfig
from ..training import train


class _Lines:
    """A stream that is not a terminal: the second process's progress comes as plain lines, which
    the first one's bar does not redraw over."""

    def __init__(self, stream):
        self.stream = stream

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _quiet_banner(log):
    """``log``, less the embedded subset's banner (the spatial net's run prints it once)."""
    from ..data import SUBSET_BANNER
    return lambda *a: None if a and a[0] == SUBSET_BANNER else log(*a)


def _train_regular(cfg, out, data_dir, dataset, progress):
    """The regular net's run in its own process: its progress lines, nothing else printed."""
    import sys
    sys.stderr = _Lines(sys.stderr)
    return train(cfg, out, data_dir=data_dir, dataset=dataset, progress=progress, log=_quiet_banner(print))


def run_demo(base: TrainConfig, out, dataset, *, data_dir=None, progress: bool = True, log=print,
             parallel: bool = True) -> dict:
    """Trains ``base`` as the spatial net and, at its own settings (``REGULAR_HPARAMS``, the
    paper's lr and gain: a fair baseline), as the regular net, on ``dataset`` (at once, the regular
    net in a second process, unless ``parallel`` is False); returns both read-outs and writes
    OUT/demo.json, OUT/figure1.png, figure2.png and positions.gif."""
    from ..analysis.figures import animate_positions, plot_figures
    from ..training.checkpoint import load_run, model_from_checkpoint

    t0 = time.time()
    out = Path(out)
    cfgs = {net: base.replace(mode="concat", net=net, **(REGULAR_HPARAMS if net == "regular" else {}))
            for net in ("spatial", "regular")}
    results = {}
    if parallel:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            regular = pool.submit(_train_regular, cfgs["regular"], out / "regular", data_dir, dataset, progress)
            results["spatial"] = train(cfgs["spatial"], out / "spatial", data_dir=data_dir, dataset=dataset,
                                       progress=progress, log=log)
            results["regular"] = regular.result()
    else:
        for net, cfg in cfgs.items():
            results[net] = train(cfg, out / net, data_dir=data_dir, dataset=dataset, progress=progress,
                                 log=log if net == "spatial" else _quiet_banner(log))
    cfg = cfgs["spatial"]
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
