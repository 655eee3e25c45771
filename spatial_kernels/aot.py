"""Ahead-of-time compile check of every Triton kernel for real GPU targets; needs no GPU.

    python -m spatial_kernels.aot [--arch 80 90]

Compiles each kernel in every specialisation its launcher uses (W dtype, D, ``STORE_DW``, sizes
divisible by 16 or not) with
``triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))`` down to a cubin, and
prints one row per kernel, variant and arch: cubin bytes, registers, spill stores/loads and
shared memory. Exits 1 when any compile fails (the failures are listed last).

Registers and spills come from ``ptxas -v`` (triton's own ptxas, with triton's flags) run on
the PTX triton produced: triton fills ``CompiledKernel.n_regs`` / ``n_spills`` only when the
binary is loaded on a device. The variants mirror what the launchers pass at run time: a
contiguous W and dW (column stride 1, which triton's JIT specialises to a constant),
16-byte-aligned pointers and, in the ``n%16`` rows, sizes that are multiples of 16 (which
triton's JIT hints, and which lets it vectorise the loads of W).

The check needs compiled kernels, not the numpy interpreter, so ``TRITON_INTERPRET`` is cleared
before the kernel modules (and triton) are imported; running it in a process that has already
imported them interpreted is refused with a message.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

W_DTYPES = {"float32": "*fp32", "bfloat16": "*bf16", "float16": "*fp16"}
DEFAULT_ARCHS = (80, 90)
# scalar kernel arguments passed as Python floats (every other scalar is an int)
FLOAT_ARGS = ("dW_scale",)


@dataclass
class Variant:
    kernel: object  # a triton JITFunction
    label: str
    pointers: dict  # pointer argument -> triton pointer type, e.g. "*bf16"
    constexprs: dict  # compile-time arguments (annotated tl.constexpr or specialised ints)
    num_warps: int
    sizes16: tuple = ()  # int arguments hinted divisible by 16, as the JIT does for such values

    @property
    def name(self) -> str:
        return self.kernel.__name__


def _variants() -> list[Variant]:
    """Every specialisation for sizes divisible by 16 (the JIT then vectorises the loads), and
    the register-heaviest one (D = 3) for any other sizes."""
    from .density import triton_gpu as density
    from .transport import triton_gpu as transport

    out = []

    def add(kernel, label, pointers, constexprs, num_warps, sizes, D):
        for hinted in (True, False) if D == 3 else (True,):
            out.append(Variant(kernel, f"{label} D={D} {'n%16' if hinted else 'any n'}".strip(), pointers,
                               {**constexprs, "D": D}, num_warps, sizes if hinted else ()))

    blocks = {"BLOCK_M": transport.BLOCK_M, "BLOCK_N": transport.BLOCK_N, "NUM_STAGES": transport.NUM_STAGES}
    sizes = ("n_out", "n_in", "stride_wm", "rows_per_program")
    for wname, wtype in W_DTYPES.items():
        ptrs = {"W_ptr": wtype, "p_in_ptr": "*fp32", "p_out_ptr": "*fp32", "value_part_ptr": "*fp32"}
        ptrs_bwd = {**ptrs, "dW_ptr": wtype, "grad_out_part_ptr": "*fp32", "grad_in_part_ptr": "*fp32"}
        # a Linear weight is read as (n_out, n_in, 1): every tap stride is 1, which the JIT
        # specialises; a conv weight (here 3x3 taps, contiguous) has column stride = taps
        linear = {"stride_wn": 1, "stride_wk": 1, "TAPS": 1, **blocks}
        conv = {"stride_wk": 1, "TAPS": 9, **blocks, "NUM_STAGES": transport.CONV_NUM_STAGES}
        for D in (1, 2, 3):
            add(transport._transport_fwd_kernel, f"W={wname}", ptrs, linear, transport.NUM_WARPS, sizes, D)
            for store_dw in (True, False):
                add(transport._transport_fwd_bwd_kernel, f"W={wname} STORE_DW={int(store_dw)}", ptrs_bwd,
                    {**linear, "stride_dwn": 1, "stride_dwk": 1, "STORE_DW": store_dw},
                    transport.NUM_WARPS, sizes + ("stride_dwm",), D)
        add(transport._transport_fwd_kernel, f"W={wname} conv3x3", ptrs, conv, transport.NUM_WARPS, sizes, 2)
        add(transport._transport_fwd_bwd_kernel, f"W={wname} conv3x3 STORE_DW=1", ptrs_bwd,
            {**conv, "stride_dwk": 1, "STORE_DW": True}, transport.NUM_WARPS, sizes + ("stride_dwm",), 2)
    # grouped and depthwise weights: a 3x3 grouped conv (one group per program) and a 7x7
    # depthwise one (rows across groups), float32 and bfloat16
    for wname in ("float32", "bfloat16"):
        wtype = W_DTYPES[wname]
        ptrs_g = {"W_ptr": wtype, "p_in_ptr": "*fp32", "p_out_ptr": "*fp32", "value_part_ptr": "*fp32",
                  "dW_ptr": wtype, "grad_out_part_ptr": "*fp32", "grad_in_ptr": "*fp32"}
        for label, taps, block_n, one in (("grouped3x3", 9, 16, True), ("depthwise7x7", 49, 1, False)):
            g = {"stride_wk": 1, "TAPS": taps, "BLOCK_M": transport.GROUPED_BLOCK_M, "BLOCK_N": block_n,
                 "ONE_GROUP": one}
            add(transport._grouped_fwd_bwd_kernel, f"W={wname} {label} STORE_DW=1", ptrs_g,
                {**g, "stride_dwk": 1, "STORE_DW": True, "GRADS": True}, transport.grouped_warps(one),
                ("n_out",), 2)
            add(transport._grouped_accumulate_kernel, f"W={wname} {label}",
                {"W_ptr": wtype, "p_in_ptr": "*fp32", "p_out_ptr": "*fp32", "G_ptr": wtype, "up_ptr": "*fp32"},
                {**g, "stride_gk": 1, "ACCUMULATE": True}, transport.GROUPED_ACCUMULATE_WARPS, ("n_out",), 2)
    blocks = {"BLOCK_M": density.BLOCK_M, "BLOCK_N": density.BLOCK_N}
    for D in (1, 2, 3):
        add(density._density_fwd_kernel, "", {"p_ptr": "*fp32", "value_part_ptr": "*fp32"}, blocks,
            density.NUM_WARPS, ("n",), D)
        add(density._density_fwd_bwd_kernel, "",
            {"p_ptr": "*fp32", "value_part_ptr": "*fp32", "grad_ptr": "*fp32"}, blocks,
            density.NUM_WARPS, ("n",), D)
    return out


def _compile(v: Variant, arch: int):
    import triton
    from triton.backends.compiler import GPUTarget

    names = v.kernel.arg_names
    missing = (set(v.pointers) | set(v.constexprs) | set(v.sizes16)) - set(names)
    if missing:
        raise ValueError(f"{v.name} has no arguments {sorted(missing)}; update spatial_kernels/aot.py")
    signature = {}
    for name in names:
        if name in v.constexprs:
            signature[name] = "constexpr"
        elif name in v.pointers:
            signature[name] = v.pointers[name]
        elif name in FLOAT_ARGS:
            signature[name] = "fp32"
        else:
            signature[name] = "i32"
    # what the JIT assumes of torch allocations (16-byte-aligned pointers) and of sizes that
    # are multiples of 16
    attrs = {(names.index(a),): [["tt.divisibility", 16]] for a in (*v.pointers, *v.sizes16)}
    src = triton.compiler.ASTSource(fn=v.kernel, signature=signature, constexprs=v.constexprs, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": v.num_warps})


def _ptxas_usage(ptx: str, arch: int) -> tuple[int, int, int]:
    """(registers, spill store bytes, spill load bytes) from ``ptxas -v``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        cmd = [_ptxas_path(arch), "-v", "-lineinfo", "--regAllocOptLevel=2",
               f"--gpu-name={_sm_arch(arch)}", path, "-o", os.path.join(tmp, "kernel.cubin")]
        log = subprocess.run(cmd, check=True, capture_output=True, text=True).stderr
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if regs is None or spills is None:
        raise RuntimeError(f"cannot read registers/spills from ptxas -v:\n{log}")
    return int(regs.group(1)), int(spills.group(1)), int(spills.group(2))


def _ptxas_path(arch: int) -> str:
    # triton's bundled ptxas; where triton keeps it moved between 3.x releases
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        return get_ptxas(arch).path
    except ImportError:
        from triton.backends.nvidia.compiler import _path_to_binary

        return _path_to_binary("ptxas")[0]


def _sm_arch(arch: int) -> str:
    try:
        from triton.backends.nvidia.compiler import sm_arch_from_capability

        return sm_arch_from_capability(arch)
    except ImportError:  # as triton names them: the arch-specific "a" features from sm_90 on
        return f"sm_{arch}{'a' if arch >= 90 else ''}"


def _refuse_interpreted() -> None:
    os.environ.pop("TRITON_INTERPRET", None)
    if "triton" not in sys.modules:
        return
    from triton.runtime.jit import JITFunction

    from .density import triton_gpu as density

    if not isinstance(density._density_fwd_kernel, JITFunction):
        sys.exit("spatial_kernels.aot: the kernels were imported under TRITON_INTERPRET=1; run "
                 "`python -m spatial_kernels.aot` in a process without TRITON_INTERPRET")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spatial_kernels.aot", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", type=int, nargs="+", default=list(DEFAULT_ARCHS),
                        help="CUDA compute capabilities, e.g. 80 90 (default: %(default)s)")
    args = parser.parse_args(argv)
    _refuse_interpreted()
    import triton

    print(f"triton {triton.__version__}: ahead-of-time compile of the spatial_kernels Triton kernels")
    header = f"{'kernel':<28} {'variant':<38} {'arch':<6} {'cubin_B':>8} {'regs':>5} " \
             f"{'spill_st_B':>10} {'spill_ld_B':>10} {'smem_B':>7}"
    print(header)
    failures = []
    n_ok = 0
    for v in _variants():
        for arch in args.arch:
            row = f"{v.name:<28} {v.label:<38} sm_{arch:<3}"
            try:
                compiled = _compile(v, arch)
                regs, spill_st, spill_ld = _ptxas_usage(compiled.asm["ptx"], arch)
            except Exception as e:  # report every failure, then exit non-zero
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                failures.append(f"{v.name} {v.label} sm_{arch}: {type(e).__name__}: {first}")
                print(f"{row} FAILED {type(e).__name__}: {first}", flush=True)
                continue
            n_ok += 1
            print(f"{row} {len(compiled.asm['cubin']):>8} {regs:>5} {spill_st:>10} {spill_ld:>10} "
                  f"{compiled.metadata.shared:>7}", flush=True)
    archs = ", ".join(f"sm_{a}" for a in args.arch)
    print(f"{n_ok} compiled, {len(failures)} failed ({archs})")
    for f in failures:
        print(f"FAILED {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
