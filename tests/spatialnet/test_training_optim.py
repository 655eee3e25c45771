"""Float32 master weights for bf16 parameters (spatialnet/training/optim.py), against float32 Adam."""
import pytest
import torch

from spatialnet.training.optim import MasterWeights


def _grads(step, shape):
    """A fixed direction per weight plus noise, as in training: Adam moves each weight steadily."""
    direction = torch.randn(shape, generator=torch.Generator().manual_seed(-1)).sign()
    return (direction + 0.5 * torch.randn(shape, generator=torch.Generator().manual_seed(step))) * 1e-3


def test_small_steps_accumulate_as_in_float32():
    # lr 1e-4 on weights near 0.04: below half the bf16 spacing there (1.2e-4), so plain bf16 Adam
    # rounds most steps away, while the masters follow float32 Adam exactly
    torch.manual_seed(0)
    w0 = (0.03 + 0.02 * torch.rand(64, 32)).bfloat16()
    ref = torch.nn.Parameter(w0.float())
    plain = torch.nn.Parameter(w0.clone())
    mixed = torch.nn.Parameter(w0.clone())
    opt_ref = torch.optim.Adam([ref], lr=1e-4)
    opt_plain = torch.optim.Adam([plain], lr=1e-4)
    opt_mixed = MasterWeights([{"params": [mixed]}], torch.optim.Adam, lr=1e-4)
    for step in range(200):
        g = _grads(step, w0.shape)
        for p, o in ((ref, opt_ref), (plain, opt_plain), (mixed, opt_mixed)):
            o.zero_grad()
            p.grad = g.to(p.dtype)
            o.step()
    assert mixed.dtype == torch.bfloat16
    moved = (ref.detach() - w0.float()).abs()
    assert moved.mean() > 1e-2  # float32 Adam: about 200 steps x lr 1e-4
    # the masters are float32 Adam run on the bf16-rounded gradients: equal up to that rounding
    torch.testing.assert_close(opt_mixed.pairs[0][1], ref.detach(), rtol=0, atol=2e-4)
    # the bf16 weights are the masters rounded to nearest
    assert torch.equal(mixed.detach(), opt_mixed.pairs[0][1].bfloat16())
    err_mixed = (mixed.detach().float() - ref.detach()).abs().mean()
    err_plain = (plain.detach().float() - ref.detach()).abs().mean()
    assert err_plain > 5 * err_mixed, (err_plain, err_mixed)


def test_float32_parameters_are_stepped_in_place_and_groups_keep_their_options():
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.bfloat16))
    p = torch.nn.Parameter(torch.ones(2))
    opt = MasterWeights([{"params": [w]}, {"params": [p], "lr": 0.5}], torch.optim.SGD, lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[1]["params"][0] is p and opt.param_groups[0]["params"][0].dtype == torch.float32
    w.grad, p.grad = torch.ones(3, dtype=torch.bfloat16), torch.ones(2)
    opt.step()
    assert torch.equal(p.detach(), torch.full((2,), 0.5))
    assert torch.equal(w.detach(), torch.full((3,), 0.9, dtype=torch.bfloat16))
    opt.zero_grad()
    assert w.grad is None and p.grad is None


def test_state_dict_round_trip_keeps_the_float32_masters():
    def make():
        w = torch.nn.Parameter(torch.full((4,), 0.04, dtype=torch.bfloat16))
        return w, MasterWeights([{"params": [w]}], torch.optim.Adam, lr=1e-5)
    w, opt = make()
    start = w.detach().float()
    for _ in range(5):
        w.grad = torch.ones(4, dtype=torch.bfloat16)
        opt.step()
    master = opt.pairs[0][1].detach().clone()
    assert torch.equal(w.detach(), torch.full((4,), 0.04, dtype=torch.bfloat16))  # 5e-5 is below bf16's reach
    torch.testing.assert_close(master, start - 5e-5, rtol=0, atol=1e-6)  # Adam: 5 steps of lr
    w2, opt2 = make()
    opt2.load_state_dict(opt.state_dict())
    assert torch.equal(opt2.pairs[0][1], master) and torch.equal(w2.detach(), master.bfloat16())
    assert opt2.inner.state_dict()["state"][0]["step"] == 5
    with pytest.raises(ValueError, match="master weights"):
        opt2.load_state_dict(torch.optim.Adam([torch.nn.Parameter(torch.ones(4))]).state_dict())
