"""Synthetic reference layouts a person can judge, for the cluster measures (``modularity.py``).

``spatialnet study references [--out OUT]`` scores each one with every position measure (and
weight chains, :func:`synthetic_chain`, with the weight measures) and writes ``OUT.md`` and
``OUT.json`` (default ``results/measures-references``): the numbers the write-ups quote as
reference points. Two tasks of ``n / 2`` neurons each:

- ``blobs``: two Gaussian blobs 8 sigma apart (one compact cluster per task);
- ``halved disc``: a uniform disc cut in halves by a line (two regions, no clusters);
- ``halved sheet 2:1``: a uniform 2 x 1 sheet cut across its long side;
- ``patches``: a 4 x 4 checkerboard of small same-task patches (locally pure, no cluster per task);
- ``interleaved``: a uniform disc with the labels drawn at random.

For the crowding measures (:func:`crowding_references`), ``n`` neurons of one layer at a mean
density of one per 0.36 (a lattice's spacing of 0.6, in the density's length unit):

- ``stacked``: every neuron on one of 5 points (jitter 0.02), as a layer collapsed onto a few
  neurons of the next;
- ``uniform disc``: spread at random over a disc;
- ``lattice``: a square lattice, spacing 0.6 (as far apart as that density allows);
- ``two spread blobs``: two uniform discs of half the area each, apart (the paper's Figure 1);

and :func:`crowding_chain`, a layer on top of the 20 neurons of the next (``on next``) or spread
around them (``beside next``); and for the territory measures (``analysis/territory.py``),
:func:`territory_references`, from two discs with a band between them to a mixed disc.
"""
from __future__ import annotations

import numpy as np

from .registry import register_study


def _disc(rng, n):
    r, a = np.sqrt(rng.random(n)), rng.random(n) * 2 * np.pi
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def synthetic_references(n: int = 200, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (positions (n, 2), labels (n,))}`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    half = np.repeat([0, 1], n // 2)
    blobs = np.concatenate([rng.normal(size=(n // 2, 2)) + [-4, 0], rng.normal(size=(n // 2, 2)) + [4, 0]])
    disc = _disc(rng, n)
    rect = rng.random((n, 2)) * [2, 1]
    cx, cy = np.meshgrid(np.arange(4), np.arange(4))
    centres, colour = np.stack([cx.ravel(), cy.ravel()], 1).astype(float), (cx + cy).ravel() % 2
    k = np.arange(n) % 16
    sheet = _disc(rng, n)
    return {"blobs": (blobs, half),
            "halved disc": (disc, (disc[:, 0] > 0).astype(int)),
            "halved sheet 2:1": (rect, (rect[:, 0] > 1).astype(int)),
            "patches": (centres[k] + 0.08 * rng.normal(size=(n, 2)), colour[k]),
            "interleaved": (sheet, rng.permutation(half))}


def synthetic_chain(kind: str, seed: int = 0, sizes=(40, 40, 20)):
    """``(weights, labels)`` of a 3-layer chain, two tasks in halves: ``disjoint`` blocks,
    ``noisy`` blocks (cross weights at 0.1 x), ``random`` weights, or ``collapsed`` (random weights,
    the first layer given whole to task 0 and the next 9:1 to it, as the greedy split does to a
    regular net). ``weights[0]`` is None (no matrix into the first layer)."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    labels = [torch.arange(n) // (n // 2) for n in sizes]
    weights = [None]
    for k in range(1, len(sizes)):
        a = torch.rand(sizes[k], sizes[k - 1], generator=gen)
        same = (labels[k][:, None] == labels[k - 1][None, :]).float()
        weights.append({"disjoint": a * same, "noisy": a * (same + 0.1 * (1 - same))}.get(kind, a))
    if kind == "collapsed":
        labels[0] = torch.zeros(sizes[0], dtype=torch.long)
        labels[1] = (torch.arange(sizes[1]) >= sizes[1] * 9 // 10).long()
    return weights, labels


SPACING = 0.6


def crowding_references(n: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """``{name: positions (n, 2)}`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    area = n * SPACING ** 2
    radius = np.sqrt(area / np.pi)
    side = int(np.ceil(np.sqrt(n)))
    gx, gy = np.meshgrid(np.arange(side), np.arange(side))
    lattice = SPACING * np.stack([gx.ravel(), gy.ravel()], 1)[:n].astype(float)
    centres = radius * 0.6 * _disc(rng, 5)
    half = np.sqrt(2) / 2 * radius
    blobs = np.concatenate([half * _disc(rng, n // 2) - [1.3 * half, 0], half * _disc(rng, n - n // 2) + [1.3 * half, 0]])
    return {"stacked": centres[np.arange(n) % 5] + 0.02 * rng.normal(size=(n, 2)),
            "uniform disc": radius * _disc(rng, n),
            "lattice": lattice,
            "two spread blobs": blobs}


def crowding_chain(kind: str, n: int = 200, n_next: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(layer positions (n, 2), next layer's positions (n_next, 2))``: ``on next`` (each neuron
    within 0.03 of a neuron of the next layer) or ``beside next`` (spread uniformly around them)."""
    rng = np.random.default_rng(seed)
    radius = np.sqrt(n * SPACING ** 2 / np.pi)
    nxt = radius * _disc(rng, n_next)
    if kind == "on next":
        return nxt[np.arange(n) % n_next] + 0.015 * rng.normal(size=(n, 2)), nxt
    return radius * _disc(rng, n), nxt


CROWDING_CHAINS = ("on next", "beside next")


def score_crowding(n: int = 200, seed: int = 0) -> dict[str, dict]:
    import torch

    from ..analysis.modularity import crowding
    out = {}
    for name, p in crowding_references(n, seed).items():
        out[name] = crowding(torch.tensor(p), torch.zeros(n, dtype=torch.long))
    for kind in CROWDING_CHAINS:
        p, q = crowding_chain(kind, n, seed=seed)
        out[kind] = crowding(torch.tensor(p), torch.zeros(n, dtype=torch.long), next_positions=torch.tensor(q))
    return out


def territory_references(n: int = 400, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (positions (n, 2), labels (n,))}`` for the territory measures (``analysis/territory.py``),
    two tasks of ``n / 2`` neurons at one density, from the paper's picture to none:

    - ``discs with a band``: two uniform discs, an empty band half a radius wide between them;
    - ``touching discs``: two uniform discs that touch;
    - ``sheet cut in two``: a uniform 2 x 1 sheet cut across its long side (no band: a cut);
    - ``interleaved lobes``: two touching discs, a third of each task's neurons in a lobe on the far
      side of the other task (the 8x failure: Fashion-MNIST on either side of MNIST);
    - ``mixed``: a uniform disc with the labels drawn at random."""
    rng = np.random.default_rng(seed)
    h = n // 2
    half = np.repeat([0, 1], [h, n - h])

    def two(gap):
        return np.concatenate([_disc(rng, h) - [1 + gap / 2, 0], _disc(rng, n - h) + [1 + gap / 2, 0]])

    rect = rng.random((n, 2)) * [2 * np.sqrt(np.pi / 2), np.sqrt(np.pi / 2)]  # the two discs' area
    r = np.sqrt(1 / 3)  # a lobe's radius: a third of a unit disc's neurons at the same density
    k = h // 3
    lobes = np.concatenate([
        np.sqrt(2 / 3) * _disc(rng, h - k) - [1, 0], r * _disc(rng, k) + [3 + r, 0],
        np.sqrt(2 / 3) * _disc(rng, n - h - k) + [1, 0], r * _disc(rng, k) - [3 + r, 0]])
    return {"discs with a band": (two(0.5), half),
            "touching discs": (two(0.0), half),
            "sheet cut in two": (rect, (rect[:, 0] > rect[:, 0].max() / 2).astype(int)),
            "interleaved lobes": (lobes, half),
            "mixed": (np.sqrt(2) * _disc(rng, n), rng.permutation(half))}


TERRITORY_ORDER = ("discs with a band", "touching discs", "sheet cut in two", "interleaved lobes", "mixed")


def score_territories(n: int = 400, seed: int = 0) -> dict[str, dict]:
    from ..analysis.modularity import cluster_quality
    from ..analysis.territory import territory_measures
    return {name: {**territory_measures(p, g), **{k: v for k, v in cluster_quality(p, g, 2).items() if k != "live"}}
            for name, (p, g) in territory_references(n, seed).items()}


CHAINS = ("disjoint", "noisy", "random", "collapsed")


def score_chains(seed: int = 0) -> dict[str, dict]:
    from ..analysis.modularity import chain_measures
    out = {}
    for kind in CHAINS:
        w, g = synthetic_chain(kind, seed)
        m = chain_measures(g, 2, weights=w)
        out[kind] = {k: m[k] for k in ("cross_task_share", "share_chance", "share_norm", "newman_q")}
    return out


def score_references(n: int = 200, seed: int = 0) -> dict[str, dict]:
    import torch

    from ..analysis.modularity import cluster_quality, layer_segregation
    out = {}
    for name, (p, g) in synthetic_references(n, seed).items():
        pt, gt = torch.tensor(p), torch.tensor(g)
        out[name] = {**cluster_quality(pt, gt, 2), "segregation_5nn": layer_segregation(pt, gt)}
    return out


def _arguments(p) -> None:
    p.add_argument("--out", default="results/measures-references", help="OUT.md and OUT.json")


def _table(first: str, scores: dict, keys) -> list[str]:
    """A markdown table: a row per layout, a column per measure (– where it is undefined)."""
    return [f"| {first} | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys),
            *(f"| {name} | " + " | ".join("–" if sc[k] is None else f"{sc[k]:.3f}" for k in keys) + " |"
              for name, sc in scores.items())]


@register_study("references", question="Do the measures rank synthetic layouts as a person would (clusters, "
                                       "sheets, crowding, territories)?",
                outputs=("measures-references.md", "measures-references.json"), arguments=_arguments)
def run(args) -> None:
    from pathlib import Path

    from .._io import write_json, write_text
    out = Path(args.out)
    scores = score_references()
    keys = ("silhouette", "silhouette_null", "ari", "ari_null", "segregation_5nn")
    lines = ["# The cluster measures on synthetic references", "",
             "Two tasks of 100 neurons each (`spatialnet/studies/references.py`, seed 0); nulls: the mean over 20 "
             "label permutations. Generated by `spatialnet study references`.", "", *_table("layout", scores, keys)]
    chains = score_chains()
    wkeys = ("cross_task_share", "share_chance", "share_norm", "newman_q")
    lines += ["", "Weight measures on 40-40-20 chains with uniform random |w| (`synthetic_chain`): disjoint "
              "blocks, blocks with cross weights at 0.1x, random weights with balanced groups, and random "
              "weights with the groups collapsed (first layer all task 0, the next 9:1).", "",
              *_table("chain", chains, wkeys)]
    crowd = score_crowding()
    ckeys = ("nn", "nn_null", "stacked", "on_next")
    lines += ["", f"Crowding of one layer of 200 neurons at one per {SPACING ** 2:g} (a lattice's spacing "
              f"{SPACING}), in the density's length unit (`crowding_references`, `crowding_chain`): nn, the "
              "median nearest-neighbour distance, beside nn_null, the same for as many points uniform over the "
              "layer's convex hull; stacked, the fraction within 0.1 of another neuron; on_next, the fraction "
              "within 0.1 of a neuron of the next layer (20 neurons; only the two chains have one).", "",
              *_table("layout", crowd, ckeys)]
    terr = score_territories()
    tkeys = ("purity", "purity_null", "territory", "territory_null", "band", "band_null", "silhouette", "ari")
    lines += ["", "Territories (`territory_references`, `analysis/territory.py`): two tasks of 200 neurons at one "
              "density, from the paper's picture to none. purity: the share of a neuron's 5 nearest neighbours "
              "in its task; territory: the smallest share of a task's neurons in its largest connected piece "
              "(joined within 3 typical spacings); band: the dip of the density between the tasks' medians on "
              "the line through their centres, over the density at the medians (1: no dip, a cut).", "",
              *_table("layout", terr, tkeys)]
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    write_json(out.with_suffix(".json"), {"positions": scores, "chains": chains, "crowding": crowd,
                                          "territories": terr})
    print("\n".join(lines))
