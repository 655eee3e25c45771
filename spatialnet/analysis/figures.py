"""The paper's figures from a trained spatial net.

Figure 1: top-down view, every neuron of the split layers at its (x, y) position, coloured by the
task the greedy split gave it (dead neurons, which belong to no task, in light grey), one marker
per layer. Figure 2: the same neurons in 3-D, one slice per layer along the first axis, the
output layer last. With dim = 1 neurons sit at y = 0; with dim = 3 the first two coordinates
are drawn.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .._io import atomic  # noqa: E402
from .task_split import model_split  # noqa: E402
from ..data.tasks import DEFAULT_TASKS, display_name  # noqa: E402

TASK_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
                "tab:pink", "tab:olive", "tab:cyan")
DEAD_COLOUR = "0.85"
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
# NOTE: a GIF frame costs about 0.2 s to draw and encode on one core: the demo's 201 epochs took 40
# of its 130 s; at most this many frames, evenly spread over the run (first and last kept)
GIF_FRAMES = 51


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


def _groups(num_tasks: int):
    # (group, colour, name), the dead (-1) first so that the tasks are drawn over them
    yield -1, DEAD_COLOUR, "dead"
    for t in range(num_tasks):
        yield t, TASK_COLOURS[t % len(TASK_COLOURS)], None


def _selections(model, layers, assignment, num_tasks: int):
    """``(k, layer, x, y, mask, task, colour, name)`` for each layer's group of neurons present."""
    for k, l in enumerate(layers):
        x, y = _xy(model, l)
        g = assignment[l].cpu().numpy()
        for t, colour, name in _groups(num_tasks):
            sel = g == t
            if sel.any():
                yield k, l, x, y, sel, t, colour, name


def plot_figures(model, split_layers, out_dir, tasks=DEFAULT_TASKS, title: str = "",
                 names: tuple[str, str] = ("figure1.png", "figure2.png")) -> list[Path]:
    """Writes ``names[0]`` (top-down, default ``figure1.png``) and ``names[1]`` (3-D) under
    ``out_dir``; ``tasks`` names the heads, in order (one colour each)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = list(tasks)
    assignment = model_split(model, split_layers, len(tasks))
    layers = _layers_with_positions(model, split_layers)
    task_names = [display_name(t) for t in tasks]

    fig, ax = plt.subplots(figsize=(6.5, 6))
    for k, l, x, y, sel, t, colour, name in _selections(model, layers, assignment, len(tasks)):
        ax.scatter(x[sel], y[sel], c=colour, marker=MARKERS[k % len(MARKERS)],
                   s=36 if l == model.num_layers else 18, alpha=0.75 if t >= 0 else 0.6,
                   edgecolors="k" if t >= 0 else "0.6", linewidths=0.3,
                   label=f"layer {l}{' (output)' if l == model.num_layers else ''}, {name or task_names[t]}")
    ax.set_title(title or "Top-down view of the split layers")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    fig.tight_layout()
    p1 = out_dir / names[0]
    atomic(p1, lambda f: fig.savefig(f, dpi=130, format="png"))
    plt.close(fig)

    fig = plt.figure(figsize=(8, 5.5))
    ax = fig.add_subplot(projection="3d")
    labelled = set()  # one legend entry per group
    for k, l, x, y, sel, t, colour, name in _selections(model, layers, assignment, len(tasks)):
        ax.scatter(x[sel] * 0 + k, x[sel], y[sel], c=colour, marker=MARKERS[k % len(MARKERS)],
                   s=16 if t >= 0 else 8, alpha=0.8 if t >= 0 else 0.5, depthshade=False,
                   label=None if t in labelled else (name or task_names[t]))
        labelled.add(t)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([f"layer {l}" + (" (out)" if l == model.num_layers else "") for l in layers], fontsize=8)
    ax.set_ylabel("x")
    ax.set_zlabel("y")
    ax.view_init(elev=18, azim=-60)
    ax.set_title(title or "Split layers, one slice per layer, output last")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p2 = out_dir / names[1]
    atomic(p2, lambda f: fig.savefig(f, dpi=130, format="png"))
    plt.close(fig)
    return [p1, p2]


def animate_positions(model, cfg, track: dict, out: str | Path, fps: int = 4, max_frames: int = GIF_FRAMES) -> Path:
    """A GIF of a run's positions epoch by epoch (``track``: its ``positions.pt``, written by
    training; ``training.checkpoint.load_run`` reads a run folder), every neuron of the split
    layers coloured by the *final* split's task (``model``, the last checkpoint; dead in grey), so
    one sees where each task's neurons came from. Axis limits are fixed over the frames. A run of
    more than ``max_frames`` epochs shows that many, evenly spread, its first and last included."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    layers = _layers_with_positions(model, cfg.split_layers)
    assignment = model_split(model, cfg.split_layers, cfg.num_tasks)
    shown = np.unique(np.linspace(0, len(track["epochs"]) - 1, min(len(track["epochs"]), max_frames)).round()
                      .astype(int))
    epochs = [track["epochs"][i] for i in shown]
    frames = {l: track["layers"][str(l)].numpy()[shown] for l in layers}  # [E, N, D]
    task_names = [display_name(t) for t in cfg.tasks]
    every = [track["layers"][str(l)].numpy() for l in layers]  # the limits hold every epoch, shown or not
    allxy = [f[..., :2] if f.shape[-1] > 1 else f for f in every]
    lo = min(float(a.min()) for a in allxy) - 0.2
    hi = max(float(a.max()) for a in allxy) + 0.2

    fig, ax = plt.subplots(figsize=(5.5, 5.2))
    artists = []
    for k, l in enumerate(layers):
        g = assignment[l].cpu().numpy()
        for t, colour, name in _groups(cfg.num_tasks):
            sel = g == t
            if sel.any():
                sc = ax.scatter([], [], c=colour, marker=MARKERS[k % len(MARKERS)],
                                s=30 if l == model.num_layers else 14, alpha=0.75 if t >= 0 else 0.5,
                                edgecolors="k" if t >= 0 else "0.6", linewidths=0.3,
                                label=f"layer {l}, {name or task_names[t]}")
                artists.append((sc, l, sel))
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.legend(fontsize=6, loc="upper right", framealpha=0.8)
    title = ax.set_title("")

    def draw(i):
        for sc, l, sel in artists:
            p = frames[l][i][sel]
            sc.set_offsets(p[:, :2] if p.shape[1] > 1 else np.stack([p[:, 0], 0 * p[:, 0]], 1))
        title.set_text(f"{cfg.mode}/{cfg.net} seed {cfg.seed}: epoch {epochs[i]} (colours: final split)")
        return [a[0] for a in artists] + [title]

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    anim = FuncAnimation(fig, draw, frames=len(epochs), blit=False)
    tmp = out.with_name(f".{out.name}.tmp.gif")
    anim.save(tmp, writer=PillowWriter(fps=fps), dpi=90)
    tmp.replace(out)
    plt.close(fig)
    return out
