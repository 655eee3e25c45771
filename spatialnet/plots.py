"""The paper's figures from a trained spatial net.

Figure 1: top-down view, every neuron of the split layers at its (x, y) position, coloured by the
task the greedy split gave it, one marker per layer. Figure 2: the same neurons in 3-D, one slice
per layer along the first axis, the output layer last. With dim = 1 neurons sit at y = 0; with
dim = 3 the first two coordinates are drawn.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ._io import _atomic  # noqa: E402
from .split import model_split  # noqa: E402

TASK_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
TASK_NAMES = ("MNIST", "Fashion-MNIST")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def _layers_with_positions(model, layers):
    drawn = [l for l in layers if hasattr(model.layer(l), "positions")]
    if not drawn:
        raise ValueError("this network has no neuron positions to plot (a regular net?); "
                         "plot a checkpoint of a spatial net")
    return drawn


def _xy(model, l):
    p = model.layer(l).positions.detach().cpu()
    y = p[:, 1] if p.shape[1] > 1 else p[:, 0] * 0
    return p[:, 0].numpy(), y.numpy()


def plot_figures(model, split_layers, out_dir, num_tasks: int = 2, title: str = "") -> list[Path]:
    """Writes ``figure1.png`` (top-down) and ``figure2.png`` (3-D) under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    assignment = model_split(model, split_layers, num_tasks)
    layers = _layers_with_positions(model, split_layers)
    names = [TASK_NAMES[t] if t < len(TASK_NAMES) else f"task {t}" for t in range(num_tasks)]

    fig, ax = plt.subplots(figsize=(6.5, 6))
    for k, l in enumerate(layers):
        x, y = _xy(model, l)
        g = assignment[l].numpy()
        for t in range(num_tasks):
            sel = g == t
            ax.scatter(x[sel], y[sel], c=TASK_COLOURS[t % len(TASK_COLOURS)], marker=MARKERS[k % len(MARKERS)],
                       s=36 if l == model.num_layers else 18, alpha=0.75, edgecolors="k", linewidths=0.3,
                       label=f"layer {l}{' (output)' if l == model.num_layers else ''}, {names[t]}")
    ax.set_title(title or "Top-down view of the split layers")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    fig.tight_layout()
    p1 = out_dir / "figure1.png"
    _atomic(p1, lambda f: fig.savefig(f, dpi=130, format="png"))
    plt.close(fig)

    fig = plt.figure(figsize=(8, 5.5))
    ax = fig.add_subplot(projection="3d")
    for k, l in enumerate(layers):
        x, y = _xy(model, l)
        g = assignment[l].numpy()
        for t in range(num_tasks):
            sel = g == t
            ax.scatter(x[sel] * 0 + k, x[sel], y[sel], c=TASK_COLOURS[t % len(TASK_COLOURS)],
                       marker=MARKERS[k % len(MARKERS)], s=16, alpha=0.8, depthshade=False,
                       label=names[t] if k == len(layers) - 1 else None)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([f"layer {l}" + (" (out)" if l == model.num_layers else "") for l in layers], fontsize=8)
    ax.set_ylabel("x")
    ax.set_zlabel("y")
    ax.view_init(elev=18, azim=-60)
    ax.set_title(title or "Split layers, one slice per layer, output last")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p2 = out_dir / "figure2.png"
    _atomic(p2, lambda f: fig.savefig(f, dpi=130, format="png"))
    plt.close(fig)
    return [p1, p2]
