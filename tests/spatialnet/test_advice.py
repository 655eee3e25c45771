"""Errors whose advice works where they are raised."""
import pytest


def test_train_offline_without_data_says_so_at_once(tmp_path, monkeypatch, capsys):
    from spatialnet.cli import main
    from spatialnet.data import read

    reached = []
    monkeypatch.setattr(read, "_reachable", lambda host, timeout=3.0: reached.append(host) or False)
    monkeypatch.setattr("torchvision.datasets.MNIST", lambda *a, **k: pytest.fail("tried to download offline"))
    assert main(["train", "--data-dir", str(tmp_path / "none"), "--epochs", "1", "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert reached == [read.DOWNLOAD_HOST]
    assert "spatialnet train: error: MNIST/Fashion-MNIST files are missing" in err
    assert f"offline: {read.DOWNLOAD_HOST}" in err and "--data subset" in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
