"""One set of defaults: SpatialMLP, spatialize and TrainConfig agree on the normalisations and the
initialisation, each name has one meaning, and the strengths are the caller's."""
import inspect

import pytest
import torch

from spatial_kernels.nn import spatialize
from spatialnet.config import TrainConfig
from spatialnet.model import SpatialMLP


def _default(fn, name):
    return inspect.signature(fn).parameters[name].default


def test_spatialmlp_spatialize_and_trainconfig_share_their_defaults():
    cfg = TrainConfig()
    for name in ("transport_norm", "density_norm"):
        assert _default(SpatialMLP, name) == _default(spatialize, name) == getattr(cfg, name), name
    for name in ("init", "init_gain"):
        assert _default(SpatialMLP, name) == getattr(cfg, name), name
    # and the model a default SpatialMLP builds is the one build_model makes of a default config
    m = SpatialMLP([6, 5, 5, 4], (2, 3))
    assert (m.transport_norm, m.density_norm, m.init, m.init_gain) == ("per_connection", "per_pair", "glorot", 1.0)
    assert torch.count_nonzero(m.layer(1).bias) == 0  # Glorot's zero biases


def test_a_norm_has_one_name():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    for old in ("paper", "mean", "neuron"):
        with pytest.raises(ValueError, match=r"transport_norm must be one of 'per_connection', 'per_out'"):
            spatialize(model, ["0", "1"], transport_norm=old)
        with pytest.raises(ValueError, match=r"density_norm must be one of 'per_pair', 'per_neuron'"):
            SpatialMLP([3, 4, 2], (2,), density_norm=old)
        with pytest.raises(ValueError, match=r"transport_norm must be one of"):
            TrainConfig(transport_norm=old).validate()


def test_records_written_with_the_old_names_read_as_they_meant():
    d = TrainConfig().to_dict()
    for (t, dn), want in ((("paper", "paper"), ("per_out", "per_pair")),
                          (("mean", "neuron"), ("per_connection", "per_neuron"))):
        cfg = TrainConfig.from_dict({**d, "transport_norm": t, "density_norm": dn})
        assert (cfg.transport_norm, cfg.density_norm) == want


def test_the_strengths_are_the_caller_s():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    costs = spatialize(model, ["0", "1"])
    with pytest.raises(TypeError, match="alpha"):
        costs()
    with pytest.raises(TypeError, match="alpha"):
        SpatialMLP([3, 4, 2], (2,)).spatial_loss()
