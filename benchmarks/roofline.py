"""A roofline on paper for the Triton kernels: the bytes each launch moves, the pairs it visits,
the instructions it issues, and the time an H100 SXM should take for one forward+backward.

    python -m benchmarks.roofline            # the markdown table of benchmarks/README.md

A launch takes ``max(bytes / HBM bandwidth, warp instructions / issue rate)``, plus a fixed
launch cost; a call's time is the sum over its launches (they run one after another on a
stream). What is assumed (an H100 SXM5, nothing here measured on one):

- HBM 3.35 TB/s; 132 SMs at 1.98 GHz: 4 warp instructions per clock and SM issue, 1.05e12/s
  (FP32 67 TFLOP/s non-tensor is 128 lanes x 2 x 132 x 1.98e9: the issue rate is the bound
  that counts here, the kernels being a mix of FP32, MUFU, load/store and integer work);
  MUFU (``rsqrt``, ``exp``) 16 per clock and SM, 4.2e12/s.
- Warp instructions per pair from the SASS for sm_90 (the NOTEs in the kernel modules): 1.23
  for the transport's fused pass (bf16 W, D = 3, dW stored: the heaviest; the others are
  counted the same), 0.68 for the density's. The W.grad pass (sign, distance, one store per
  element) is taken as 0.6: not counted from its SASS.
- 4 us per launch (launch and the gap between dependent kernels on one stream).

A transport forward+backward on the default path (W.grad written where it lands): the fused
pass reads W and writes the position partials, the finishing kernel reads them, the W.grad
pass reads W and writes W.grad (read-modify-writes it when the task gradient is already there),
the upstream kernel scales O(n). The density: its fused pass (O(n) bytes), the finishing kernel
and the upstream kernel.
"""
from __future__ import annotations

import triton

HBM = 3.35e12  # bytes/s
ISSUE = 132 * 4 * 1.98e9  # warp instructions/s
MUFU = 132 * 16 * 1.98e9  # special-function ops/s
LAUNCH_S = 4e-6
INSTR_PER_PAIR = {"transport_fused": 1.23, "transport_W_grad": 0.6, "density_fused": 0.68}
MUFU_PER_PAIR = {"transport_fused": 1, "transport_W_grad": 1, "density_fused": 2}
FLOAT = 4


def _launch(name: str, bytes_: float, pairs: float = 0.0) -> dict:
    instr = pairs * INSTR_PER_PAIR.get(name, 0.0)
    mufu = pairs * MUFU_PER_PAIR.get(name, 0)
    seconds = max(bytes_ / HBM, instr / ISSUE, mufu / MUFU)
    bound = max((bytes_ / HBM, "HBM"), (instr / ISSUE, "issue"), (mufu / MUFU, "MUFU"))[1]
    return {"kernel": name, "bytes": bytes_, "pairs": pairs, "seconds": seconds + LAUNCH_S, "bound": bound}


def transport(n_out: int, n_in: int, w_bytes: int, D: int = 3, accumulate: bool = False, taps: int = 1,
              sms: int = 132) -> list[dict]:
    """The launches of one transport forward+backward (W.grad fresh, or added into with
    ``accumulate``), on the plan the launchers make for ``sms`` SMs."""
    from spatial_kernels.transport import triton_gpu as t
    from spatial_kernels.transport.triton_kernels import PROGRAMS_PER_SM, WAVES

    (col_blocks, row_runs), _ = t._grid(n_out, n_in, sms * PROGRAMS_PER_SM * WAVES)
    pairs, w = n_out * n_in, n_out * n_in * taps * w_bytes
    partials = FLOAT * D * (col_blocks * n_out + row_runs * n_in)
    positions = FLOAT * D * (n_out + n_in)
    return [
        _launch("transport_fused", w + partials + positions, pairs),
        _launch("finish", partials + positions),
        _launch("upstream", 2 * positions),
        _launch("transport_W_grad", w * (3 if accumulate else 2) + positions, pairs),
    ]


def density(n: int, D: int = 3, sms: int = 132) -> list[dict]:
    from spatial_kernels.density import triton_gpu as d

    (row_blocks, runs), _ = d._plan(n, sms)
    partials = FLOAT * (D * n + row_blocks) * runs
    # the positions come from HBM once: each program's re-reads of the columns hit L2
    return [_launch("density_fused", partials + FLOAT * D * n, n * n),
            _launch("finish", partials + FLOAT * D * n), _launch("upstream", 2 * FLOAT * D * n)]


def depthwise(channels: int, w_bytes: int, taps: int = 49, D: int = 3) -> list[dict]:
    """A depthwise conv's weight ``(C, 1, *kernel)``: its pairs are the C channels' taps."""
    pairs, w = channels * taps, channels * taps * w_bytes
    positions = FLOAT * D * 2 * channels
    return [_launch("transport_fused", w + positions * 3, pairs), _launch("finish", positions),
            _launch("upstream", positions), _launch("transport_W_grad", 2 * w + positions, pairs)]


def seconds(launches: list[dict]) -> float:
    return sum(x["seconds"] for x in launches)


def model_seconds(cost: str, n: int, w_bytes: int = 4, D: int = 3) -> float:
    """The modelled time of one benchmark case of benchmarks/bench_gpu.py."""
    if cost == "density":
        return seconds(density(n, D))
    if cost == "transport":
        return seconds(transport(n, n, w_bytes, D))
    if cost == "depthwise":
        return seconds(depthwise(n, w_bytes, D=D))
    raise ValueError(cost)


def _mlp_step(widths: list[int], spatial: list[int], w_bytes: int, sheets: list[int]) -> float:
    """The spatial costs' share of a step: each spatial layer's transport, each sheet's density."""
    total = 0.0
    for layer in spatial:  # 1-based Linear indices: layer l maps widths[l - 1] -> widths[l]
        total += seconds(transport(widths[layer], widths[layer - 1], w_bytes))
    for n in sheets:
        total += seconds(density(n))
    return total


def table() -> str:
    from .bench_gpu import DENSITY_SIZES, TRANSPORT_SIZES

    rows = ["| case | launch | MB moved | pairs | bound | modelled us |", "|---|---|---:|---:|---|---:|"]
    cases = [(f"transport {n}x{n} {name}", transport(n, n, size)) for n in TRANSPORT_SIZES
             for name, size in (("float32", 4), ("bfloat16", 2))]
    cases += [(f"density N={n}", density(n)) for n in DENSITY_SIZES]
    cases += [("depthwise 7x7 C=768 float32", depthwise(768, 4))]
    for label, launches in cases:
        for x in launches:
            rows.append(f"| {label} | {x['kernel']} | {x['bytes'] / 1e6:.1f} | {x['pairs']:.3g} | {x['bound']} | "
                        f"{x['seconds'] * 1e6:.0f} |")
        rows.append(f"| **{label}** | **all {len(launches)}** | | | | **{seconds(launches) * 1e6:.0f}** |")
    paper = [1568, 128, 128, 128, 256, 20]
    wide = [1568] + [8 * w for w in paper[1:-1]] + [20]
    rows += ["", "| step overhead of the spatial costs | modelled us |", "|---|---:|"]
    for label, widths in (("the paper's MLP (1568-128-128-128-256-20, costs on layers 3-5)", paper),
                          ("its 8x-wide version (1024-1024-1024-2048 hidden)", wide)):
        us = _mlp_step(widths, [3, 4, 5], 4, widths[3:]) * 1e6
        rows.append(f"| {label}, float32 | {us:.0f} |")
    layer = seconds(transport(4096, 4096, 4)) + seconds(density(4096))
    gemm = 3 * 2 * 256 * 4096 * 4096
    rows.append(f"| one 4096x4096 float32 layer's transport + a 4096 sheet's density | {layer * 1e6:.0f} |")
    rows.append(f"| (its task GEMMs at batch 256: {gemm / 1e9:.1f} GFLOP, {gemm / 67e12 * 1e6:.0f} us at 67 "
                f"TFLOP/s FP32, {gemm / 495e12 * 1e6:.0f} us at 495 TFLOP/s TF32) | |")
    fused = transport(4096, 4096, 4, accumulate=True)[-1]
    saved = 2 * 4096 * 4096 * 4 / HBM + LAUNCH_S
    rows.append(f"| W.grad pass into the task gradient, 4096^2 float32 | {fused['seconds'] * 1e6:.0f} |")
    rows.append(f"| saved by fusing it into the task GEMM's epilogue (no second read and write of W.grad, "
                f"one launch less) | {saved * 1e6:.0f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
