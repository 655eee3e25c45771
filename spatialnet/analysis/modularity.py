"""How modular a split net is, read from its weights and positions, each measure beside its null.

The measures are functions of plain tensors along a chain of layers, so any package can feed
them: ``labels[k]`` the task of each neuron of layer k (``(N_k,)`` long, -1 = dead),
``positions[k]`` its ``(N_k, D)`` positions (or None), and ``weights[k]`` the ``(N_k, N_{k-1})``
matrix into layer k (``weights[0]`` unused, may be None). The last layer is the output, whose
labels are its heads. :func:`measures` is the thin wrapper for a ``SpatialMLP`` and the greedy
split's assignment (``split.py``).

Cluster quality of the positions (per layer, over its live neurons; the means are over the
hidden layers of the chain, the output's fixed heads left out). Standard implementations,
so the numbers compare with other papers':

- ``silhouette``: ``sklearn.metrics.silhouette_score`` of the positions with the tasks as
  clusters. 1: compact, separate clusters; about 0: no cluster structure by task; < 0: mixed.
- ``ari``: ``sklearn.metrics.adjusted_rand_score`` of ``KMeans(k = M, random_state=0)`` on the
  positions against the tasks: 1 = an unsupervised clustering finds exactly the tasks, 0 = chance.
- ``*_null``: the same measure with the task labels randomly permuted over the layer's live
  neurons (group sizes kept), the mean over ``PERMUTATIONS`` permutations drawn with
  ``NULL_SEED``. A measure means something only where it stands clear of its null.

Weights (between consecutive layers, live neurons only):

- ``cross_task_share``: Σ|w| over connections joining neurons of different tasks / Σ|w| over all.
- ``share_chance``: its exact expectation when the labels of each layer are permuted at random
  with the same group sizes: Σ_pairs S_p (1 - Σ_t f_t^out f_t^in) / Σ_pairs S_p, with S_p a pair's
  Σ|w| and f_t a layer's fraction of live neurons in task t. It depends on the group sizes: a
  layer given whole to one task (``[128, 0]``) makes the chance share small, so a raw share
  must be read against it.
- ``share_norm`` = share / chance: 1 = no more modular than chance, 0 = disjoint subnetworks.
- ``newman_q``: ``networkx.algorithms.community.modularity`` of the undirected graph whose
  nodes are the live neurons, edges the |w| between consecutive layers, under the tasks'
  partition. Q depends on the graph only through each community's internal weight and summed
  degree, so it is computed exactly on the quotient graph (one node per task, self-loops for
  the internal weight), which keeps 8x-wide nets cheap; a test pins it to networkx on the full
  graph.

Crowding of the positions (per layer, over its live neurons, distances in the unit of the
layer's density, ``lengths[k]``: V sums exp(-d / length); 1 for the paper's net). A
cluster measure rewards neurons stacked on a few points (a layer collapsed onto the 20 output
neurons has a high silhouette); these see it. ``scipy.spatial.cKDTree`` answers the queries:

- ``nn``: the median distance from a live neuron to its nearest live neighbour in the layer;
  ``nn_null``: the same for as many points drawn uniformly over the convex hull of the live
  neurons (the mean over ``CROWDING_DRAWS`` draws with ``NULL_SEED``): a sheet spread evenly over
  the same ground. Stacked neurons read far below it, a lattice above it.
- ``stacked``: the fraction of live neurons within ``STACK_RADIUS`` (0.1) of another live neuron
  of their layer.
- ``on_next``: the fraction of live neurons within ``STACK_RADIUS`` of a live neuron of the next
  layer of the chain (a hidden layer collapsed onto the one it feeds).

Dead neurons (label -1): counted, as a fraction of the hidden layers' neurons; the
accuracy with only them silenced is in ``evaluate.py`` (``dead_delta``).

5-NN segregation (:func:`layer_segregation`) is not reported. It is the share of a
neuron's nearest neighbours in its own task, and it rates a uniform sheet cut in halves and a
sheet of small same-task patches (no cluster per task at all) about as high as two separate blobs
(tests/spatialnet/test_analysis_modularity.py), so it cannot tell what the paper's claim needs; the
silhouette and the ARI can. It reads the archived records (results/archive/).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .stats import mean
from .territory import TERRITORY_KEYS, output_silhouette, territory_measures

PERMUTATIONS = 20
NULL_SEED = 0
KMEANS_SEED = 0
SEGREGATION_K = 5

STACK_RADIUS = 0.1
CROWDING_DRAWS = 5

CLUSTER_KEYS = ("silhouette", "silhouette_null", "ari", "ari_null")
CROWDING_KEYS = ("nn", "nn_null", "stacked", "on_next")


def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float64)


def _labels(g) -> np.ndarray:
    return (g.detach().cpu().numpy() if isinstance(g, torch.Tensor) else np.asarray(g)).astype(np.int64)


def cluster_quality(positions, labels, num_tasks: int, permutations: int = PERMUTATIONS,
                    seed: int = NULL_SEED) -> dict:
    """``{silhouette, silhouette_null, ari, ari_null, live}`` of one layer's live neurons
    (labels >= 0); the scores are None when fewer than two tasks have live neurons there."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, pairwise_distances, silhouette_score

    g = _labels(labels)
    live = g >= 0
    p, g = _np(positions)[live], g[live]
    out = {k: None for k in CLUSTER_KEYS} | {"live": int(live.sum())}
    present = np.unique(g)
    if len(present) < 2 or len(g) <= max(len(present), num_tasks):
        return out
    d = pairwise_distances(p)
    km = KMeans(n_clusters=num_tasks, n_init=10, random_state=KMEANS_SEED).fit_predict(p)
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(g) for _ in range(permutations)]
    out.update(silhouette=float(silhouette_score(d, g, metric="precomputed")),
               silhouette_null=float(np.mean([silhouette_score(d, q, metric="precomputed") for q in perms])),
               ari=float(adjusted_rand_score(g, km)),
               ari_null=float(np.mean([adjusted_rand_score(q, km) for q in perms])))
    return out


def _uniform_in_hull(p: np.ndarray, n: int, rng) -> np.ndarray | None:
    """``n`` points uniform over the convex hull of ``p`` (None when the hull has no area)."""
    from scipy.spatial import Delaunay, QhullError

    if p.shape[1] == 1:  # a line: its interval
        lo, hi = float(p.min()), float(p.max())
        return None if hi <= lo else lo + (hi - lo) * rng.random((n, 1))
    if len(p) < p.shape[1] + 1:
        return None
    try:
        tri = Delaunay(p)
    except (QhullError, ValueError):
        return None
    lo, hi = p.min(0), p.max(0)
    out = np.empty((0, p.shape[1]))
    while len(out) < n:  # rejection from the bounding box: the hull fills a good part of it
        q = lo + (hi - lo) * rng.random((4 * n, p.shape[1]))
        out = np.concatenate([out, q[tri.find_simplex(q) >= 0]])
    return out[:n]


def _nn_median(p: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    d, _ = cKDTree(p).query(p, k=2)
    return float(np.median(d[:, 1]))


def crowding(positions, labels, length: float = 1.0, next_positions=None, next_labels=None,
             draws: int = CROWDING_DRAWS, seed: int = NULL_SEED) -> dict:
    """``{nn, nn_null, stacked, on_next}`` of one layer's live neurons (labels >= 0), distances in
    units of ``length`` (see the module docstring); None where fewer than two neurons live (and
    ``on_next`` None without a next layer with live neurons)."""
    from scipy.spatial import cKDTree

    if not (isinstance(length, (int, float)) and math.isfinite(length) and length > 0):
        raise ValueError(f"length must be a positive number (the density's length unit), got {length!r}")
    g = _labels(labels)
    p = _np(positions)[g >= 0] / length
    out = {k: None for k in CROWDING_KEYS}
    if len(p) < 2:
        return out
    d, _ = cKDTree(p).query(p, k=2)
    out["nn"] = float(np.median(d[:, 1]))
    out["stacked"] = float(np.mean(d[:, 1] < STACK_RADIUS))
    rng = np.random.default_rng(seed)
    nulls = [_nn_median(q) for q in (_uniform_in_hull(p, len(p), rng) for _ in range(draws)) if q is not None]
    out["nn_null"] = float(np.mean(nulls)) if nulls else None  # no hull with volume: no uniform sheet to compare
    if next_positions is not None:
        q = _np(next_positions)
        if next_labels is not None:
            q = q[_labels(next_labels) >= 0]
        if len(q):
            dn, _ = cKDTree(q / length).query(p, k=1)
            out["on_next"] = float(np.mean(dn < STACK_RADIUS))
    return out


def cross_task_share(weights: Sequence, labels: Sequence, num_tasks: int) -> dict:
    """``{cross_task_share, share_chance, share_norm, per_pair}`` over the chain (see the module
    docstring); ``per_pair[k]`` is the pair (k-1, k)'s ``{share, chance}``. None where no live
    connection carries weight."""
    cross = total = expected = 0.0
    per_pair = {}
    for k in range(1, len(labels)):
        a = _np(weights[k]).__abs__()  # [N_k, N_{k-1}]
        g_out, g_in = _labels(labels[k]), _labels(labels[k - 1])
        lo, li = g_out >= 0, g_in >= 0
        a = a[np.ix_(lo, li)]
        g_out, g_in = g_out[lo], g_in[li]
        s = float(a.sum())
        if s <= 0:
            per_pair[k] = {"share": None, "chance": None}
            continue
        c = float(a[g_out[:, None] != g_in[None, :]].sum())
        f_out = np.bincount(g_out, minlength=num_tasks) / len(g_out)
        f_in = np.bincount(g_in, minlength=num_tasks) / len(g_in)
        ch = 1.0 - float(f_out @ f_in)
        per_pair[k] = {"share": c / s, "chance": ch}
        cross, total, expected = cross + c, total + s, expected + s * ch
    share = cross / total if total > 0 else None
    chance = expected / total if total > 0 else None
    return {"cross_task_share": share, "share_chance": chance,
            "share_norm": share / chance if share is not None and chance else None, "per_pair": per_pair}


def newman_q(weights: Sequence, labels: Sequence, num_tasks: int) -> float | None:
    """Newman's modularity Q (networkx) of the chain's |w| graph over live neurons under the
    tasks' partition, computed on the quotient graph (exact; see the module docstring)."""
    import networkx as nx
    from networkx.algorithms.community import modularity

    block = np.zeros((num_tasks, num_tasks))  # block[s, t]: Σ|w| between task s and task t neurons
    for k in range(1, len(labels)):
        a = np.abs(_np(weights[k]))
        g_out, g_in = _labels(labels[k]), _labels(labels[k - 1])
        lo, li = g_out >= 0, g_in >= 0
        a = a[np.ix_(lo, li)]
        one_out = np.eye(num_tasks)[g_out[lo]]  # [n_out, M]
        one_in = np.eye(num_tasks)[g_in[li]]    # [n_in, M]
        block += one_out.T @ a @ one_in
    if block.sum() <= 0:
        return None
    G = nx.Graph()
    G.add_nodes_from(range(num_tasks))
    for s in range(num_tasks):
        for t in range(s, num_tasks):
            w = block[s, t] + (block[t, s] if t != s else 0.0)
            if w > 0:
                G.add_edge(s, t, weight=w)
    return float(modularity(G, [{t} for t in range(num_tasks)], weight="weight"))


def layer_segregation(p: torch.Tensor, g: torch.Tensor, k: int = SEGREGATION_K) -> float | None:
    """Chance-corrected k-nearest-neighbour task agreement of live neurons (g >= 0) at ``p``:
    ``(observed - chance) / (1 - chance)``, chance = ``mean_i (n_task(i) - 1) / (n - 1)``. Not
    reported any more (see the module docstring)."""
    live = g >= 0
    p, g = p.detach()[live].double(), g[live]
    n = len(g)
    counts = torch.bincount(g)
    if n < 2 or int((counts > 0).sum()) < 2:
        return None
    kk = min(k, n - 1)
    d = torch.cdist(p, p)
    d.fill_diagonal_(float("inf"))
    nearest = d.topk(kk, dim=1, largest=False).indices  # [n, kk]
    observed = (g[nearest] == g[:, None]).double().mean()
    chance = ((counts[g] - 1).double() / (n - 1)).mean()
    return float((observed - chance) / (1 - chance))


def chain_measures(labels: Sequence, num_tasks: int, weights: Sequence | None = None,
                   positions: Sequence | None = None, names: Sequence | None = None,
                   permutations: int = PERMUTATIONS, seed: int = NULL_SEED,
                   lengths: Sequence | None = None) -> dict:
    """Every measure of a chain of layers (the last one the output), flat means plus
    ``per_layer`` keyed by ``names`` (default 0, 1, ...): group sizes, dead, cluster scores,
    crowding (distances in units of ``lengths[k]``, default 1), and the share into the layer
    from the one before."""
    names = [str(n) for n in (names if names is not None else range(len(labels)))]
    hidden = range(len(labels) - 1)
    per_layer = {}
    for k, name in enumerate(names):
        g = _labels(labels[k])
        row = {"sizes": [int((g == t).sum()) for t in range(num_tasks)], "dead": int((g < 0).sum()),
               "neurons": len(g)}
        if positions is not None and positions[k] is not None:
            row.update({c: v for c, v in cluster_quality(positions[k], g, num_tasks, permutations, seed).items()
                        if c in CLUSTER_KEYS})
            nxt = k + 1 < len(labels) and positions[k + 1] is not None
            row.update(crowding(positions[k], g, 1.0 if lengths is None else float(lengths[k]),
                                positions[k + 1] if nxt else None, labels[k + 1] if nxt else None, seed=seed))
            if k in hidden:
                row.update(territory_measures(positions[k], g, permutations, seed))
            else:
                row.update(output_silhouette(positions[k], g, permutations, seed))
        per_layer[name] = row
    out = {c: mean([per_layer[names[k]].get(c) for k in hidden])
           for c in (*CLUSTER_KEYS, *CROWDING_KEYS, *TERRITORY_KEYS)}
    last = per_layer[names[-1]]
    out.update(out_silhouette=last.get("out_silhouette"), out_silhouette_null=last.get("out_silhouette_null"))
    dead = {names[k]: per_layer[names[k]]["dead"] for k in range(len(labels))}
    n_hidden = sum(per_layer[names[k]]["neurons"] for k in hidden)
    out.update(dead=sum(dead.values()), dead_per_layer=dead,
               dead_fraction=sum(dead[names[k]] for k in hidden) / n_hidden if n_hidden else None)
    if weights is not None:
        sh = cross_task_share(weights, labels, num_tasks)
        for k, v in sh.pop("per_pair").items():
            per_layer[names[k]].update(share_in=v["share"], share_in_chance=v["chance"])
        out.update(sh, newman_q=newman_q(weights, labels, num_tasks))
    out["per_layer"] = per_layer
    return out


def measures(model, assignment: dict[int, torch.Tensor], num_tasks: int | None = None) -> dict:
    """Every measure of a split ``SpatialMLP``: ``assignment`` is ``{layer: (N_l,) task, -1 =
    dead}`` over consecutive layers ending at the output (``split.model_split``)."""
    layers = sorted(assignment)
    if num_tasks is None:
        num_tasks = int(max(int(g.max()) for g in assignment.values())) + 1
    pos = [getattr(model.layer(l), "positions", None) for l in layers]
    return chain_measures([assignment[l] for l in layers], num_tasks,
                          weights=[None] + [model.layer(l).weight for l in layers[1:]],
                          positions=pos if any(p is not None for p in pos) else None, names=layers,
                          lengths=[model.density_length(l) for l in layers])
