"""torch.compile(fullgraph=True) of a training step of a spatialized model (task loss + costs,
forward and backward) against the same step in eager mode, which tests/spatial_kernels/test_nn_spatialize.py
checks against a hand-written float64 sum."""
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from spatial_kernels.nn import spatialize


class Net(nn.Module):
    """A conv, then a residual MLP block: both kinds of layer and a traced residual."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 6, 3)
        self.fc0, self.fc1, self.fc2, self.head = nn.Linear(6 * 6, 12), nn.Linear(12, 24), nn.Linear(24, 12), nn.Linear(12, 4)

    def forward(self, x):
        h = self.fc0(F.relu(self.conv(x)).flatten(1))
        h = h + self.fc2(F.gelu(self.fc1(h)))
        return self.head(h)


def test_compiled_training_step_matches_eager():
    torch._dynamo.reset()
    torch.manual_seed(0)
    nets = {"eager": Net(), "compiled": Net()}
    nets["compiled"].load_state_dict(nets["eager"].state_dict())
    costs = {k: spatialize(m, ["conv", "fc*", "head"], attach="spatial", backend="numba") for k, m in nets.items()}
    costs["compiled"].load_state_dict(costs["eager"].state_dict())
    opts = {k: torch.optim.AdamW(costs[k].param_groups(m, lr=5e-3, position_lr=2e-2, weight_decay=0.01))
            for k, m in nets.items()}

    def loss_fn(model, x, y):
        return F.cross_entropy(model(x), y) + model.spatial(9.0, 20.0)

    step_loss = {"eager": loss_fn, "compiled": torch.compile(loss_fn, fullgraph=True)}
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        x, y = torch.randn(8, 2, 8, generator=g), torch.randint(0, 4, (8,), generator=g)
        losses = {}
        for k, model in nets.items():
            opts[k].zero_grad()
            losses[k] = step_loss[k](model, x, y)
            losses[k].backward()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                opts[k].step()
        torch.testing.assert_close(losses["compiled"], losses["eager"], rtol=1e-6, atol=0)
        for (name, a), b in zip(nets["compiled"].named_parameters(), nets["eager"].parameters()):
            assert a.grad is not None and a.grad.abs().max() > 0, name
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=lambda m: f"grad {name}: {m}")
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")
