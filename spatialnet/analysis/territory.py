"""The shape of the tasks' territories in one layer: what a sheet cut in two cannot fake.

The silhouette and the ARI (``modularity.py``) reward two groups of positions that a line
divides; a uniform sheet cut in halves by task already scores well on both. The paper's picture is
more: each task holds one piece of ground (no lobes on the other's side), and an empty band
separates the tasks. Three measures read that shape, each over a layer's live neurons (labels
>= 0) and beside its null (the labels permuted over the live neurons, group sizes kept, the mean
over ``PERMUTATIONS`` draws with ``NULL_SEED``):

- ``purity``: the share of a live neuron's ``PURITY_K`` nearest live neighbours that share its
  task, the mean over live neurons (1: pure neighbourhoods; the null sits at about sum_t f_t^2).
- ``territory``: for each task, the share of its live neurons in its largest connected piece,
  neurons of the task joined when closer than ``REACH`` typical spacings (:func:`spacing`, over
  the layer's live neurons); the smallest over the tasks. 1: one piece per task; lobes
  on the far side of another task, or scattered neurons, read lower.
- ``band``: for each pair of tasks, their live neurons projected on the line through the two
  tasks' centres, the density smoothed (``scipy.stats.gaussian_kde``, Scott's bandwidth); the
  lowest density between the two tasks' medians over the lower of the densities at the medians.
  The largest (least separated) over the pairs. A sheet cut in two reads about 1 (no dip), two
  discs that touch about 0.6, two discs with an empty band between them well below.

And one for the output layer, whose labels are its heads:

- ``out_silhouette``: the silhouette of the output neurons' positions by task (all of them: an
  output neuron is never dead), beside its null. The paper's picture has one group per head.

References and their scores: ``spatialnet/references.py`` (``territory_references``).
"""
from __future__ import annotations

import numpy as np

PURITY_K = 5
REACH = 3.0
PERMUTATIONS = 20
NULL_SEED = 0
BAND_GRID = 256

TERRITORY_KEYS = ("purity", "purity_null", "territory", "territory_null", "band", "band_null")


def _live(positions, labels) -> tuple[np.ndarray, np.ndarray]:
    import torch
    p = positions.detach().cpu().double().numpy() if isinstance(positions, torch.Tensor) else np.asarray(positions, float)
    g = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    g = g.astype(np.int64)
    return p[g >= 0], g[g >= 0]


def purity(p: np.ndarray, g: np.ndarray, k: int = PURITY_K) -> float | None:
    """The mean share of a neuron's ``k`` nearest neighbours (in ``p``) with its label ``g``."""
    from scipy.spatial import cKDTree
    if len(p) < 2:
        return None
    k = min(k, len(p) - 1)
    _, idx = cKDTree(p).query(p, k=k + 1)
    return float(np.mean(g[idx[:, 1:]] == g[:, None]))


def spacing(p: np.ndarray) -> float:
    """The typical spacing of a layer: ``(volume / N)^(1/D)`` over the convex hull of its neurons,
    the lattice spacing at their mean density (the median nearest-neighbour distance where the
    hull has no volume). Not the nearest neighbour itself: at random, neurons stand about half a
    spacing from their nearest, and a few stacked ones would shrink it to nothing."""
    from scipy.spatial import ConvexHull, QhullError, cKDTree
    n, dim = p.shape
    if dim == 1:
        return float(np.ptp(p[:, 0]) / max(n - 1, 1))
    try:
        return float((ConvexHull(p).volume / n) ** (1.0 / dim))
    except (QhullError, ValueError):
        d, _ = cKDTree(p).query(p, k=2)
        return float(np.median(d[:, 1]))


def territory(p: np.ndarray, g: np.ndarray, reach: float = REACH, scale: float | None = None) -> float | None:
    """The smallest over tasks of the share of a task's neurons in its largest connected piece
    (joined within ``reach`` times ``scale``, default the layer's :func:`spacing`)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree
    tasks = np.unique(g)
    if len(tasks) < 2:
        return None
    r = reach * (spacing(p) if scale is None else scale)
    shares = []
    for t in tasks:
        q = p[g == t]
        if len(q) < 2:
            shares.append(1.0)
            continue
        pairs = cKDTree(q).query_pairs(r, output_type="ndarray")
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(q), len(q)))
        _, comp = connected_components(graph, directed=False)
        shares.append(np.bincount(comp).max() / len(q))
    return float(min(shares))


def band(p: np.ndarray, g: np.ndarray, grid: int = BAND_GRID) -> float | None:
    """The largest over pairs of tasks of the dip between them (see the module docstring)."""
    from scipy.stats import gaussian_kde
    tasks = np.unique(g)
    if len(tasks) < 2:
        return None
    worst = None
    for i, a in enumerate(tasks):
        for b in tasks[i + 1:]:
            pa, pb = p[g == a], p[g == b]
            if len(pa) < 2 or len(pb) < 2:
                continue
            axis = pb.mean(0) - pa.mean(0)
            norm = np.linalg.norm(axis)
            if not norm > 0:
                return 1.0  # the tasks share their centre: no line between them, no band
            xa, xb = pa @ axis / norm, pb @ axis / norm
            x = np.concatenate([xa, xb])
            if not np.ptp(x) > 0:
                return 1.0
            kde = gaussian_kde(x)
            ma, mb = np.median(xa), np.median(xb)
            lo, hi = min(ma, mb), max(ma, mb)
            between = kde(np.linspace(lo, hi, grid)).min()
            ends = min(kde([ma])[0], kde([mb])[0])
            v = float(between / ends) if ends > 0 else 1.0
            worst = v if worst is None else max(worst, v)
    return worst


def territory_measures(positions, labels, permutations: int = PERMUTATIONS, seed: int = NULL_SEED) -> dict:
    """``{purity, territory, band}`` of one layer's live neurons and their ``*_null``; None where
    fewer than two tasks have live neurons (or too few neurons to read)."""
    p, g = _live(positions, labels)
    out = dict.fromkeys(TERRITORY_KEYS)
    if len(np.unique(g)) < 2 or len(g) < 4:
        return out
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(g) for _ in range(permutations)]
    scale = spacing(p)
    for name, fn in (("purity", purity), ("territory", lambda p_, g_: territory(p_, g_, scale=scale)),
                     ("band", band)):
        out[name] = fn(p, g)
        nulls = [v for v in (fn(p, q) for q in perms) if v is not None]
        out[f"{name}_null"] = float(np.mean(nulls)) if nulls else None
    return out


def output_silhouette(positions, heads, permutations: int = PERMUTATIONS, seed: int = NULL_SEED) -> dict:
    """``{out_silhouette, out_silhouette_null}``: the output neurons' positions grouped by head."""
    from sklearn.metrics import pairwise_distances, silhouette_score
    p, g = _live(positions, heads)
    out = {"out_silhouette": None, "out_silhouette_null": None}
    if len(np.unique(g)) < 2 or len(g) <= len(np.unique(g)):
        return out
    d = pairwise_distances(p)
    rng = np.random.default_rng(seed)
    out["out_silhouette"] = float(silhouette_score(d, g, metric="precomputed"))
    if permutations:
        out["out_silhouette_null"] = float(np.mean([silhouette_score(d, rng.permutation(g), metric="precomputed")
                                                    for _ in range(permutations)]))
    return out
