"""Every study whose outputs live under results/, declared once: what it asks, the commands that
make it (``spatialnet`` subcommands, or ``python -m`` of a study module), and what it writes.

    spatialnet study --list                 # the studies and their commands
    spatialnet study table1 [--data-dir D]  # run one: every step, resumable (finished runs are read back)

The runner (``spatialnet study``, ``cli.run_study``), the tables (their "Rerun:" line names the
study) and README's rerun lines read this declaration; ``tests/test_spatialnet_studies.py`` checks that each one
parses and that README names each study it cites by this command.
"""
from __future__ import annotations

from dataclasses import dataclass

REPORT = "--seeds 0,1,2,3,4 --eval-split test"
SELECTION = "--seeds 100,101 --eval-split val"


@dataclass(frozen=True)
class Study:
    name: str
    question: str
    steps: tuple[str, ...]   # each: "spatialnet ARGS" or "python -m MODULE ARGS"
    outputs: tuple[str, ...]  # under results/

    def commands(self) -> list[list[str]]:
        """Each step as its argv (shell-quoted words); a ValueError for a step of another kind."""
        import shlex
        out = []
        for step in self.steps:
            words = shlex.split(step)
            if not (words[:1] == ["spatialnet"] or words[:2] == ["python", "-m"]):
                raise ValueError(f"study {self.name!r}: a step is 'spatialnet ...' or 'python -m MODULE ...', "
                                 f"got {step!r}")
            out.append(words)
        return out


_STUDIES = (
    Study("references", "Do the measures rank synthetic layouts as a person would (clusters, sheets, crowding)?",
          ("python -m spatialnet.studies.references results/measures-references",),
          ("measures-references.md", "measures-references.json")),
    Study("width-gradients", "How does a weight's task gradient scale with width, at initialisation and once "
                             "trained (the width rule's premise)?",
          ("python -m spatialnet.studies.width_gradients --widths 1,2,4,8",),
          ("width-rule-gradients.md", "width-rule-gradients.json")),
    Study("selection", "Which one setting (alpha, beta, the positions' lr, a cost warm-up) meets the targets in "
                       "every mode at 1x, on the validation split?",
          ("spatialnet sweep --study one-setting-val --resume --trials 22 --modes concat,mix,sequential "
           "--seeds 100,101 --constraint targets --objectives full,drop,silhouette,nn "
           "--param alpha=0.3:10:log --param beta=0.3:30:log --param pos_lr_scale=0.3:10:log "
           "--param cost_warmup=0:10 --epochs 30 --head-offset 0 --heartbeat 120 "
           "--report results/sweeps/one-setting-val.md",),
          ("sweeps/one-setting-val.md", "sweeps/one-setting-val.json", "sweeps/one-setting-val.png")),
    Study("selection-2x", "Do the best five settings of the selection hold at twice the width (through the width "
                          "rule), on the validation split?",
          tuple(f"spatialnet reproduce --modes concat,mix --variants spatial --seeds 100,101 --eval-split val "
                f"--workers 2 --hidden 256,256,256,512 --alpha {a} --beta {b} --pos-lr-scale {p} --cost-warmup {w} "
                f"--head-offset 0 --out results/check-2x/trial{t} --runs-dir runs/check-2x/trial{t}"
                for t, a, b, p, w in ((8, 1.143, 5.158, 1.805, 7.658), (25, 0.911, 3.321, 5.829, 8.09),
                                      (41, 0.969, 8.79, 7.395, 3.616), (33, 0.932, 7.865, 6.768, 8.181),
                                      (31, 0.876, 7.62, 6.534, 8.35))),
          ("check-2x/trial*/table1.md", "check-2x/trial*/table1.json")),
    Study("selection-sequential", "Sequential mode alone: which setting comes nearest its targets (a split that "
                                  "keeps the accuracy, clusters, no crowding), on the validation split?",
          ("spatialnet sweep --study sequential-val --resume --trials 8 --modes sequential --seeds 100,101 "
           "--constraint targets --objectives full,drop,silhouette,nn --param alpha=0.3:30:log "
           "--param beta=0.3:60:log --param pos_lr_scale=0.3:10:log --param cost_warmup=0:10 --epochs 30 "
           "--head-offset 0 --heartbeat 120 --report results/sweeps/sequential-val.md",),
          ("sweeps/sequential-val.md", "sweeps/sequential-val.json", "sweeps/sequential-val.png")),
    Study("table1", "Table 1 at the defaults: every mode, the spatial net beside the regular net, L1 only and "
                    "frozen positions, on the report seeds and the test sets.",
          (f"spatialnet reproduce --modes concat,mix,sequential --variants spatial,regular,l1-only,frozen {REPORT} "
           "--workers 2 --out results --runs-dir runs/table1",),
          ("table1.md", "table1.json", "figure1-<mode>.png", "figure2-<mode>.png", "positions-<mode>.gif")),
    Study("wide", "Does the width rule carry the defaults to 2x, 4x and 8x the paper's widths?",
          ("spatialnet grid --name wide --hidden-list '128,128,128,256;256,256,256,512;512,512,512,1024' "
           "--modes concat,mix --nets spatial --seeds 0,1,2 --eval-split test --workers 2 --out results",
           "spatialnet grid --name wide-8x --hidden-list '1024,1024,1024,2048' --modes concat,mix --nets spatial "
           "--seeds 0,1 --eval-split test --workers 2 --out results --runs-dir runs/wide"),
          ("wide.json", "wide/table.md", "wide/figure1-*.png", "wide-8x.json", "wide-8x/table.md",
           "wide-8x/figure1-*.png")),
    Study("vit-modules", "Does any block of a timm ViT form task modules under the costs at the strength the "
                         "width rule's invariants give (and at 3x and 1/3 of it), beside the plain ViT?",
          ("python -m spatialnet.studies.vit_modules --out results/vit-modules --seeds 0,1 --patch 7 --epochs 8 "
           "--warmup 200 --schedule cosine --strength derived --scales 1 --threads 1 --timing-pairs 15",
           "python -m spatialnet.studies.vit_modules --out results/vit-modules --seeds 0 --patch 7 --epochs 8 "
           "--warmup 200 --schedule cosine --strength derived --scales 1,3,0.333 --threads 1 --timing-pairs 15"),
          ("vit-modules.md", "vit-modules.json")),
    Study("demo-subset", "Does the demo show the effect on the embedded subset (the regular net's share / chance "
                         "at least 3x the spatial net's, the spatial drop within 0.02)?",
          ("spatialnet demo --data subset --out results/demo-subset --no-progress",),
          ("demo-subset/demo.json", "demo-subset/figure1.png", "demo-subset/figure2.png")),
    Study("tasks", "Do the defaults carry to three and four tasks (MNIST, Fashion-MNIST, permuted MNIST)?",
          ("spatialnet grid --name tasks --tasks-list 'mnist,fashion,pmnist1;mnist,fashion,pmnist1,pmnist2' "
           "--modes concat --nets spatial,regular --seeds 0,1 --eval-split test --workers 2 --out results",),
          ("tasks.json", "tasks/table.md")),
)
STUDIES = {s.name: s for s in _STUDIES}


def study(name: str) -> Study:
    if name not in STUDIES:
        raise ValueError(f"no study {name!r}; the studies are {', '.join(STUDIES)} (spatialnet study --list)")
    return STUDIES[name]
