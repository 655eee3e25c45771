"""The picture epoch by epoch: a run's positions after every epoch (``training/positions.py``) read
with its final split, and the time the picture takes to form.

The split (which task each neuron serves, which are dead) is the final checkpoint's: a neuron's
final task colours its whole path, as the figures' animation does. Per epoch, over the hidden
split layers: the silhouette and the band (``analysis/territory.py``) of the live neurons, and the output
sheet's silhouette by head.
"""
from __future__ import annotations

import numpy as np

PICTURE_KEYS = ("silhouette", "band", "out_silhouette")


def picture_trajectory(run_dir, every: int = 1) -> list[dict]:
    """``[{"epoch": e, "silhouette": ..., "band": ..., "out_silhouette": ...}, ...]`` for every
    ``every``-th epoch of the run in ``run_dir`` (and its last), read with the final split."""
    from sklearn.metrics import silhouette_score

    from ..analysis.stats import mean
    from ..analysis.task_split import model_split
    from ..analysis.territory import band, output_silhouette
    from ..training.checkpoint import load_run

    model, cfg, track = load_run(run_dir)
    assignment = model_split(model, cfg.split_layers, cfg.num_tasks)
    epochs = list(track["epochs"])
    keep = [i for i, e in enumerate(epochs) if e % every == 0 or i == len(epochs) - 1]
    hidden = [l for l in cfg.split_layers[:-1] if str(l) in track["layers"]]
    out_layer = cfg.split_layers[-1]
    rows = []
    for i in keep:
        sil, bands = [], []
        for l in hidden:
            g = assignment[l].numpy()
            p = track["layers"][str(l)][i].double().numpy()[g >= 0]
            g = g[g >= 0]
            if len(np.unique(g)) < 2 or len(g) <= cfg.num_tasks:
                continue
            sil.append(float(silhouette_score(p, g)))
            bands.append(band(p, g))
        row = {"epoch": epochs[i], "silhouette": mean(sil), "band": mean(bands)}
        if str(out_layer) in track["layers"]:
            row["out_silhouette"] = output_silhouette(track["layers"][str(out_layer)][i], assignment[out_layer],
                                                      permutations=0)["out_silhouette"]
        rows.append(row)
    return rows


def time_to_form(epochs, values, fraction: float = 0.9) -> float | None:
    """The first epoch by which ``values`` has made ``fraction`` of its change from the first to
    the last value (rising or falling), and stays there; None without a change."""
    v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
    if len(v) < 2 or not np.isfinite(v[[0, -1]]).all() or v[-1] == v[0]:
        return None
    progress = (v - v[0]) / (v[-1] - v[0])
    ok = np.nan_to_num(progress, nan=0.0) >= fraction
    for i in range(len(v)):
        if ok[i:].all():
            return float(epochs[i])
    return float(epochs[-1])
