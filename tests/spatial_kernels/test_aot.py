"""The ahead-of-time compile check (``python -m spatial_kernels.aot``) in a fresh process.

It compiles every Triton kernel the package launches for sm_80 and sm_90, found by discovery,
and needs no GPU, but it must not run under Triton's interpreter, which tests/conftest.py may
have switched on for this process: each run here gets an environment without TRITON_INTERPRET.
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
ROW = re.compile(r"^(_\w+_kernel)\s+(.+?)\s+sm_(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$")
LAUNCH = re.compile(r"^\s*(_\w+_kernel)\[")  # `_name_kernel[grid](...)`: a launch from Python


def _run(*args: str, code: str | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "spatial_kernels.aot", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _launched_in_source() -> set[str]:
    """The kernels the package's source launches (``name[grid](``), read from the files: an
    independent list to hold the discovered one against."""
    names = set()
    for path in (ROOT / "spatial_kernels").rglob("*.py"):
        for line in path.read_text().splitlines():
            m = LAUNCH.match(line)
            if m:
                names.add(m.group(1))
    return names


def test_every_launched_kernel_compiles_for_sm80_and_sm90_without_spills():
    proc = _run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [m.groups() for m in map(ROW.match, proc.stdout.splitlines()) if m]
    seen = {(row[0], int(row[2])) for row in rows}
    launched = _launched_in_source()
    assert {"_transport_fwd_bwd_kernel", "_transport_accumulate_kernel", "_density_fwd_bwd_kernel",
            "_finish_kernel", "_times_upstream_kernel"} <= launched, launched
    for kernel in launched:
        for arch in (80, 90):
            assert (kernel, arch) in seen, f"no row for {kernel} on sm_{arch}:\n{proc.stdout}"
    for name, variant, arch, cubin, regs, spill_st, spill_ld, smem, ctas, occ in rows:
        where = f"{name} {variant} sm_{arch}"
        assert int(cubin) > 0 and 0 < int(regs) <= 255, f"{where}: {cubin} B, {regs} regs"
        assert int(spill_st) == int(spill_ld) == 0, f"{where}: spills"
        assert int(ctas) >= 1, f"{where}: no program fits an SM ({regs} regs, {smem} B shared)"
    assert re.search(rf"^{len(rows)} compiled, 0 failed \(sm_80, sm_90\)$", proc.stdout, re.M), proc.stdout


def test_discovery_finds_every_kernel_the_source_launches():
    code = ("from spatial_kernels import aot\n"
            "print(' '.join(sorted(aot.entry_kernels())))\n")
    proc = _run(code=code, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == _launched_in_source()


def test_a_kernel_no_case_launches_fails_the_check():
    # drop every case that launches the W.grad pass: its kernel is still discovered, and missed
    code = (
        "import sys\n"
        "from spatial_kernels import aot, aot_cases\n"
        "cases = aot_cases.cases\n"
        "aot_cases.cases = lambda: [c for c in cases() if c[0].startswith('density D=1 n%16')]\n"
        "sys.exit(aot.main(['--arch', '90']))\n"
    )
    proc = _run(code=code)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"^FAILED _transport_accumulate_kernel: an entry kernel no case", proc.stdout, re.M), \
        proc.stdout


def test_a_failing_compile_exits_nonzero():
    # a BLOCK_N that is not a power of two cannot compile (tl.arange); the check must say so
    code = (
        "import sys\n"
        "from spatial_kernels import aot\n"
        "variants, missing = aot._variants()\n"
        "good = variants[0]\n"
        "bad = aot.Variant(good.kernel, 'BLOCK_N=33', good.args, {**good.kwargs, 'BLOCK_N': 33})\n"
        "aot._variants = lambda: ([good, bad], missing)\n"
        "sys.exit(aot.main(['--arch', '90']))\n"
    )
    proc = _run(code=code)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 compiled, 1 failed (sm_90)" in proc.stdout, proc.stdout
    assert re.search(r"^FAILED _transport_fwd_bwd_kernel BLOCK_N=33 sm_90: ", proc.stdout, re.M), proc.stdout


def test_occupancy_follows_the_per_sm_limits():
    from spatial_kernels.aot import occupancy

    # 128 registers x 8 warps: 32K registers, 2 programs in 64K; 80 x 4 warps: 10K, 6 fit
    assert occupancy(128, 0, 8, 90) == 2
    assert occupancy(80, 128, 4, 90) == 6
    assert occupancy(32, 0, 4, 90) == 16  # 64 warps / 4
    assert occupancy(32, 0, 1, 90) == 32  # the 32-CTA limit
    # shared memory: 100 KB + 1 KB reserved: two fit sm_90's 228 KB, one sm_80's 164 KB
    assert occupancy(32, 100 * 1024, 4, 90) == 2 and occupancy(32, 100 * 1024, 4, 80) == 1
    assert occupancy(32, 200 * 1024, 4, 80) == 0  # over sm_80's 163 KB per CTA


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
