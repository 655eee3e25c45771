"""The console script end to end on tiny settings (embedded subset)."""
import json
from pathlib import Path

import pytest

from spatialnet.cli import main

TINY = ["--data", "subset", "--max-train", "256", "--batch-size", "64", "--hidden", "16,16,16,24", "--no-progress"]


def test_demo_split_plot_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "1", *TINY, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "EMBEDDED SUBSET" in text
    assert "share/chance" in text and "silhouette (null)" in text and "validation split" in text
    demo = json.loads((out / "demo.json").read_text())
    for net in ("spatial", "regular"):
        for f in ("checkpoint.pt", "metrics.json", "result.json"):
            assert (out / net / f).is_file(), f"{net}/{f}"
        res = json.loads((out / net / "result.json").read_text())
        assert res["config"]["net"] == net and res["config"]["mode"] == "concat"
        for k in ("full", "split", "cross_task_share", "share_norm", "silhouette", "newman_q", "dead_delta"):
            assert demo[net][k] == res[k], (net, k)
        # the printed row carries the same numbers
        assert f"{net:9s} {res['full']:7.4f} {res['split']:7.4f}" in text
    assert demo["regular"]["silhouette"] is None and demo["spatial"]["silhouette"] is not None
    assert demo["spatial"]["eval_split"] == "val"
    # the regular net ran at its own settings, the paper's lr and gain 1
    reg_cfg = json.loads((out / "regular" / "result.json").read_text())["config"]
    assert reg_cfg["lr"] == 0.005 and reg_cfg["init_gain"] == 1.0
    for f in ("figure1.png", "figure2.png"):
        assert (out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "positions.gif").read_bytes()[:6] == b"GIF89a"

    ckpt = out / "spatial" / "checkpoint.pt"
    assert main(["split", str(ckpt), "--json", str(tmp_path / "split.json")]) == 0
    text = capsys.readouterr().out
    assert "MNIST" in text and "Fashion-MNIST" in text and "mean" in text and "cross-task share" in text
    assert "Newman Q" in text and "only them silenced" in text
    ev = json.loads((tmp_path / "split.json").read_text())
    assert ev["full"] == demo["spatial"]["full"] and ev["cross_task_share"] == demo["spatial"]["cross_task_share"]
    assert main(["plot", str(ckpt), "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "figure2.png").stat().st_size > 10_000
    assert main(["plot", "--animate", str(out / "spatial"), "--out", str(tmp_path / "figs")]) == 0
    from PIL import Image
    with Image.open(tmp_path / "figs" / "positions.gif") as gif:
        assert gif.n_frames == 2  # epoch 0 and epoch 1


def test_train_then_resume_from_cli(tmp_path, capsys):
    args = ["train", "--mode", "mix", "--epochs", "1", *TINY, "--out", str(tmp_path)]
    assert main(args) == 0
    args[args.index("--epochs") + 1] = "1"
    assert main(args + ["--resume"]) == 0  # already finished: nothing to do, same result
    assert "resuming" in capsys.readouterr().out


def test_regular_checkpoint_cannot_be_plotted(tmp_path, capsys):
    assert main(["train", "--net", "regular", "--epochs", "1", *TINY, "--out", str(tmp_path)]) == 0
    assert main(["plot", str(tmp_path / "checkpoint.pt")]) == 2
    assert "no neuron positions" in capsys.readouterr().err


@pytest.mark.parametrize("args,msg", [
    (["train", "--mode", "stacked"], "mode must be one of"),
    (["train", "--spatial-layers", "3,4,9"], "spatial_layers index 9 is out of range"),
    (["train", "--hidden", "16,16", "--spatial-layers", "3,4,5"], "spatial_layers index 4 is out of range"),
    (["reproduce", "--modes", "concat,both"], "mode must be one of"),
])
def test_bad_arguments_are_clear_errors(tmp_path, capsys, args, msg):
    assert main([*args, "--data", "subset", "--out", str(tmp_path)]) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "checkpoint.pt").exists()


def test_bad_checkpoints_from_cli(tmp_path, capsys):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert main(["split", str(tmp_path / "junk.pt")]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_reproduce_tiny(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["reproduce", "--epochs", "1", "--seeds", "0,1", "--workers", "1", *TINY[:-1],
                 "--out", str(out), "--runs-dir", str(tmp_path / "runs")]) == 0
    table = json.loads((out / "table1.json").read_text())
    for mode in ("concat", "mix", "sequential"):
        for net in ("regular", "spatial"):
            r = table["results"][mode][net]
            assert len(r["full"]) == len(r["split"]) == 2 and len(r["full_per_task"][0]) == 2
    assert table["settings"]["config"]["hidden"] == [16, 16, 16, 24]
    assert table["settings"]["seeds"] == [0, 1]
    md = (out / "table1.md").read_text()
    assert "| sequential | spatial |" in md and "0.84 ± 0.08" in md
    for mode in ("concat", "mix", "sequential"):
        assert (out / f"figure1-{mode}.png").is_file() and (out / f"figure2-{mode}.png").is_file()
        for k in ("cross_task_share", "share_norm", "silhouette", "ari_null", "newman_q", "dead_fraction"):
            assert len(table["results"][mode]["spatial"][k]) == 2
    assert all(s is None for s in table["results"]["concat"]["regular"]["silhouette"])
    assert "| concat | spatial |" in md.split("| mode | net | silhouette")[1]
    assert "read on the **test sets**" in md and table["settings"]["eval_split"] == "test"
    # a second call finds every run finished and retrains nothing
    mtime = (tmp_path / "runs" / "mix-spatial-seed1" / "checkpoint.pt").stat().st_mtime_ns
    assert main(["reproduce", "--epochs", "1", "--seeds", "0,1", "--workers", "1", *TINY[:-1],
                 "--out", str(out), "--runs-dir", str(tmp_path / "runs")]) == 0
    assert (tmp_path / "runs" / "mix-spatial-seed1" / "checkpoint.pt").stat().st_mtime_ns == mtime


def test_grid_of_widths_and_of_tasks(tmp_path, capsys):
    base = ["--epochs", "1", "--seeds", "0,1", "--workers", "1", "--modes", "concat", *TINY[:-3],
            "--out", str(tmp_path)]
    assert main(["grid", "--name", "wide", "--hidden-list", "8,8,8,12;16,16,16,24", *base,
                 "--runs-dir", str(tmp_path / "runs-w")]) == 0
    wide = json.loads((tmp_path / "wide.json").read_text())
    assert len(wide["records"]) == 2 * 2 * 2  # variants x nets x seeds
    for r in wide["records"]:
        for k in ("hidden", "mode", "net", "seed", "full", "split", "drop", "cross_task_share", "share_norm",
                  "silhouette", "ari", "newman_q", "dead", "dead_delta", "settings", "effective"):
            assert k in r, k
        assert r["drop"] == pytest.approx(r["full"] - r["split"])
        assert (r["silhouette"] is None) == (r["net"] == "regular")
    assert {tuple(r["hidden"]) for r in wide["records"]} == {(8, 8, 8, 12), (16, 16, 16, 24)}
    assert (tmp_path / "wide" / "figure1-8-8-8-12-concat.png").is_file()
    # read back only: a third width is planned, nothing trains, the record names what did not run
    assert main(["grid", "--name", "wide", "--hidden-list", "8,8,8,12;16,16,16,24;24,24,24,36", *base,
                 "--runs-dir", str(tmp_path / "runs-w"), "--finished-only"]) == 0
    back = json.loads((tmp_path / "wide.json").read_text())
    assert len(back["records"]) == 8
    assert {(r["net"], r["seed"], r["full"]) for r in back["records"]} == {
        (r["net"], r["seed"], r["full"]) for r in wide["records"]}
    assert sorted(back["settings"]["not_run"]) == sorted(
        f"24-24-24-36-concat-{n}-seed{s}" for n in ("spatial", "regular") for s in (0, 1))
    assert not any((tmp_path / "runs-w").glob("24-24-24-36-*"))
    table = (tmp_path / "wide" / "table.md").read_text()
    assert "not run to the end" in table and "`24-24-24-36-concat-spatial-seed0`" in table
    rerun = back["settings"]["rerun"]
    assert "--finished-only" not in rerun and "--out" not in rerun and "--runs-dir" not in rerun
    assert main(["grid", "--name", "tasks", "--tasks-list", "mnist,fashion,pmnist1", *base,
                 "--runs-dir", str(tmp_path / "runs-t")]) == 0
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert {r["num_tasks"] for r in tasks["records"]} == {3} and len(tasks["records"]) == 4
    assert all(len(r["full_per_task"]) == 3 for r in tasks["records"])
    md = (tmp_path / "tasks" / "table.md").read_text()
    assert "permuted MNIST 1" in md and "| M=3 (mnist,fashion,pmnist1) | concat | spatial | 2 |" in md
    assert main(["grid", "--name", "x", *base]) == 2
    assert "exactly one of --hidden-list and --tasks-list" in capsys.readouterr().err


def test_grid_table_rows_of_fewer_tasks_fill_every_column():
    from spatialnet.studies.grid import grid_markdown

    def rec(tasks, net):
        m = len(tasks)
        return {"variant": f"M={m}", "tasks": tasks, "num_tasks": m, "mode": "concat", "net": net, "seed": 0,
                "full": 0.9, "split": 0.8, "drop": 0.1, "cross_task_share": 0.1, "dead": 0,
                **{k: None for k in ("silhouette", "silhouette_null", "ari", "ari_null", "share_norm", "newman_q")},
                "dead_fraction": 0.0,
                "full_per_task": [0.9] * m, "split_per_task": [0.8] * m}
    records = [rec(["mnist", "fashion", "pmnist1"], "regular"), rec(["mnist", "fashion", "pmnist1", "pmnist2"], "regular")]
    md = grid_markdown("tasks", records, {"axis": "tasks", "data": "full", "variants": ["M=3", "M=4"],
                                         "machine": "m", "rerun": "r", "wall_seconds": 1})
    rows = md.split("Per task")[1].splitlines()
    rows = [l for l in rows if l.startswith("|")]
    assert len(rows) == 4 and len({l.count("|") for l in rows}) == 1, rows
    assert rows[2].endswith("| – |") and "permuted MNIST 2 0.900 → 0.800" in rows[3]


def test_a_mode_runs_its_own_default_and_says_so(tmp_path, capsys):
    from spatialnet.config import CHOSEN, TrainConfig
    cfg = TrainConfig(mode="sequential")
    assert (cfg.alpha, cfg.beta, cfg.pos_lr_scale, cfg.cost_warmup) == tuple(
        CHOSEN["sequential"][k] for k in ("alpha", "beta", "pos_lr_scale", "cost_warmup"))
    assert CHOSEN["sequential"] != CHOSEN["concat"]
    assert main(["train", "--mode", "sequential", "--epochs", "1", *TINY, "--out", str(tmp_path / "seq")]) == 0
    said = capsys.readouterr().out
    assert "sequential mode runs its own default setting" in said and f"beta {CHOSEN['sequential']['beta']:g}" in said
    saved = json.loads((tmp_path / "seq" / "result.json").read_text())["config"]
    assert saved["beta"] == CHOSEN["sequential"]["beta"]
    # a flag given wins, and the command no longer claims the mode's own value for it
    assert main(["train", "--mode", "sequential", "--epochs", "1", "--beta", "2", *TINY,
                 "--out", str(tmp_path / "given")]) == 0
    said = capsys.readouterr().out
    assert "beta " not in said.split("own default setting")[-1].split(")")[0]
    assert json.loads((tmp_path / "given" / "result.json").read_text())["config"]["beta"] == 2.0
    # concat runs the concat default silently
    assert main(["train", "--mode", "concat", "--epochs", "1", *TINY, "--out", str(tmp_path / "cat")]) == 0
    assert "own default" not in capsys.readouterr().out


def test_wide_study_reads_each_run_epoch_by_epoch(tmp_path):
    """The wide study on a tiny 1x run: its targets, and the picture's trajectory, whose last epoch
    is the run's read-out (the same positions and split, read twice by different code)."""
    assert main(["study", "wide", "--widths", "1", "--seeds", "1:0", "--modes", "concat", "--epochs", "3",
                 "--workers", "1", *TINY[:-3], "--out", str(tmp_path), "--runs-dir", str(tmp_path / "runs")]) == 0
    rec = json.loads((tmp_path / "wide.json").read_text())["records"]
    assert [(r["net"], r["seed"]) for r in rec] == [("spatial", 0)]
    text = (tmp_path / "wide" / "trajectories.md").read_text()
    row = next(l for l in text.splitlines() if l.startswith("| 1x | concat | 0 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 3 + 3 + 2 and "–" not in cells[3:6]  # epochs 1, 2 and 3, each read
    sil, band, out = (float(x) for x in cells[5].split(" / "))
    assert sil == pytest.approx(rec[0]["silhouette"], abs=0.005)
    assert band == pytest.approx(rec[0]["band"], abs=0.005)
    assert out == pytest.approx(rec[0]["out_silhouette"], abs=0.005)
    assert (tmp_path / "wide" / "trajectories.png").is_file()
    assert "## 1x (128,128,128,256), concat" in (tmp_path / "wide" / "targets.md").read_text()


def test_table1_at_a_width_names_its_record_and_the_runs_not_yet_trained(tmp_path, capsys):
    out, runs = tmp_path / "results", tmp_path / "runs"
    assert main(["study", "table1", "--width", "2", "--finished-only", "--modes", "concat", "--data", "subset",
                 "--out", str(out), "--runs-dir", str(runs)]) == 0
    rec = json.loads((out / "table1-2x.json").read_text())
    assert rec["settings"]["width"] == 2 and rec["settings"]["config"]["hidden"] == [256, 256, 256, 512]
    assert rec["settings"]["seeds"] == [0, 1, 2]  # the wide report seeds
    assert sorted(rec["settings"]["planned"]) == sorted(
        f"concat-{v}-seed{s}" for v in ("spatial", "regular", "l1-matched", "frozen") for s in (0, 1, 2))
    assert "concat-l1-matched-seed2" in (out / "table1-2x.md").read_text()
    assert main(["study", "table1", "--width", "2", "--hidden", "8,8,8,8", "--data", "subset",
                 "--out", str(out), "--runs-dir", str(runs)]) == 2
    assert "--width 2 disagree" in capsys.readouterr().err


def test_the_l1_matched_control_is_l1_only_at_its_chosen_strength():
    from spatialnet.config import CHOSEN, TrainConfig
    from spatialnet.studies.table1 import L1_MATCHED, variant_config
    base = TrainConfig().validate()
    for mode in ("concat", "sequential"):
        cfg = variant_config(base, mode, "l1-matched", 3)
        assert cfg.transport == "constant" and cfg.seed == 3
        assert cfg.alpha == pytest.approx(CHOSEN[mode]["alpha"] * L1_MATCHED[mode])
        assert variant_config(base, mode, "l1-only", 3).alpha == CHOSEN[mode]["alpha"]


def test_drop_width_reads_each_width_from_one_record(tmp_path, capsys):
    res = tmp_path / "results"
    res.mkdir()
    t1 = {"seeds": [0, 1], "full": [0.9, 0.8], "split": [0.9, 0.7], "drop_balanced": [0.01, 0.02]}
    (res / "table1.json").write_text(json.dumps({"settings": {"width": 1, "config": {"hidden": [128, 128, 128, 256]}},
                                                 "results": {"concat": {"regular": t1}}}))
    # an 8x record run in parts: concat's regular net trained, mix's planned only
    (res / "table1-8x.json").write_text(json.dumps({"settings": {"width": 8}, "results": {
        "concat": {"regular": {**t1, "seeds": [0]}}, "mix": {"regular": {k: [] for k in t1}}}}))
    wide = [{"hidden": h, "mode": m, "net": "regular", "seed": 0, "drop": d}
            for m, h, d in (("concat", [128, 128, 128, 256], 0.5), ("concat", [256, 256, 256, 512], 0.25),
                            ("concat", [1024, 1024, 1024, 2048], 0.4), ("mix", [1024, 1024, 1024, 2048], 0.3))]
    (res / "wide.json").write_text(json.dumps({"records": wide}))
    assert main(["study", "drop-width", "--results", str(res), "--out", str(tmp_path / "dw")]) == 0
    rows = {(r["split"], r["width"]): r for r in json.loads((tmp_path / "dw.json").read_text())["rows"]
            if r["mode"] == "concat"}
    # 1x from Table 1 alone (the wide record's 1x run is the same net read again), 2x from wide.json
    assert rows[("greedy split", 1)]["mean"] == pytest.approx(0.05) and rows[("greedy split", 1)]["n"] == 2
    assert rows[("balanced split", 1)]["mean"] == pytest.approx(0.015)
    assert rows[("greedy split", 2)]["mean"] == 0.25 and rows[("greedy split", 2)]["source"] == "wide.json"
    # 8x: concat from the Table 1 record alone, mix (not in it yet) from the width study
    assert rows[("greedy split", 8)] == {**rows[("greedy split", 8)], "mean": 0.0, "n": 1, "source": "table1-8x.json"}
    mix = [r for r in json.loads((tmp_path / "dw.json").read_text())["rows"] if r["mode"] == "mix"]
    assert [(r["width"], r["mean"], r["source"]) for r in mix] == [(8, 0.3, "wide.json")]
    assert (tmp_path / "dw.png").stat().st_size > 1000


def test_width_probes_only_trains_the_matching_runs_and_keeps_the_others(tmp_path, monkeypatch):
    from spatialnet.studies import width_probes as wp
    probes = (("base", 1, "concat", (100, 101), {}), ("alpha x 0.6", 1, "concat", (100,), {"alpha": 0.5}))
    trained = []
    monkeypatch.setattr(wp, "PROBES", probes)
    monkeypatch.setattr(wp, "run_jobs", lambda jobs, workers, log: trained.extend(
        (json.dumps(cfg["alpha"]), Path(d).name) for cfg, d, *_ in jobs))
    picture = [{"epoch": e, "silhouette": 0.1 * e, "band": 1.0, "out_silhouette": 0.0} for e in range(21)]
    monkeypatch.setattr(wp, "picture_trajectory", lambda d: picture)
    out = tmp_path / "wp"
    held = {"probe": "base", "width": 1, "mode": "concat", "seed": 101, "picture": picture, "time_to_form": 3.0}
    out.with_suffix(".json").write_text(json.dumps({"records": [held]}))
    args = ["study", "width-probes", "--runs-dir", str(tmp_path / "runs"), "--out", str(out)]
    assert main(args + ["--only", "1x-concat-alpha*"]) == 0
    assert trained == [("0.5", "1x-concat-alpha-x-0-6-seed100")]
    records = json.loads(out.with_suffix(".json").read_text())["records"]
    # base seed 100 was never read (not kept), base seed 101 kept as it was, the probe read anew
    assert [(r["probe"], r["seed"], r["time_to_form"]) for r in records] == [("base", 101, 3.0),
                                                                            ("alpha x 0.6", 100, 18.0)]
    assert "Rerun: `spatialnet study width-probes`" in out.with_suffix(".md").read_text()
    assert "--only" not in out.with_suffix(".md").read_text()  # the record holds every probe
    with pytest.raises(ValueError, match="--only"):
        wp.run(type("A", (), {"runs_dir": str(tmp_path), "out": str(out), "only": "8x-*", "workers": 1,
                              "data_dir": None, "rerun": ""})())
