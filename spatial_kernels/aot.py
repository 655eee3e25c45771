"""Ahead-of-time compile of every Triton kernel the package launches, for real GPU targets; needs no GPU.

    python -m spatial_kernels.aot [--arch 80 90]

Which kernels: every ``@triton.jit`` function in the package that no other one calls is an entry
kernel, launched from Python (``entry_kernels``): found by walking the package's modules, so a
new kernel is on the list the moment it exists. Which specialisations: the launchers themselves
are run on small CPU tensors over the cases in ``aot_cases.py`` (each W dtype, D, Linear, conv,
grouped and depthwise weights, each pass, sizes divisible by 16 and not) with the launch step
replaced by a recorder; each recorded launch goes through triton's own binder for the target
(``create_function_from_signature``, as ``JITFunction.run`` does), so the signature,
compile-time constants, divisibility hints and options are the ones the JIT would build at run
time. An entry kernel that no case launches is a failure.

Each distinct specialisation is compiled with ``triton.compile(ASTSource(...),
target=GPUTarget("cuda", arch, 32))`` to a cubin, and one row per kernel, variant and arch gives
cubin bytes, registers, spill stores/loads, shared memory and the occupancy they allow: programs
(CTAs) per SM and the share of the SM's 64 warp slots they fill. Exits 1 when a compile fails,
a kernel spills, or an entry kernel is never launched (all listed last).

Registers and spills come from ``ptxas -v`` (triton's own ptxas, with triton's flags) run on
the PTX triton produced: triton fills ``CompiledKernel.n_regs`` / ``n_spills`` only when the
binary is loaded on a device. Occupancy follows the CUDA occupancy calculator: per SM 64K
registers (a warp's allocated in units of 256), 64 warps, 32 CTAs, and 164 KB (sm_80) or
228 KB (sm_90) of shared memory, 1 KB of it reserved per CTA.

The check needs compiled kernels, not the numpy interpreter, so ``TRITON_INTERPRET`` is cleared
before the kernel modules (and triton) are imported; running it in a process that has already
imported them interpreted is refused with a message.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import os
import pkgutil
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

DEFAULT_ARCHS = (80, 90)
# per-SM limits: shared memory bytes per SM, per CTA; 1 KB of an SM's is reserved per CTA
SMEM_PER_SM = {80: 167936, 90: 233472}
SMEM_PER_CTA = {80: 166912, 90: 232448}
SMEM_RESERVED_PER_CTA = 1024
REGS_PER_SM, WARPS_PER_SM, CTAS_PER_SM = 65536, 64, 32
# the compile-time flags a variant's label shows, besides its case
FLAGS = ("GRADS", "GRAD", "STORE_DW", "ACCUMULATE", "ONE_GROUP")


@dataclass
class Variant:
    kernel: object  # a triton JITFunction
    label: str
    args: tuple  # positional arguments of the recorded launch
    kwargs: dict = field(default_factory=dict)  # keyword arguments: kernel arguments and options

    @property
    def name(self) -> str:
        return self.kernel.__name__


def _package_modules():
    """The package's modules that define Triton kernels, imported."""
    import spatial_kernels

    for info in pkgutil.walk_packages(spatial_kernels.__path__, "spatial_kernels."):
        spec = importlib.util.find_spec(info.name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        with open(spec.origin) as f:
            if "@triton.jit" in f.read():
                yield importlib.import_module(info.name)


def jit_functions() -> dict:
    """Every ``@triton.jit`` function defined in the package, by name."""
    from triton.runtime.jit import JITFunction

    found = {}
    for module in _package_modules():
        for obj in vars(module).values():
            if isinstance(obj, JITFunction) and obj.fn.__module__ == module.__name__:
                found[obj.__name__] = obj
    return found


def entry_kernels() -> dict:
    """The ``@triton.jit`` functions no other one calls: the kernels launched from Python."""
    functions = jit_functions()
    called = set()
    for fn in functions.values():
        for node in ast.walk(ast.parse(fn.src)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id != fn.__name__:
                called.add(node.func.id)
    return {name: fn for name, fn in functions.items() if name not in called}


@contextlib.contextmanager
def _recording(launches: list, label: list):
    """Launches record ``Variant``s instead of running (the current case's label in ``label[0]``)."""
    from triton.runtime.jit import KernelInterface

    getitem = KernelInterface.__getitem__

    def record(self, grid):
        def launch(*args, **kwargs):
            launches.append(Variant(self, label[0], args, kwargs))
        return launch

    KernelInterface.__getitem__ = record
    try:
        yield
    finally:
        KernelInterface.__getitem__ = getitem


def _specialise(v: Variant, arch: int):
    """``(signature, constexprs, attrs, options)`` of a launch on ``arch``, by triton's binder."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    backend = make_backend(GPUTarget("cuda", arch, 32))
    binder = create_function_from_signature(v.kernel.signature, v.kernel.params, backend)
    bound, specialization, options = binder(*v.args, **v.kwargs)
    options, signature, constexprs, attrs = v.kernel._pack_args(backend, options, bound, specialization, options)
    return signature, constexprs, attrs, options


def _key(v: Variant):
    signature, constexprs, attrs, options = _specialise(v, 90)
    return (v.name, tuple(signature.items()), tuple(sorted(constexprs.items())),
            tuple((k, str(a)) for k, a in sorted(attrs.items())), options.num_warps, options.num_stages)


def _labelled(v: Variant) -> Variant:
    _, constexprs, _, _ = _specialise(v, 90)
    names = v.kernel.arg_names
    flags = " ".join(f"{n}={int(constexprs[(names.index(n),)])}" for n in FLAGS
                     if n in names and (names.index(n),) in constexprs)
    return Variant(v.kernel, f"{v.label} {flags}".strip(), v.args, v.kwargs)


def _variants() -> tuple[list[Variant], list[str]]:
    """Every distinct specialisation the cases launch, and the entry kernels none launches."""
    from .aot_cases import cases

    launches, label = [], [""]
    with _recording(launches, label):
        for label[0], call in cases():
            call()
    seen, out = set(), []
    for v in launches:
        key = _key(v)
        if key not in seen:
            seen.add(key)
            out.append(_labelled(v))
    launched = {v.name for v in out}
    missing = [f"{name}: an entry kernel no case in spatial_kernels/aot_cases.py launches"
               for name in sorted(set(entry_kernels()) - launched)]
    return out, missing


def _compile(v: Variant, arch: int):
    import triton
    from triton.backends.compiler import GPUTarget

    signature, constexprs, attrs, options = _specialise(v, arch)
    src = triton.compiler.ASTSource(fn=v.kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options.__dict__), options.num_warps


def occupancy(regs: int, smem: int, num_warps: int, arch: int) -> int:
    """Programs (CTAs) per SM that ``regs`` registers per thread and ``smem`` bytes allow."""
    regs_per_warp = -(-regs // 8) * 8 * 32
    by_regs = (REGS_PER_SM // regs_per_warp) // num_warps
    if smem > SMEM_PER_CTA[arch]:
        return 0
    by_smem = SMEM_PER_SM[arch] // (smem + SMEM_RESERVED_PER_CTA)
    return max(0, min(CTAS_PER_SM, WARPS_PER_SM // num_warps, by_regs, by_smem))


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

    if not isinstance(density._density_fwd_bwd_kernel, JITFunction):
        sys.exit("spatial_kernels.aot: the kernels were imported under TRITON_INTERPRET=1; run "
                 "`python -m spatial_kernels.aot` in a process without TRITON_INTERPRET")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spatial_kernels.aot", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", type=int, nargs="+", default=list(DEFAULT_ARCHS),
                        help="CUDA compute capabilities, e.g. 80 90 (default: %(default)s)")
    args = parser.parse_args(argv)
    _refuse_interpreted()
    import triton

    variants, failures = _variants()
    print(f"triton {triton.__version__}: ahead-of-time compile of the {len({v.name for v in variants})} Triton "
          f"kernels spatial_kernels launches ({len(variants)} specialisations)")
    print(f"{'kernel':<30} {'variant':<46} {'arch':<6} {'cubin_B':>8} {'regs':>5} {'spill_st_B':>10} "
          f"{'spill_ld_B':>10} {'smem_B':>7} {'CTA/SM':>6} {'occ%':>5}")
    n_ok = 0
    for v in variants:
        for arch in args.arch:
            row = f"{v.name:<30} {v.label:<46} sm_{arch:<3}"
            try:
                compiled, num_warps = _compile(v, arch)
                regs, spill_st, spill_ld = _ptxas_usage(compiled.asm["ptx"], arch)
            except Exception as e:  # report every failure, then exit non-zero
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                failures.append(f"{v.name} {v.label} sm_{arch}: {type(e).__name__}: {first}")
                print(f"{row} FAILED {type(e).__name__}: {first}", flush=True)
                continue
            smem = compiled.metadata.shared
            ctas = occupancy(regs, smem, num_warps, arch)
            print(f"{row} {len(compiled.asm['cubin']):>8} {regs:>5} {spill_st:>10} {spill_ld:>10} {smem:>7} "
                  f"{ctas:>6} {100 * ctas * num_warps // WARPS_PER_SM:>5}", flush=True)
            if spill_st or spill_ld:
                failures.append(f"{v.name} {v.label} sm_{arch}: spills {spill_st} B stored, {spill_ld} B loaded")
            else:
                n_ok += 1
    archs = ", ".join(f"sm_{a}" for a in args.arch)
    print(f"{n_ok} compiled, {len(failures)} failed ({archs})")
    for f in failures:
        print(f"FAILED {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
