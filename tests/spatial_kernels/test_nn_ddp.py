"""A spatialized model attached to its costs (``attach=``) under DistributedDataParallel: two
gloo processes, each on half of the batch, take the same steps as one process on all of it (one
process adds the transport's gradient into W.grad in the kernel's pass; under DDP autograd sums
it, so that the all-reduce sees the whole gradient)."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]

WORKER = r'''
import os, sys, torch, torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from spatial_kernels.nn import spatialize

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4))

    def forward(self, x):
        return self.body(x)

def model():
    torch.manual_seed(0)
    m = Net()
    spatialize(m, ["body.0", "body.2", "body.4"], attach="spatial", generator=torch.Generator().manual_seed(1))
    return m

out, world = sys.argv[1], int(sys.argv[2])
rank = int(os.environ.get("RANK", 0))
m = model()
net = m
import spatial_kernels
assert spatial_kernels.accumulate_path(m.body[2].weight) is None  # one process: the fast path
if world > 1:
    dist.init_process_group("gloo")
    net = nn.parallel.DistributedDataParallel(m)
    # DDP's bucketed all-reduce must see the whole gradient: the present path, and it says so
    assert "torch.distributed is initialised" in spatial_kernels.accumulate_path(m.body[2].weight)
opt = torch.optim.Adam(m.spatial.param_groups(m, lr=1e-2, position_lr=3e-2))
g = torch.Generator().manual_seed(2)
for _ in range(3):
    x, y = torch.randn(8, 6, generator=g), torch.randint(0, 4, (8,), generator=g)
    part = slice(rank * 8 // world, (rank + 1) * 8 // world)
    opt.zero_grad()
    loss = F.cross_entropy(net(x[part]), y[part]) + m.spatial(9.0, 20.0)
    loss.backward()
    opt.step()
if rank == 0:
    torch.save({"final": m.state_dict(), "init": model().state_dict()}, out)
if world > 1:
    # both ranks leave gloo together: a rank exiting while the other's gloo threads still run
    # aborts ("terminate called without an active exception")
    dist.barrier()
    dist.destroy_process_group()
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_one(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    for cmd in ([sys.executable, str(script), str(tmp_path / "one.pt"), "1"],
                [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-addr=127.0.0.1",
                 f"--master-port={_free_port()}", str(script), str(tmp_path / "two.pt"), "2"]):
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
    saved = torch.load(tmp_path / "one.pt", weights_only=True)
    one, init = saved["final"], saved["init"]
    two = torch.load(tmp_path / "two.pt", weights_only=True)["final"]
    assert sorted(one) == sorted(two) and sum(k.startswith("spatial.positions.") for k in one) == 4
    for k, v in one.items():
        # the mean of two half-batch gradients is the full batch's, up to float32 summation order
        torch.testing.assert_close(two[k], v, rtol=0, atol=1e-5, msg=k)
        assert (v - init[k]).abs().max() > 1e-3, f"{k} did not train"
