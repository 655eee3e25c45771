"""The ahead-of-time compile check (``python -m spatial_kernels.aot``) in a fresh process.

It compiles every Triton kernel for sm_80 and sm_90 and needs no GPU, but it must not run
under Triton's interpreter, which tests/conftest.py may have switched on for this process:
each run here gets an environment without TRITON_INTERPRET.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ["_transport_fwd_kernel", "_transport_fwd_bwd_kernel", "_density_fwd_kernel", "_density_fwd_bwd_kernel"]
ROW = re.compile(r"^(_\w+_kernel)\s+(.+?)\s+sm_(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$")


def _run(*args: str, code: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "spatial_kernels.aot", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_every_kernel_compiles_for_sm80_and_sm90():
    proc = _run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [m.groups() for m in map(ROW.match, proc.stdout.splitlines()) if m]
    seen = {(row[0], int(row[2])) for row in rows}
    for kernel in KERNELS:
        for arch in (80, 90):
            assert (kernel, arch) in seen, f"no row for {kernel} on sm_{arch}:\n{proc.stdout}"
    for name, variant, arch, cubin, regs, spill_st, spill_ld, smem in rows:
        assert int(cubin) > 0 and 0 < int(regs) <= 255, f"{name} {variant} sm_{arch}: {cubin} B, {regs} regs"
    assert re.search(rf"^{len(rows)} compiled, 0 failed \(sm_80, sm_90\)$", proc.stdout, re.M), proc.stdout


def test_a_failing_compile_exits_nonzero():
    # a BLOCK_N that is not a power of two cannot compile (tl.arange); the check must say so
    code = (
        "import sys\n"
        "from spatial_kernels import aot\n"
        "good = aot._variants()[0]\n"
        "bad = aot.Variant(good.kernel, 'BLOCK_N=33', good.pointers, {**good.constexprs, 'BLOCK_N': 33},\n"
        "                  good.num_warps)\n"
        "aot._variants = lambda: [good, bad]\n"
        "sys.exit(aot.main(['--arch', '90']))\n"
    )
    proc = _run(code=code)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 compiled, 1 failed (sm_90)" in proc.stdout, proc.stdout
    assert re.search(r"^FAILED _transport_fwd_kernel BLOCK_N=33 sm_90: ", proc.stdout, re.M), proc.stdout


def test_refuses_kernels_imported_under_the_interpreter():
    code = (
        "import os, sys\n"
        "os.environ['TRITON_INTERPRET'] = '1'\n"
        "import spatial_kernels.density.triton_gpu\n"
        "from spatial_kernels import aot\n"
        "sys.exit(aot.main(['--arch', '90']))\n"
    )
    proc = _run(code=code, timeout=120)
    assert proc.returncode != 0
    assert "without TRITON_INTERPRET" in proc.stderr, proc.stderr
