"""GPU forward+backward benchmarks: triton against reference and pykeops (density only).

    pytest benchmarks/bench_gpu.py --benchmark-only --benchmark-group-by=group
    BENCH_GPU_RECORD=rows.jsonl pytest benchmarks/bench_gpu.py ...   # also keep every row
    python -m benchmarks.bench_gpu render rows.jsonl > table.md      # rows -> markdown
    python -m benchmarks.bench_gpu resources                         # registers/spills on the GPU

Every case is timed with ``triton.testing.do_bench`` (median and 20/80 % quantiles of one
forward+backward, L2 flushed between runs); pytest-benchmark times it once more with
``benchmark.pedantic`` so the usual table and ``--benchmark-json`` work too. Each row also
has pairs/s, the peak memory of one call (``torch.cuda.max_memory_allocated``) and the
fraction of the roofline:

- density: each pair costs two special-function ops (``rsqrt`` and ``exp``: MUFU, 16 per
  SM per clock), about 1.9e12 pairs/s on an H100 SXM;
- transport: each pair moves W in and dW out, 8 bytes per pair in float32 (4 in bf16), at
  the HBM bandwidth (3.35 TB/s on an H100 SXM).

Targets (to be checked on a GPU; nothing here was measured when it was written): density
fwd+bwd >= 1e12 pairs/s at N >= 65 536 and >= 3x pykeops; transport fwd+bwd >= 70 % of HBM
bandwidth at 16 384^2 float32, faster again in bf16; the reference >= 10x slower, or out
of memory (recorded as OOM, not as a failure). A benchmark reports, it never fails on time.
KeOps cannot express a dense W, so pykeops has density rows only.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest
import torch

from .cases import make_case
from .roofline import model_seconds

D = 3  # the heaviest case per pair; the costs' special-function work does not depend on D
DENSITY_SIZES = [16384, 65536, 131072]
TRANSPORT_SIZES = [8192, 16384]
# The reference materialises (n, n, D) differences and keeps them for backward: past these
# sizes it cannot fit an 80 GB card, and the attempt is still made once to record the OOM.
REFERENCE_MAX = {"density": 65536, "transport": 16384}
PYKEOPS_MAX = 65536

# name substring -> (density pairs/s at two MUFU ops per pair, HBM bytes/s)
ROOFLINES = {
    "H200": (1.9e12, 4.8e12),
    "H100": (1.9e12, 3.35e12),
    "A100": (1.2e12, 2.0e12),
}
DEFAULT_ROOFLINE = "H100"

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU benchmarks need a CUDA device")


def roofline() -> tuple[str, float, float]:
    """(which card's constants, density pairs/s, bytes/s) for the current device."""
    name = torch.cuda.get_device_name()
    for key, (pairs, bw) in ROOFLINES.items():
        if key in name:
            return key, pairs, bw
    return DEFAULT_ROOFLINE + " (assumed)", *ROOFLINES[DEFAULT_ROOFLINE]


def measure(cost: str, backend: str, n: int, w_dtype: torch.dtype = torch.float32):
    """``(row, run)``: timing, throughput, memory and roofline fraction of one fwd+bwd and the
    case's closure, or a row saying OOM / error and ``None``."""
    import triton.testing

    row = {"cost": cost, "backend": backend, "n": n, "D": D, "pairs": n * n,
           "dtype": str(w_dtype).replace("torch.", "") if cost == "transport" else "float32"}
    torch.cuda.empty_cache()
    run = None
    try:
        run, pairs = make_case(cost, backend, n, device="cuda", D=D, w_dtype=w_dtype)
        run()  # compile, warm up, and find out early whether it fits
        torch.cuda.synchronize()
        inputs = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        q50, q20, q80 = triton.testing.do_bench(run, warmup=25, rep=200, quantiles=[0.5, 0.2, 0.8])
    except torch.cuda.OutOfMemoryError:
        row.update(status="OOM")
    except Exception as e:  # e.g. KeOps without its CUDA libraries: report it, do not stop
        first = (str(e).strip().splitlines() or [""])[0][:120]
        row.update(status=f"error: {type(e).__name__}: {first}")
    if "status" in row:
        run = None  # free the failed case's inputs before the next case
        torch.cuda.empty_cache()
        return row, None
    card, peak_pairs, bandwidth = roofline()
    seconds = q50 * 1e-3
    row.update(status="ok", ms=q50, ms_q20=q20, ms_q80=q80, pairs_per_s=pairs / seconds,
               peak_mib=peak / 2**20, inputs_mib=inputs / 2**20, roofline_card=card)
    if backend == "triton":  # the H100 model of benchmarks/roofline.py, for measured / model
        row["model_ms"] = 1e3 * model_seconds(cost, n, torch.empty((), dtype=w_dtype).element_size(), D)
    if cost == "density":
        row["roofline_fraction"] = pairs / seconds / peak_pairs
    elif cost == "depthwise":  # W in and dW out, 49 taps a channel, against the bandwidth
        row["roofline_fraction"] = 2 * pairs * torch.empty((), dtype=w_dtype).element_size() / seconds / bandwidth
    else:
        bytes_per_pair = 2 * torch.empty((), dtype=w_dtype).element_size()  # W in, dW out
        row["roofline_fraction"] = pairs * bytes_per_pair / seconds / bandwidth
    return row, run


def _record(benchmark, row: dict) -> None:
    benchmark.extra_info.update(row)
    path = os.environ.get("BENCH_GPU_RECORD")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
    what = f"{row['backend']} {row['cost']} n={row['n']}"
    if row["status"] == "OOM":
        pytest.skip(f"{what}: out of GPU memory (recorded as OOM)")
    if row["status"] != "ok":
        if row["backend"] == "triton":
            pytest.fail(f"{what}: {row['status']}")
        pytest.skip(f"{what}: {row['status']} (recorded)")


def _pedantic(benchmark, run):
    # pytest-benchmark's own timing of the same call (synchronised: kernels run asynchronously)
    def synced():
        run()
        torch.cuda.synchronize()

    benchmark.pedantic(synced, rounds=5, warmup_rounds=1)


def _density_params():
    for n in DENSITY_SIZES:
        yield pytest.param("triton", n, id=f"triton-{n}")
        if n <= PYKEOPS_MAX:
            yield pytest.param("pykeops", n, id=f"pykeops-{n}")
        if n <= REFERENCE_MAX["density"]:
            yield pytest.param("reference", n, id=f"reference-{n}")


def _transport_params():
    for n in TRANSPORT_SIZES:
        for dtype in (torch.float32, torch.bfloat16):
            yield pytest.param("triton", n, dtype, id=f"triton-{n}-{str(dtype)[6:]}")
            if n <= REFERENCE_MAX["transport"]:
                yield pytest.param("reference", n, dtype, id=f"reference-{n}-{str(dtype)[6:]}")


@needs_cuda
@pytest.mark.parametrize("backend,n", list(_density_params()))
def test_density_fwd_bwd_cuda(benchmark, backend, n):
    if backend == "pykeops" and importlib.util.find_spec("pykeops") is None:
        pytest.skip("pykeops is not installed (no .whl/ wheel carried to this machine)")
    benchmark.group = f"cuda density fwd+bwd N={n}"
    row, run = measure("density", backend, n)
    _record(benchmark, row)
    _pedantic(benchmark, run)


@needs_cuda
@pytest.mark.parametrize("backend,n,w_dtype", list(_transport_params()))
def test_transport_fwd_bwd_cuda(benchmark, backend, n, w_dtype):
    benchmark.group = f"cuda transport fwd+bwd {n}x{n}"
    row, run = measure("transport", backend, n, w_dtype)
    _record(benchmark, row)
    _pedantic(benchmark, run)


@needs_cuda
@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_depthwise_fwd_bwd_cuda(benchmark, backend):
    # ConvNeXt's widest depthwise 7x7 conv: groups in the kernel against the reference
    benchmark.group = "cuda depthwise 7x7 fwd+bwd C=768"
    row, run = measure("depthwise", backend, 768)
    _record(benchmark, row)
    _pedantic(benchmark, run)


def _model(r: dict) -> str:
    if "model_ms" not in r:
        return " | "
    return f"{r['model_ms']:.3f} | {r['ms'] / r['model_ms']:.2f}"


def render_markdown(rows: list[dict]) -> str:
    """A table per cost, with the triton speed-up over every other backend at the same size."""
    out = []
    for cost in ("density", "transport", "depthwise"):
        sel = [r for r in rows if r["cost"] == cost]
        if not sel:
            continue
        roof = "pairs/s over 2 MUFU ops per pair" if cost == "density" else "HBM bytes (W in + dW out) over bandwidth"
        roof += "; depthwise 7x7: pairs = the 49 taps of each channel" if cost == "depthwise" else ""
        out += [f"### {cost} forward+backward (D={sel[0]['D']}; roofline: {roof})", "",
                "| backend | n | dtype | median ms (q20-q80) | pairs/s | roofline | peak MiB | triton speed-up | "
                "H100 model ms | measured / model |",
                "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        triton_ms = {(r["n"], r["dtype"]): r["ms"] for r in sel if r["backend"] == "triton" and r["status"] == "ok"}
        for r in sorted(sel, key=lambda r: (r["n"], r["dtype"], r["backend"] != "triton", r["backend"])):
            if r["status"] != "ok":
                out.append(f"| {r['backend']} | {r['n']} | {r['dtype']} | {r['status']} | | | | | | |")
                continue
            t = triton_ms.get((r["n"], r["dtype"]))
            speedup = "" if r["backend"] == "triton" or t is None else f"{r['ms'] / t:.1f}x"
            out.append(f"| {r['backend']} | {r['n']} | {r['dtype']} | {r['ms']:.3f} ({r['ms_q20']:.3f}-"
                       f"{r['ms_q80']:.3f}) | {r['pairs_per_s']:.3g} | {100 * r['roofline_fraction']:.0f} % "
                       f"({r['roofline_card']}) | {r['peak_mib']:.0f} | {speedup} | {_model(r)} |")
        out.append("")
    return "\n".join(out)


def kernel_resources() -> str:
    """Registers and spills of every kernel variant loaded in this process, as triton reports
    them on the device (``CompiledKernel.n_regs`` / ``n_spills``), to set beside the
    ``python -m spatial_kernels.aot`` table. Runs each cost at a size divisible by 16 and an odd
    one first. Best effort: reads triton's JIT cache, whose layout is not a public API."""
    from spatial_kernels.aot import entry_kernels
    from spatial_kernels.density import triton_gpu as density
    from spatial_kernels.transport import triton_gpu as transport

    for n in (4096, 4099):
        p = torch.randn(n, D, device="cuda")
        density.density_value(p)
        density.density_fwd(p)
        for dtype in (torch.float32, torch.bfloat16):
            W = torch.randn(n, n, device="cuda", dtype=dtype)
            transport.transport_value(W, p, p)
            transport.transport_fwd(W, p, p)
            transport.transport_fwd(W, p, p, needs_grad=(False, True, True))
            transport.transport_accumulate_dW(W, p, p, 1.0, torch.ones((), device="cuda"), None)
    torch.cuda.synchronize()
    out = ["| kernel | constexprs | W dtype | regs | spills | warps |", "|---|---|---|---:|---:|---:|"]
    for kernel in entry_kernels().values():  # every kernel the package launches, as aot finds them
        try:
            for entry in kernel.device_caches.values():
                for compiled in entry[0].values():
                    compiled._init_handles()
                    names = kernel.arg_names
                    consts = {names[k[0]] if isinstance(k, tuple) else k: v for k, v in compiled.src.constants.items()}
                    shown = ", ".join(f"{k}={v}" for k, v in consts.items() if not k.startswith("BLOCK"))
                    w_type = compiled.src.signature.get("W_ptr", "")
                    out.append(f"| {kernel.__name__} | {shown} | {w_type} | {compiled.n_regs} | {compiled.n_spills} | "
                               f"{compiled.metadata.num_warps} |")
        except Exception as e:  # triton's cache layout changed: say so, the rest of the report stands
            out.append(f"| {kernel.__name__} | n/a ({type(e).__name__}: {e}) | | | | |")
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1:2] == ["resources"] and len(sys.argv) == 2:
        print(kernel_resources())
    elif sys.argv[1:2] == ["render"] and len(sys.argv) == 3:
        with open(sys.argv[2]) as f:
            print(render_markdown([json.loads(line) for line in f if line.strip()]))
    else:
        sys.exit("usage: python -m benchmarks.bench_gpu render ROWS.jsonl   (rows written by BENCH_GPU_RECORD)\n"
                 "       python -m benchmarks.bench_gpu resources          (registers/spills on this GPU)")
