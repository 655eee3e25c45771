"""The protocol (docs/protocol.md): a fixed validation split carved from training, read-outs on it by
default, selection seeds >= 100 for sweeps, and positions saved every epoch (resume-safe)."""
import pytest
import torch

from spatialnet import data as data_mod
from spatialnet.config import TrainConfig
from spatialnet.training.positions import POSITIONS_FILE
from spatialnet.data import load_data
from spatialnet.training import train


def _rows(x):
    return {bytes(r.numpy()) for r in x}


def test_validation_split_is_fixed_disjoint_and_the_rest_trains():
    ds = data_mod.load_subset()
    a = data_mod.with_validation(ds, 400, "val")
    b = data_mod.with_validation(data_mod.load_subset(), 400, "val")
    assert len(a.train.mnist_x) == 1600 and len(a.test.mnist_x) == 400 and len(a.test.fashion_y) == 400
    assert torch.equal(a.test.mnist_x, b.test.mnist_x) and torch.equal(a.train.fashion_x, b.train.fashion_x)
    # validation and training images are disjoint and together are the original training set
    for name in ("mnist_x", "fashion_x"):
        val, rest, orig = (_rows(getattr(s, name)) for s in (a.test, a.train, ds.train))
        assert not val & rest and val | rest == orig
    # labels stay with their images
    vi, _ = data_mod.validation_indices(2000, 400)
    assert torch.equal(a.test.mnist_y, ds.train.mnist_y[vi])
    # eval_split test keeps the test sets, and training still excludes the validation images
    t = data_mod.with_validation(ds, 400, "test")
    assert torch.equal(t.test.mnist_x, ds.test.mnist_x) and torch.equal(t.train.mnist_x, a.train.mnist_x)
    assert data_mod.val_size("full") == 5000 and data_mod.val_size("subset") == 400


def test_config_reads_validation_by_default_and_refuses_val_without_one():
    cfg = TrainConfig(data="subset").validate()
    assert cfg.eval_split == "val"
    td = load_data(cfg)
    assert len(td.test_sets[0][0]) == 400 and td.eval_split == "val"
    assert len(load_data(TrainConfig(data="subset", eval_split="test").validate()).test_sets[0][0]) == 1000
    # the read-out split is not part of what a run computes: one checkpoint serves both
    assert "eval_split" not in cfg.identity() and "val_size" in cfg.identity()
    with pytest.raises(ValueError, match="validation split"):
        TrainConfig(val_size=0).validate()
    assert TrainConfig(val_size=0, eval_split="test").validate().val_size == 0


def test_sweep_refuses_report_seeds_and_the_test_sets(tmp_path):
    from spatialnet.studies.sweep import parse_space, run_sweep
    params = parse_space(["alpha=1:2"])
    base = TrainConfig(data="subset").validate()
    with pytest.raises(ValueError, match=">= 100"):
        run_sweep(base, "s", f"sqlite:///{tmp_path}/s.db", params, trials=0, seeds=(0, 1))
    with pytest.raises(ValueError, match="validation split only"):
        run_sweep(TrainConfig(data="subset", eval_split="test").validate(), "s", f"sqlite:///{tmp_path}/s.db",
                  params, trials=0, seeds=(100, 101))


def test_positions_saved_every_epoch_and_resume_keeps_them(tmp_path):
    cfg = TrainConfig(hidden=[8, 8, 8, 8], epochs=2, data="subset", max_train=64).validate()
    train(cfg, tmp_path, progress=False, log=lambda *a: None)
    track = torch.load(tmp_path / POSITIONS_FILE, weights_only=True)
    assert track["epochs"] == [0, 1, 2]
    assert sorted(track["layers"]) == ["2", "3", "4", "5"] and track["layers"]["4"].shape == (3, 8, 2)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert torch.equal(track["layers"]["4"][-1], ckpt["model"]["layers.3.positions"])
    assert not torch.equal(track["layers"]["4"][0], track["layers"]["4"][-1])  # they moved
    # continue to 4 epochs: the first rows are kept as they were, two are added
    cfg4 = cfg.replace(epochs=4)
    # (a longer run is another config; resume compares identities, so start it from a copy)
    train(cfg4, tmp_path / "b", progress=False, log=lambda *a: None)
    t4 = torch.load(tmp_path / "b" / POSITIONS_FILE, weights_only=True)
    assert t4["epochs"] == [0, 1, 2, 3, 4]
    assert torch.equal(t4["layers"]["3"][:3], track["layers"]["3"])  # same seed, same first epochs


def test_position_track_drops_rows_past_the_checkpoint(tmp_path):
    from spatialnet.model import build_model
    from spatialnet.training.positions import PositionTrack
    model = build_model(TrainConfig(hidden=[4, 4, 4, 4]).validate())
    t = PositionTrack(tmp_path / POSITIONS_FILE, 0, model)
    for e in (1, 2, 3):
        t.append(e, model)
    # a run killed after epoch 3 was saved to the track but whose checkpoint holds epoch 2
    again = PositionTrack(tmp_path / POSITIONS_FILE, 2, model)
    assert again.epochs == [0, 1, 2]
    again.append(3, model)
    assert torch.load(tmp_path / POSITIONS_FILE, weights_only=True)["epochs"] == [0, 1, 2, 3]
    regular = build_model(TrainConfig(net="regular").validate())
    PositionTrack(tmp_path / "r.pt", 0, regular)
    assert not (tmp_path / "r.pt").exists()  # no positions, no file


def test_multi_objective_sweep_scores_cluster_quality_and_dead(tmp_path):
    import statistics

    from tests.helpers import needs
    needs("optuna")
    from spatialnet.studies.sweep import parse_space, run_sweep
    base = TrainConfig(data="subset", hidden=[8, 8, 8, 8], epochs=1, max_train=64).validate()
    study = run_sweep(base, "m", f"sqlite:///{tmp_path}/m.db", parse_space(["alpha=1:2"]), trials=1,
                      seeds=(100, 101), runs_dir=tmp_path / "runs", objectives=("full", "drop", "silhouette",
                                                                                  "dead_fraction"), log=lambda *a: None)
    t = study.trials[0]
    assert len(t.values) == 4
    assert t.values[3] == pytest.approx(statistics.fmean(t.user_attrs["dead_fraction"]))
    sil = [x for x in t.user_attrs["silhouette"] if x is not None]
    assert t.values[2] == pytest.approx(statistics.fmean(sil) if sil else -1.0)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MAXIMIZE", "MINIMIZE"]
    with pytest.raises(ValueError, match="objectives"):
        run_sweep(base, "m", f"sqlite:///{tmp_path}/m.db", parse_space(["alpha=1:2"]), trials=0,
                  seeds=(100, 101), resume=True)
    with pytest.raises(ValueError, match="objectives"):
        run_sweep(base, "n", f"sqlite:///{tmp_path}/n.db", parse_space(["alpha=1:2"]), trials=0,
                  seeds=(100, 101), objectives=("drop", "full"))


def test_configs_from_before_the_validation_split_trained_on_everything():
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in ("val_size", "eval_split")}
    cfg = TrainConfig.from_dict(old)
    assert cfg.val_size == 0 and cfg.eval_split == "test"


def test_dead_tol_rereads_a_run(tmp_path):
    from spatialnet.studies.dead_tol import run_sensitivity
    cfg = TrainConfig(hidden=[8, 8, 8, 8], epochs=1, data="subset", max_train=64).validate()
    train(cfg, tmp_path / "concat-spatial-seed0", progress=False, log=lambda *a: None)
    recs = run_sensitivity([tmp_path / "concat-spatial-seed0"], tmp_path / "sens", tols=(0.0, 0.1, 10.0))
    by_tol = {r["dead_tol"]: r for r in recs}
    assert by_tol[0.0]["dead"] == 0 and by_tol[10.0]["dead"] > by_tol[0.1]["dead"]
    assert f"| {tmp_path.name}/concat-spatial | 1 | 10 |" in (tmp_path / "sens.md").read_text()


def test_targets_say_plainly_what_is_not_met():
    from spatialnet.studies.table1 import summarise, targets_markdown
    good = {"seeds": [0, 1], "full": [0.93, 0.93], "split": [0.93, 0.925], "silhouette": [0.6, 0.55],
            "silhouette_null": [0.0, 0.0], "ari": [0.95, 0.97], "ari_null": [0.0, 0.0], "share_norm": [0.05, 0.04],
            "dead_fraction": [0.4, 0.45], "nn": [0.5, 0.45], "stacked": [0.1, 0.2],
            "split_sizes": [{"3": [60, 60]}, {"3": [61, 59]}]}
    results = {"concat": {"spatial": good},
               "mix": {"spatial": {**good, "silhouette": [0.6, 0.25], "share_norm": [0.3, 0.3], "stacked": [0.1, 0.35]}}}
    for r in (results["concat"]["spatial"], results["mix"]["spatial"]):
        for k in ("cross_task_share", "share_chance", "newman_q", "dead", "dead_delta", "nn_null", "on_next"):
            r.setdefault(k, [0.0, 0.0])
    text = "\n".join(targets_markdown(summarise(results), results))
    concat, mix = (line for line in text.splitlines() if line.startswith("- "))
    assert "NOT met" not in concat
    # every seed must meet a target: the mean silhouette 0.425 and one seed's 0.25 fail, one seed stacked
    assert "silhouette ≥ 0.5 (every seed: 0.600, 0.250): **NOT met**" in mix
    assert "share_norm ≤ 0.1 (every seed: 0.300, 0.300): **NOT met**" in mix
    assert "stacked ≤ 0.3 (every seed: 0.100, 0.350): **NOT met**" in mix
    assert "nn ≥ 0.4 (every seed: 0.500, 0.450): met" in mix
