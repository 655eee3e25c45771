"""Does the demo show the effect on the embedded subset? ``spatialnet demo --data subset`` as a
study, its record under results/demo-subset/."""
from __future__ import annotations

from ..data import load
from ..flags import add_config_args, config_from_args
from .demo import run_demo
from .registry import register_study


def _arguments(p) -> None:
    p.add_argument("--out", default="results/demo-subset")
    p.add_argument("--seed", type=int, default=0)
    add_config_args(p, defaults={"data": "subset", "epochs": 200})


@register_study("demo-subset", question="Does the demo show the effect on the embedded subset (the regular net's "
                                        "share / chance at least 3x the spatial net's, the spatial drop within "
                                        "0.02)?", outputs=("demo-subset/demo.json", "demo-subset/figure1.png",
                                                           "demo-subset/figure2.png"), arguments=_arguments)
def run(args) -> None:
    base = config_from_args(args, mode="concat", net="spatial", seed=args.seed)
    run_demo(base, args.out, load(base.data, args.data_dir), data_dir=args.data_dir, progress=False)
