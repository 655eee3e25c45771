"""Do the best five settings of the selection hold at twice the width (through the width rule), on
the validation split? Table 1's machinery (``table1.py``) per trial, concat and mix, the spatial
net, selection seeds."""
from __future__ import annotations

from ..config import TrainConfig
from .registry import register_study
from .table1 import reproduce

# (trial, alpha, beta, pos_lr_scale, cost_warmup) of the selection's five best (results/sweeps/one-setting-val.md)
TRIALS = ((8, 1.143, 5.158, 1.805, 7.658), (25, 0.911, 3.321, 5.829, 8.09), (41, 0.969, 8.79, 7.395, 3.616),
          (33, 0.932, 7.865, 6.768, 8.181), (31, 0.876, 7.62, 6.534, 8.35))


def _arguments(p) -> None:
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")


@register_study("selection-2x", question="Do the best five settings of the selection hold at twice the width "
                                         "(through the width rule), on the validation split?",
                outputs=("check-2x/trial*/table1.md", "check-2x/trial*/table1.json"), arguments=_arguments)
def run(args) -> None:
    for t, a, b, p, w in TRIALS:
        base = TrainConfig(hidden=[256, 256, 256, 512], alpha=a, beta=b, pos_lr_scale=p, cost_warmup=w,
                           head_offset=0.0, eval_split="val").validate()
        reproduce(base, f"results/check-2x/trial{t}", f"runs/check-2x/trial{t}", seeds=(100, 101),
                  modes=("concat", "mix"), data_dir=args.data_dir, workers=args.workers, device=args.device,
                  variants=("spatial",), given=("alpha", "beta", "pos_lr_scale", "cost_warmup"), rerun=args.rerun)
