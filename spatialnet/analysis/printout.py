"""What the console shows of a read-out (``evaluate.evaluate``): one net in full, or several side by side."""
from __future__ import annotations


def _fmt(v, spec=".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def print_eval(ev: dict, header: str) -> None:
    from ..data.tasks import display_name
    print(header)
    print(f"{'task':18s} {'full':>8s} {'split':>8s} {'drop':>8s}")
    for t, name in enumerate(ev["tasks"]):
        f, s = ev["full_per_task"][t], ev["split_per_task"][t]
        print(f"{display_name(name):18s} {f:8.4f} {s:8.4f} {f - s:8.4f}")
    print(f"{'mean':18s} {ev['full']:8.4f} {ev['split']:8.4f} {ev['full'] - ev['split']:8.4f}")
    print("neurons per task in the split layers:",
          ", ".join(f"layer {l}: {'/'.join(map(str, n))}" + (f" (+{ev['dead_per_layer'][l]} dead)"
                                                              if ev["dead_per_layer"].get(l) else "")
                    for l, n in ev["split_sizes"].items()))
    print(f"positions (live neurons, mean over the hidden split layers; null = labels permuted): "
          f"silhouette {_fmt(ev['silhouette'])} (null {_fmt(ev['silhouette_null'])}), "
          f"ARI of k-means {_fmt(ev['ari'])} (null {_fmt(ev['ari_null'])})")
    print(f"crowding (in the density's length unit): median nearest live neighbour {_fmt(ev.get('nn'))} "
          f"(uniform over the same ground {_fmt(ev.get('nn_null'))}), stacked within 0.1 of another "
          f"{_fmt(ev.get('stacked'), '.0%')}, on a neuron of the next layer {_fmt(ev.get('on_next'), '.0%')}")
    print(f"territories: purity {_fmt(ev.get('purity'))} (null {_fmt(ev.get('purity_null'))}), the largest piece of a "
          f"task {_fmt(ev.get('territory'), '.0%')}, band between the tasks {_fmt(ev.get('band'))} (1: none; null "
          f"{_fmt(ev.get('band_null'))}), output sheet's silhouette by task {_fmt(ev.get('out_silhouette'))}")
    print(f"weights: cross-task share of sum |w| {_fmt(ev['cross_task_share'])} (chance {_fmt(ev['share_chance'])}, "
          f"normalised {_fmt(ev['share_norm'])}: 1 = chance, 0 = disjoint), Newman Q {_fmt(ev['newman_q'])}")
    print(f"dead neurons: {ev['dead']} ({_fmt(ev['dead_fraction'], '.0%')} of the hidden split layers); full "
          f"accuracy with only them silenced {ev['full_dead_silenced']:.4f} (delta {ev['dead_delta']:+.4f})")
    print(f"read on the {'validation split' if ev.get('eval_split') == 'val' else 'test sets'}")


def print_nets_table(results: dict, eval_split: str) -> None:
    """One row per net (``{name: read-out}``): accuracy, drop and the modularity with its nulls."""
    print(f"{'net':9s} {'full':>7s} {'split':>7s} {'drop':>7s} {'silhouette (null)':>18s} {'ARI (null)':>14s} "
          f"{'nn (null)':>14s} {'stacked':>8s} {'band':>5s} {'out sil':>7s} {'share/chance':>12s} {'Newman Q':>9s} "
          f"{'dead':>5s}")
    for net, r in results.items():
        print(f"{net:9s} {r['full']:7.4f} {r['split']:7.4f} {r['drop']:7.4f} "
              f"{_fmt(r['silhouette']) + ' (' + _fmt(r['silhouette_null']) + ')':>18s} "
              f"{_fmt(r['ari']) + ' (' + _fmt(r['ari_null']) + ')':>14s} "
              f"{_fmt(r.get('nn')) + ' (' + _fmt(r.get('nn_null')) + ')':>14s} {_fmt(r.get('stacked'), '.0%'):>8s} "
              f"{_fmt(r.get('band'), '.2f'):>5s} {_fmt(r.get('out_silhouette'), '.2f'):>7s} "
              f"{_fmt(r['share_norm']):>12s} {_fmt(r['newman_q']):>9s} {r['dead']:5d}")
    print(f"read on the {'validation split' if eval_split == 'val' else 'test sets'}; share/chance: the "
          f"cross-task share of sum |w| over its value under random relabelling (1 = chance, 0 = disjoint); "
          f"nn: the median distance to the nearest live neuron of the layer in the density's length unit "
          f"(null: as many points uniform over the same ground); stacked: within 0.1 of another; band: the "
          f"dip of the density between the tasks (1: none); out sil: the output neurons' silhouette by task")
