"""The demo trains its two nets at once, the regular one in a second process: the numbers are those
of the two runs one after the other."""
from spatialnet import data as data_mod
from spatialnet.analysis.evaluate import RECORD
from spatialnet.config import TrainConfig
from spatialnet.studies.demo import run_demo


def test_the_two_nets_at_once_give_the_numbers_of_one_after_the_other(tmp_path):
    ds = data_mod.load("subset")
    base = TrainConfig(data="subset", epochs=2, max_train=128, batch_size=64, hidden=[8, 8, 8, 12]).validate()
    at_once = run_demo(base, tmp_path / "a", ds, progress=False, log=lambda *a: None)
    in_turn = run_demo(base, tmp_path / "b", ds, progress=False, log=lambda *a: None, parallel=False)
    for net in ("spatial", "regular"):
        assert {k: at_once[net][k] for k in RECORD} == {k: in_turn[net][k] for k in RECORD}, net
    assert at_once["regular"]["config"]["net"] == "regular" and at_once["regular"]["config"]["lr"] == 0.005
