"""The cluster and weight measures on synthetic references a person can judge: each measure must
rank them as a person would, stand clear of its permutation null where there is structure, and
sit on it where there is none."""
import networkx as nx
import numpy as np
import pytest
import torch
from networkx.algorithms.community import modularity

from spatialnet.analysis.modularity import chain_measures, cluster_quality, cross_task_share, layer_segregation, newman_q
from spatialnet.studies.references import synthetic_chain, synthetic_references

N = 200


def _references():
    return synthetic_references(N, 0)


@pytest.fixture(scope="module")
def scores():
    return {name: cluster_quality(torch.tensor(p), torch.tensor(g), 2) for name, (p, g) in _references().items()}


def test_silhouette_ranks_references_as_a_person_would(scores):
    s = {k: v["silhouette"] for k, v in scores.items()}
    assert s["blobs"] > s["halved disc"] > s["patches"] > s["interleaved"]
    assert s["blobs"] == pytest.approx(0.78, abs=0.03)        # the reference: 0.78
    assert s["halved disc"] == pytest.approx(0.30, abs=0.03)  # the reference: 0.30
    assert abs(s["patches"]) < 0.05 and abs(s["interleaved"]) < 0.05
    for name in ("blobs", "halved disc"):  # structure: far above the null, which sits at 0
        assert s[name] > scores[name]["silhouette_null"] + 0.25
    for v in scores.values():
        assert abs(v["silhouette_null"]) < 0.02


def test_ari_finds_the_tasks_only_in_clusters(scores):
    a = {k: v["ari"] for k, v in scores.items()}
    assert a["blobs"] == pytest.approx(1.0)
    # a sheet's shape suggests a cut: k-means finds it on a 2:1 sheet, not on a round one
    assert a["halved sheet 2:1"] > 0.5 and a["halved disc"] < 0.3
    assert abs(a["patches"]) < 0.05 and abs(a["interleaved"]) < 0.05
    assert a["blobs"] > a["halved sheet 2:1"] > a["patches"]
    for v in scores.values():
        assert abs(v["ari_null"]) < 0.02


def test_knn_segregation_cannot_tell_patches_or_a_halved_sheet_from_clusters():
    # why it is no longer reported: same-task patches score as high as two blobs, a halved disc nearly so
    seg = {k: layer_segregation(torch.tensor(p), torch.tensor(g)) for k, (p, g) in _references().items()}
    assert seg["patches"] == pytest.approx(seg["blobs"], abs=0.02)
    assert seg["halved disc"] > 0.8
    assert abs(seg["interleaved"]) < 0.1


def test_cluster_quality_ignores_dead_and_needs_two_tasks():
    p, g = _references()["blobs"]
    g = torch.tensor(g)
    base = cluster_quality(torch.tensor(p), g, 2)
    # dead neurons (-1) placed between the blobs change nothing
    p2 = torch.cat([torch.tensor(p), torch.zeros(30, 2)])
    g2 = torch.cat([g, torch.full((30,), -1)])
    assert cluster_quality(p2, g2, 2) == {**base, "live": N}
    one = cluster_quality(torch.tensor(p), torch.zeros(N, dtype=torch.long), 2)
    assert one["silhouette"] is None and one["ari"] is None


def _chain(kind, seed=0, sizes=(40, 40, 20)):
    return synthetic_chain(kind, seed, sizes)


def _full_graph_q(weights, labels):
    G = nx.Graph()
    comms = [set(), set()]
    for k, g in enumerate(labels):
        for i, t in enumerate(g.tolist()):
            if t >= 0:
                G.add_node((k, i))
                comms[t].add((k, i))
    for k in range(1, len(labels)):
        for i in range(weights[k].shape[0]):
            for j in range(weights[k].shape[1]):
                if labels[k][i] >= 0 and labels[k - 1][j] >= 0 and weights[k][i, j] != 0:
                    G.add_edge((k - 1, j), (k, i), weight=abs(float(weights[k][i, j])))
    return modularity(G, [c for c in comms if c], weight="weight")


@pytest.mark.parametrize("kind", ["disjoint", "noisy", "random"])
def test_newman_q_equals_networkx_on_the_full_graph(kind):
    w, g = _chain(kind, sizes=(12, 10, 6))
    g[1][3] = -1  # a dead neuron
    w[2] = -w[2]  # the sign plays no part: |w|
    assert newman_q(w, g, 2) == pytest.approx(_full_graph_q(w, g), rel=1e-9, abs=1e-12)


def test_weight_measures_rank_chains_as_a_person_would():
    m = {k: chain_measures(_chain(k)[1], 2, weights=_chain(k)[0]) for k in ("disjoint", "noisy", "random")}
    assert m["disjoint"]["cross_task_share"] == 0 and m["disjoint"]["share_norm"] == 0
    # two communities of about equal degree, nothing between: Q = 1 - sum (d_c / 2m)^2, about 1/2
    assert m["disjoint"]["newman_q"] == pytest.approx(0.5, abs=0.01)
    assert m["random"]["share_norm"] == pytest.approx(1.0, abs=0.05)
    assert abs(m["random"]["newman_q"]) < 0.03
    assert 0 < m["noisy"]["share_norm"] < 0.2 and 0.3 < m["noisy"]["newman_q"] < 0.5


def test_share_chance_is_the_permutation_mean_and_sees_collapsed_groups():
    w, g = _chain("random", seed=3)
    # a layer given whole to task 0 and the next mostly to it, as the greedy split does to regular nets
    g[0] = torch.zeros(40, dtype=torch.long)
    g[1] = (torch.arange(40) >= 36).long()
    g[1][:3] = -1
    sh = cross_task_share(w, g, 2)
    # the exact expectation against the mean over random relabellings with the same group sizes
    gen = torch.Generator().manual_seed(1)
    sims = [cross_task_share(w, [x[torch.randperm(len(x), generator=gen)] for x in g], 2)["cross_task_share"]
            for _ in range(400)]
    assert sh["share_chance"] == pytest.approx(float(np.mean(sims)), abs=4 * np.std(sims) / 20 + 1e-3)
    # the raw share of this structureless chain looks modular (about half the balanced chain's),
    # its normalised share says chance
    balanced = cross_task_share(*_chain("random", seed=3), 2)
    assert sh["cross_task_share"] < 0.6 * balanced["cross_task_share"]
    assert sh["share_norm"] == pytest.approx(1.0, abs=0.06)


@pytest.fixture(scope="module")
def crowd():
    from spatialnet.studies.references import score_crowding
    return score_crowding()


def test_crowding_ranks_references_as_a_person_would(crowd):
    nn = {k: v["nn"] for k, v in crowd.items()}
    st = {k: v["stacked"] for k, v in crowd.items()}
    # stacked on a few points << spread at random (a disc, or two blobs) < a lattice
    assert nn["stacked"] < 0.1 * nn["uniform disc"]
    assert nn["uniform disc"] < nn["lattice"] and nn["two spread blobs"] < nn["lattice"]
    assert nn["lattice"] == pytest.approx(0.6)
    assert nn["two spread blobs"] == pytest.approx(nn["uniform disc"], rel=0.3)
    assert st["stacked"] == 1.0 and st["lattice"] == 0.0
    assert st["uniform disc"] < 0.15 and st["two spread blobs"] < 0.15
    # the null: as many points uniform over the same hull; a random sheet sits at it, a lattice
    # above it, stacked points far below
    assert crowd["uniform disc"]["nn"] == pytest.approx(crowd["uniform disc"]["nn_null"], rel=0.15)
    assert crowd["lattice"]["nn"] > 1.8 * crowd["lattice"]["nn_null"]
    assert crowd["stacked"]["nn"] < 0.2 * crowd["stacked"]["nn_null"]
    # a layer collapsed onto the next one is seen by on_next, not by the within-layer measures alone
    assert crowd["on next"]["on_next"] == 1.0 and crowd["beside next"]["on_next"] < 0.1
    assert all(crowd[k]["on_next"] is None for k in ("stacked", "uniform disc", "lattice", "two spread blobs"))


def test_crowding_reads_in_the_density_length_and_ignores_the_dead():
    from spatialnet.analysis.modularity import crowding
    from spatialnet.studies.references import crowding_references
    p = torch.tensor(crowding_references()["lattice"])
    g = torch.zeros(len(p), dtype=torch.long)
    base = crowding(p, g)
    # the same layout at half the scale, read in a length unit half as long: the same numbers
    half = crowding(p / 2, g, length=0.5)
    assert half["nn"] == pytest.approx(base["nn"]) and half["stacked"] == base["stacked"]
    # dead neurons stacked on the live ones change nothing
    p2 = torch.cat([p, p[:50] + 0.01])
    g2 = torch.cat([g, torch.full((50,), -1)])
    assert crowding(p2, g2) == base
    assert crowding(p[:1], g[:1])["nn"] is None
    with pytest.raises(ValueError, match="length"):
        crowding(p, g, length=0.0)


def test_the_territory_measures_rank_references_as_a_person_would():
    """Discs with a band > touching discs > a sheet cut in two (a cut, no band) > interleaved
    lobes > mixed labels: each measure sees what it is for, and no single one sees every failure."""
    from spatialnet.studies.references import score_territories
    s = score_territories()
    band, touch, cut, lobes, mixed = (s[k] for k in ("discs with a band", "touching discs", "sheet cut in two",
                                                     "interleaved lobes", "mixed"))
    # band: an empty band between the tasks reads low, touching higher, a cut and mixed labels at 1
    assert band["band"] < 0.45 < touch["band"] < 0.7 < lobes["band"] and cut["band"] > 0.9 and mixed["band"] > 0.95
    # territory: one piece per task, except lobes on the far side of the other task
    assert min(band["territory"], touch["territory"], cut["territory"]) > 0.95 and lobes["territory"] < 0.75
    # purity: pure neighbourhoods everywhere but the mixed labels, which sit on the null
    assert min(band["purity"], touch["purity"], cut["purity"], lobes["purity"]) > 0.95
    assert abs(mixed["purity"] - mixed["purity_null"]) < 0.03 and mixed["purity_null"] == pytest.approx(0.5, abs=0.03)
    # the nulls: labels permuted break every territory's structure (band near 1, purity near 0.5)
    for v in (band, touch, lobes):
        assert v["band_null"] > 0.8 and v["purity_null"] < 0.55
    # what the silhouette alone cannot tell: the cut sheet scores about as high as touching discs
    assert abs(cut["silhouette"] - touch["silhouette"]) < 0.1 and cut["band"] - touch["band"] > 0.3


def test_the_output_sheets_silhouette_and_bad_input():
    from spatialnet.analysis.territory import output_silhouette, territory_measures
    heads = torch.arange(20) // 10
    grouped = torch.cat([torch.randn(10, 2) - 4, torch.randn(10, 2) + 4])
    assert output_silhouette(grouped, heads)["out_silhouette"] > 0.6
    assert abs(output_silhouette(torch.randn(20, 2), heads)["out_silhouette"]) < 0.2
    # one task alive: nothing to read, not an error
    assert territory_measures(torch.randn(10, 2), torch.zeros(10, dtype=torch.long))["band"] is None
