"""Do the defaults carry to three and four tasks (MNIST, Fashion-MNIST, permuted MNIST)? A grid
(``grid.py``) over the task lists, concat, the spatial net beside the regular one."""
from __future__ import annotations

from pathlib import Path

from ..flags import add_config_args, config_from_args, int_list
from .grid import run_grid
from .registry import register_study

TASK_LISTS = (["mnist", "fashion", "pmnist1"], ["mnist", "fashion", "pmnist1", "pmnist2"])


def _arguments(p) -> None:
    p.add_argument("--seeds", type=int_list("--seeds"), default=[0, 1])
    p.add_argument("--out", default="results")
    p.add_argument("--runs-dir", default="runs/tasks")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    add_config_args(p, defaults={"eval_split": "test"})


@register_study("tasks", question="Do the defaults carry to three and four tasks (MNIST, Fashion-MNIST, permuted "
                                  "MNIST)?", outputs=("tasks.json", "tasks/table.md", "tasks/figure1-*.png"), arguments=_arguments)
def run(args) -> None:
    base = config_from_args(args, mode="concat", net="spatial", seed=0)
    run_grid(base, "tasks", args.out, args.runs_dir, tasks_list=list(TASK_LISTS), modes=["concat"],
             nets=["spatial", "regular"], seeds=args.seeds, data_dir=args.data_dir, workers=args.workers,
             device=args.device, rerun=args.rerun)
    print((Path(args.out) / "tasks" / "table.md").read_text())
