"""Training on the embedded subset: checkpoints, resume, bad checkpoints, NaN loss, atomic files."""
import json

import pytest
import torch

from spatialnet import data as D
from spatialnet._io import write_json
from spatialnet.training import NonFiniteLossError, train
from spatialnet.config import TrainConfig
from spatialnet.analysis.evaluate import evaluate
from spatialnet.training.checkpoint import load_checkpoint, model_from_checkpoint
from spatialnet.data import load_data

TINY = dict(data="subset", max_train=256, batch_size=64, hidden=[16, 16, 16, 24], epochs=2)


@pytest.fixture(scope="module")
def subset():
    return D.load_subset()


def _quiet(*a):
    pass


def _cfg(**kw):
    return TrainConfig(**{**TINY, **kw}).validate()


@pytest.mark.parametrize("mode", ["concat", "mix", "sequential"])
@pytest.mark.parametrize("net", ["regular", "spatial"])
def test_train_one_epoch_every_mode(tmp_path, subset, mode, net):
    res = train(_cfg(mode=mode, net=net, epochs=1), tmp_path, progress=False, dataset=subset, log=_quiet)
    assert 0 <= res["split"] <= 1 and 0 <= res["full"] <= 1
    assert len(res["full_per_task"]) == 2
    assert res["split_sizes"]["5"] == [10, 10]
    assert sum(res["split_sizes"]["4"]) == 24
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["data"] == "subset" and len(metrics["history"]) == 1


def test_learns_on_subset(tmp_path, subset):
    res = train(_cfg(max_train=2000, epochs=40, net="regular", hidden=[64, 64, 64, 64]), tmp_path,
                progress=False, dataset=subset, log=_quiet)
    assert min(res["full_per_task"]) > 0.5  # chance is 0.1


def test_checkpoint_round_trip(tmp_path, subset):
    cfg = _cfg(epochs=1)
    res = train(cfg, tmp_path, progress=False, dataset=subset, log=_quiet)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["epoch"] == 1 and ckpt["config"] == cfg
    model, cfg2, _ = model_from_checkpoint(tmp_path / "checkpoint.pt")
    ev = evaluate(model, cfg2, load_data(cfg2, dataset=subset))
    assert ev["full"] == res["full"] and ev["split"] == res["split"]
    assert "positions" in "".join(model.state_dict())


def test_resume_equals_uninterrupted(tmp_path, subset):
    full = train(_cfg(epochs=2), tmp_path / "a", progress=False, dataset=subset, log=_quiet)
    # "kill" after epoch 1: a 1-epoch run's checkpoint is not the same (its schedule ends at 1),
    # so stop a 2-epoch run by failing its second epoch instead
    calls = {"n": 0}
    real = D.task_loss_sum

    def dies_in_epoch_2(*a):
        calls["n"] += 1
        if calls["n"] > 4:  # 256 images / 64 = 4 steps per epoch
            raise KeyboardInterrupt
        return real(*a)
    import spatialnet.training.loop as T
    T.data_mod.task_loss_sum = dies_in_epoch_2
    try:
        with pytest.raises(KeyboardInterrupt):
            train(_cfg(epochs=2), tmp_path / "b", progress=False, dataset=subset, log=_quiet)
    finally:
        T.data_mod.task_loss_sum = real
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1
    # the killed run had trained for "1000 s": the resumed one's clock continues from there
    raw = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    raw["history"][-1]["seconds"] = 1000.0
    torch.save(raw, tmp_path / "b" / "checkpoint.pt")
    resumed = train(_cfg(epochs=2), tmp_path / "b", resume=True, progress=False, dataset=subset, log=_quiet)
    assert 1000.0 < resumed["train_seconds"] < 1100.0
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=k)
    assert resumed["full"] == full["full"] and b["epoch"] == 2
    with pytest.raises(ValueError, match="another config"):
        train(_cfg(epochs=2, lr=0.001), tmp_path / "b", resume=True, progress=False, dataset=subset, log=_quiet)


def test_a_finished_run_extends_on_a_constant_schedule(tmp_path, subset):
    # 2 epochs, then 3 more on resume: the same steps as 5 epochs at once (a constant schedule's
    # lr never depends on the run's length), the positions file and the kept checkpoints follow
    straight = train(_cfg(epochs=5), tmp_path / "a", progress=False, dataset=subset, log=_quiet)
    train(_cfg(epochs=2, keep_epochs=[0, 2]), tmp_path / "b", progress=False, dataset=subset, log=_quiet)
    logs = []
    extended = train(_cfg(epochs=5, keep_epochs=[4]), tmp_path / "b", resume=True, progress=False, dataset=subset,
                     log=logs.append)
    assert any("extending" in m and "from 2 to 5 epochs" in m for m in logs)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=k)
    assert extended["full"] == straight["full"] and b["epoch"] == 5 and len(b["history"]) == 5
    assert torch.load(tmp_path / "b" / "positions.pt", weights_only=True)["epochs"] == [0, 1, 2, 3, 4, 5]
    assert {p.name for p in (tmp_path / "b").glob("checkpoint-e*.pt")} == {"checkpoint-e0.pt", "checkpoint-e2.pt",
                                                                           "checkpoint-e4.pt"}
    assert load_checkpoint(tmp_path / "b" / "checkpoint-e0.pt")["epoch"] == 0
    # a cosine schedule's every step depends on the run's length: refused, saying why
    train(_cfg(epochs=2, schedule="cosine"), tmp_path / "c", progress=False, dataset=subset, log=_quiet)
    with pytest.raises(ValueError, match="only a constant schedule can be extended"):
        train(_cfg(epochs=3, schedule="cosine"), tmp_path / "c", resume=True, progress=False, dataset=subset,
              log=_quiet)
    # fewer epochs, or another change besides, is another config
    with pytest.raises(ValueError, match="another config"):
        train(_cfg(epochs=6, lr=0.001), tmp_path / "b", resume=True, progress=False, dataset=subset, log=_quiet)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, subset, monkeypatch):
    import spatialnet.training.loop as T
    real, calls = D.task_loss_sum, {"n": 0}

    def nan_in_epoch_2(*a):
        calls["n"] += 1
        return real(*a) * (float("nan") if calls["n"] > 5 else 1.0)  # 4 steps per epoch
    monkeypatch.setattr(T.data_mod, "task_loss_sum", nan_in_epoch_2)
    with pytest.raises(NonFiniteLossError, match="nan at epoch 2, step 2.*last good checkpoint") as e:
        train(_cfg(epochs=3), tmp_path, progress=False, dataset=subset, log=_quiet)
    assert isinstance(e.value, ValueError)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["epoch"] == 1 and len(ckpt["history"]) == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert len(json.loads((tmp_path / "metrics.json").read_text())["history"]) == 1
    monkeypatch.setattr(T.data_mod, "task_loss_sum", real)
    res = train(_cfg(epochs=3), tmp_path, resume=True, progress=False, dataset=subset, log=_quiet)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 3 and res["full"] > 0


def test_corrupt_and_foreign_checkpoints(tmp_path, subset):
    train(_cfg(epochs=1), tmp_path, progress=False, dataset=subset, log=_quiet)
    good = (tmp_path / "checkpoint.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a spatialnet checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="not a spatialnet checkpoint"):
        load_checkpoint(tmp_path / "weights.pt")
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    ckpt["config"]["hidden"] = [8, 8, 8, 8]
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="do not fit"):
        model_from_checkpoint(tmp_path / "mismatch.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("kw,err,name", [
    (dict(mode="both"), ValueError, "mode"), (dict(net="big"), ValueError, "net"),
    (dict(spatial_layers=[6]), ValueError, "spatial_layers"), (dict(spatial_layers=[1]), ValueError, "spatial_layers"),
    (dict(hidden=[0, 4]), ValueError, "hidden"), (dict(epochs=0), ValueError, "epochs"),
    (dict(lr=float("nan")), ValueError, "lr"), (dict(batch_size=2.5), TypeError, "batch_size"),
    (dict(schedule="step"), ValueError, "schedule"), (dict(data="imagenet"), ValueError, "data"),
])
def test_bad_config(kw, err, name):
    with pytest.raises(err, match=name):
        TrainConfig(**kw).validate()


def test_sizes_must_fit_the_data():
    from spatialnet.model import SpatialMLP
    from spatialnet.analysis.evaluate import task_accuracy
    m = SpatialMLP([784, 8, 20], (2,))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 784\)"):
        task_accuracy(m, torch.rand(3, 1568), torch.zeros(3, dtype=torch.long), 0)


def test_atomic_json_never_half_written(tmp_path):
    p = tmp_path / "m.json"
    write_json(p, {"a": 1})
    with pytest.raises(TypeError):
        write_json(p, {"a": object()})
    assert json.loads(p.read_text()) == {"a": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["m.json"]


def test_bad_device():
    from spatialnet.training import resolve_device
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="device 'banana'"):
        resolve_device("banana")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")
        assert resolve_device("auto").type == "cpu"
    with pytest.raises(TypeError, match="device"):
        resolve_device(0)


def test_eval_every_and_resume_across_runtime_keys(tmp_path, subset):
    res = train(_cfg(epochs=3), tmp_path / "end", progress=False, dataset=subset, log=_quiet)
    hist = json.loads((tmp_path / "end" / "metrics.json").read_text())["history"]
    assert ["full" in h for h in hist] == [False, False, True]  # default: evaluate at the end only
    assert hist[-1]["full"] == res["full"] and all(h["task_loss"] > 0 for h in hist)
    train(_cfg(epochs=3, eval_every=2), tmp_path / "every", progress=False, dataset=subset, log=_quiet)
    hist = json.loads((tmp_path / "every" / "metrics.json").read_text())["history"]
    assert ["full" in h for h in hist] == [False, True, True]
    # how often a run evaluates, or its threads, is not what it computes: resume accepts a change
    again = train(_cfg(epochs=3, eval_every=1, threads=2), tmp_path / "every", resume=True, progress=False,
                  dataset=subset, log=_quiet)
    assert again["full"] == res["full"] and again["cross_task_share"] == res["cross_task_share"]


def test_nonfinite_loss_found_between_host_reads(tmp_path, subset, monkeypatch):
    # the host reads the finite flag every 3 steps; the error still names the first bad step
    import spatialnet.training.loop as T
    real, calls = D.task_loss_sum, {"n": 0}

    def inf_at_step_2(*a):
        calls["n"] += 1
        return real(*a) * (float("inf") if calls["n"] == 2 else 1.0)
    monkeypatch.setattr(T.data_mod, "task_loss_sum", inf_at_step_2)
    with pytest.raises(NonFiniteLossError, match="inf at epoch 1, step 2 "):
        train(_cfg(epochs=2), tmp_path, progress=False, dataset=subset, log=_quiet, sync_every=3)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_compiled_steps_train_like_eager(tmp_path, subset):
    eager = train(_cfg(epochs=1), tmp_path / "eager", progress=False, dataset=subset, log=_quiet)
    compiled = train(_cfg(epochs=1, compile=True), tmp_path / "compiled", progress=False, dataset=subset, log=_quiet)
    a = torch.load(tmp_path / "eager" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "compiled" / "checkpoint.pt", weights_only=True)["model"]
    for k in a:  # 4 Adam steps; compiled kernels sum in another order
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    assert abs(compiled["full"] - eager["full"]) <= 0.01


def test_bfloat16_weights(tmp_path, subset, monkeypatch):
    # bf16 W runs on the triton kernels (GPU) or the reference; numba refuses it by name
    with pytest.raises(TypeError, match="bfloat16.*triton"):
        train(_cfg(epochs=1, weight_dtype="bfloat16"), tmp_path / "numba", progress=False, dataset=subset,
              log=_quiet)
    monkeypatch.setenv("SPATIAL_KERNELS_BACKEND", "reference")
    res = train(_cfg(epochs=1, weight_dtype="bfloat16"), tmp_path / "bf16", progress=False, dataset=subset,
                log=_quiet)
    sd = torch.load(tmp_path / "bf16" / "checkpoint.pt", weights_only=True)["model"]
    assert sd["layers.3.weight"].dtype == torch.bfloat16 and sd["layers.3.positions"].dtype == torch.float32
    assert 0 <= res["full"] <= 1 and res["config"]["weight_dtype"] == "bfloat16"
    # the optimiser steps float32 masters (spatialnet/training/optim.py); they are checkpointed, so a run
    # resumed after epoch 1 ends where an uninterrupted one does, to the bit
    ckpt = torch.load(tmp_path / "bf16" / "checkpoint.pt", weights_only=True)
    assert [m.dtype for m in ckpt["optimizer"]["masters"]] == [torch.float32] * 10  # 5 weights, 5 biases
    cfg2 = _cfg(epochs=2, weight_dtype="bfloat16")
    train(cfg2, tmp_path / "straight", progress=False, dataset=subset, log=_quiet)
    real, calls = D.task_loss_sum, {"n": 0}

    def dies_in_epoch_2(*a):  # as in test_resume_equals_uninterrupted
        calls["n"] += 1
        if calls["n"] > 4:
            raise KeyboardInterrupt
        return real(*a)
    monkeypatch.setattr(D, "task_loss_sum", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg2, tmp_path / "resumed", progress=False, dataset=subset, log=_quiet)
    monkeypatch.setattr(D, "task_loss_sum", real)
    train(cfg2, tmp_path / "resumed", resume=True, progress=False, dataset=subset, log=_quiet)
    a = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for x, y in zip(a["optimizer"]["masters"], b["optimizer"]["masters"]):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="weight_dtype"):
        _cfg(weight_dtype="float16")


def test_default_heads_start_apart_only_where_the_output_is_spatial():
    from spatialnet.model import build_model
    torch.manual_seed(0)
    ref = build_model(TrainConfig(head_offset=0.0).validate()).layer(5).positions.detach()
    moved = build_model(TrainConfig(head_offset=1.6).validate()).layer(5).positions.detach()
    # head k's 10 outputs are shifted by 1.6 towards angle 2 pi k / 2
    shift = (moved - ref)
    torch.testing.assert_close(shift[:10], torch.tensor([[1.6, 0.0]]).expand(10, 2))
    torch.testing.assert_close(shift[10:], torch.tensor([[-1.6, 0.0]]).expand(10, 2), atol=1e-6, rtol=0)
    # costs on hidden layers only: there is no output position to offset, and that is no error
    build_model(TrainConfig(spatial_layers=[3, 4]).validate())


def test_progress_is_a_bar_on_a_terminal_and_a_few_lines_in_a_file(tmp_path):
    import io

    from spatialnet.training.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    lines = []
    plain = Progress(30, 0, "concat/spatial/seed0", lines.append, stream=io.StringIO())
    for e in range(1, 31):
        plain.update(e, {"loss": "0.1"})
    plain.close()
    # a file or a pipe: every third epoch of 30 (ten lines), the last included, no bar
    assert len(lines) == 10 and lines[-1].startswith("concat/spatial/seed0: epoch 30/30 loss 0.1")
    term, said = Terminal(), []
    bar = Progress(30, 0, "x", said.append, stream=term)
    for e in range(1, 31):
        bar.update(e, {"loss": "0.1"})
    bar.close()
    assert said == [] and "30/30" in term.getvalue()  # tqdm drew its bar on the terminal
