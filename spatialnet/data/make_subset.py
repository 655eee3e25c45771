"""Makes spatialnet/assets/subset.npz: a small real MNIST + Fashion-MNIST subset shipped with the
package, so the demo and the tests run on a fresh machine with no network.

    python -m spatialnet.data.make_subset --data-dir DIR

Per dataset: 2 000 train images (200 per class) from the train split and 1 000 test images
(100 per class) from the test split, drawn with a fixed seed; uint8 pixels, compressed npz.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .read import SUBSET_PATH, load_full


def balanced(y: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    idx = [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(10)]
    return rng.permutation(np.concatenate(idx))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None,
                    help="folder with MNIST/raw and FashionMNIST/raw (else $SPATIALNET_DATA, else ~/.cache/spatialnet)")
    ap.add_argument("--out", default=str(SUBSET_PATH))
    ap.add_argument("--train-per-class", type=int, default=200)
    ap.add_argument("--test-per-class", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = load_full(args.data_dir, download=False)
    rng = np.random.default_rng(args.seed)
    arrays = {}
    for kind, split, per_class in (("train", data.train, args.train_per_class),
                                   ("test", data.test, args.test_per_class)):
        for name, x, y in (("mnist", split.mnist_x, split.mnist_y),
                           ("fashion", split.fashion_x, split.fashion_y)):
            y = y.numpy()
            idx = balanced(y, per_class, rng)
            arrays[f"{name}_{kind}_x"] = x.numpy()[idx].astype(np.uint8)
            arrays[f"{name}_{kind}_y"] = y[idx].astype(np.uint8)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
