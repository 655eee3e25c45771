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


def main(argv=None) -> int:
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
