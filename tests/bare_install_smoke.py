"""The kernels' smoke test for a bare install (``pip install spatial-kernels``: torch, numpy,
numba, triton), run by ``.ci/run`` in a fresh environment without the extras, and by
tests/spatial_kernels/test_install.py in the full one:

    python tests/bare_install_smoke.py

Importing spatial_kernels (and spatial_kernels.nn) must import none of the extras' packages; both
costs on numba must match the reference; spatialize must work on a plain torch model."""
import sys
from pathlib import Path

# (not tqdm: torch.hub imports it itself wherever it is installed)
EXTRAS = ("matplotlib", "optuna", "sklearn", "networkx", "scipy", "torchvision", "transformers", "timm", "spatialnet",
          "pandas")


def main() -> int:
    # run as a script, this folder leads sys.path, and its spatial_kernels/ (the tests) would
    # shadow the package
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    import torch

    import spatial_kernels
    import spatial_kernels.nn
    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(EXTRAS))
    assert not loaded, f"importing spatial_kernels imported {loaded}"
    g = torch.Generator().manual_seed(0)
    W = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    p_in, p_out = (torch.randn(n, 2, generator=g, dtype=torch.float64, requires_grad=True) for n in (5, 7))
    for fn in (lambda b: spatial_kernels.fused_transport_cost(W, p_in, p_out, backend=b),
               lambda b: spatial_kernels.fused_density_cost(p_out, backend=b)):
        got = [torch.autograd.grad(fn(b), (W, p_in, p_out), allow_unused=True) for b in ("numba", "reference")]
        for a, r in zip(*got):
            assert (a is None) == (r is None) and (a is None or torch.allclose(a, r, rtol=1e-10, atol=1e-12))
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Conv1d(8, 8, 1, groups=2))
    costs = spatial_kernels.nn.spatialize(model, ["0"], dim=2)
    costs(1.0, 3.0).backward()
    assert model[0].weight.grad is not None
    # (numba itself imports scipy wherever it is installed, for its linear algebra)
    loaded = sorted({m.split(".")[0] for m in sys.modules} & (set(EXTRAS) - {"scipy"}))
    assert not loaded, f"using spatial_kernels imported {loaded}"
    print(f"bare install: spatial_kernels {spatial_kernels.__version__}, backends {spatial_kernels.available_backends()}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
