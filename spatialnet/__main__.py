"""The ``spatialnet`` command (``python -m spatialnet``, the console script, ``torchrun -m spatialnet``).

Its own process, unlike a library user's, gets transparent huge pages for torch's large CPU
allocations (``THP_MEM_ALLOC_ENABLE=1``, read by torch once, so set before torch loads; a value
the user set is kept). A training step allocates its gradients and Adam's temporaries afresh
every step, and on Linux each new 4 KiB page of them faults on first touch: at width 4096 the
step took 293 ms with 4 KiB pages and 246 ms with huge pages, the same for regular and spatial
nets (benchmarks/results/cpu-step-2026-12-01.md).
"""
import os
import sys


# what spatialnet needs beyond the kernels: the [paper] extra, less optuna, which only the sweep
# imports (and names the extra where it is missing): the GPU image has none, and trains
PAPER_MODULES = ("matplotlib", "sklearn", "networkx", "scipy", "torchvision", "tqdm")


def main(argv=None) -> int:
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    import importlib.util
    missing = [m for m in PAPER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        print(f"spatialnet: needs the [paper] extra ({', '.join(missing)} missing): "
              f"pip install 'spatial-kernels[paper]' (or -e '.[paper]' in a checkout)", file=sys.stderr)
        return 2
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
