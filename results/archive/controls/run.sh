#!/bin/sh
# Issue 14's study, as it ran (results/controls.md). Each step resumes and retrains nothing that
# finished. DATA: the MNIST/Fashion-MNIST folder.
set -e
D=${DATA:-/work/shared/datasets}
export OMP_NUM_THREADS=1
PAPER="--alpha 1 --beta 3 --lr 0.005 --pos-lr-scale 1 --init-gain 1 --head-offset 0 --density-norm paper"
# 1. selection, on the validation split with selection seeds 100 and 101: the default recipe with its
#    head offset and without, and the paper's alpha, beta, lr (no offset) with and without the offset
spatialnet reproduce --modes concat --variants spatial,offset-0 --seeds 100,101 --eval-split val --workers 2 \
    --data-dir "$D" --out results/controls/val-defaults --runs-dir runs/issue14/val-defaults
spatialnet reproduce --modes concat --variants spatial,offset-1.6 --seeds 100,101 --eval-split val --workers 2 \
    --data-dir "$D" $PAPER --out results/controls/val-paper --runs-dir runs/issue14/val-paper
# 2. report, on the test sets with report seeds 0-4: the setting validation chose (the paper's alpha,
#    beta, lr with the heads 1.6 apart: the highest silhouette and ARI on both selection seeds) and
#    its controls. Stopped at the session's end: concat complete, mix as far as it got (n per row).
BASE="--alpha 1 --beta 3 --lr 0.005 --pos-lr-scale 1 --init-gain 1 --head-offset 1.6 --density-norm paper"
spatialnet reproduce --modes concat,mix --variants spatial,regular,l1-only,frozen,offset-0 --seeds 0,1,2,3,4 \
    --eval-split test --workers 2 --data-dir "$D" $BASE --out results/controls/table1 --runs-dir runs/issue14/table1
# 3. (the next session) mix and sequential on the validation split, seeds 100, 101: the concat choice
#    (BASE) with its head-offset control; sequential also under the recipe before issue 14 (alpha 9,
#    beta 20, lr 0.0024, gain 2, V per neuron: the then-defaults, config.RECIPE_2025_HPARAMS)
spatialnet reproduce --modes mix --variants spatial,offset-0 --seeds 100,101 --eval-split val --workers 1 \
    --data-dir "$D" $BASE --out results/controls/val-mix --runs-dir runs/issue14/val-mix
spatialnet reproduce --modes sequential --variants spatial,offset-0 --seeds 100,101 --eval-split val --workers 1 \
    --data-dir "$D" $BASE --out results/controls/val-seq-paper --runs-dir runs/issue14/val-seq-paper
OLD="--alpha 9 --beta 20 --lr 0.0024 --pos-lr-scale 0.85 --init-gain 2 --head-offset 1.6 --density-norm neuron"
spatialnet reproduce --modes sequential --variants spatial,offset-0 --seeds 100,101 --eval-split val --workers 1 \
    --data-dir "$D" $OLD --out results/controls/val-seq-defaults --runs-dir runs/issue14/val-seq-defaults
# 4. report, mix: the setting validation chose in mix too (BASE), its controls
spatialnet reproduce --modes mix --variants spatial,regular,l1-only,frozen,offset-0 --seeds 0,1,2,3,4 \
    --eval-split test --workers 1 --data-dir "$D" $BASE --out results/controls/table1-mix --runs-dir runs/issue14/table1
# 5. does the head offset only speed the clusters up? 60 epochs, read every 10, validation
#    (python results/controls/trajectory.py writes val-offset-60/trajectory.md)
spatialnet reproduce --modes concat,mix --variants spatial,offset-0 --seeds 100,101 --epochs 60 --eval-every 10 \
    --eval-split val --workers 1 --data-dir "$D" $BASE --out results/controls/val-offset-60 --runs-dir runs/issue14/val-offset-60
# 6. the defaults, re-chosen: a multi-objective sweep in concat with the heads together (the paper's
#    lr 0.005, gain 1, V over pairs; searching alpha, beta and the positions' lr), validation only,
#    seeds 100 and 101; two workers, stopped after 13 complete trials (results/sweeps/concat-offset0-val.md)
spatialnet sweep --mode concat --study concat-offset0-val --resume --trials 12 --seeds 100,101 \
  --objectives full,drop,silhouette,dead_fraction \
  --param alpha=0.3:10:log --param beta=0.3:30:log --param pos_lr_scale=0.3:10:log \
  --epochs 30 --head-offset 0 --data-dir "$D" --report results/sweeps/concat-offset0-val.md
# 7. trial 12 rounded (alpha 1.6, beta 0.4, positions at 10x the lr, heads together) on validation in
#    every mode, then reported on seeds 0-4 with its controls (the regular rows are those of step 2/4:
#    the regular net has no alpha, beta or positions)
NEW="--alpha 1.6 --beta 0.4 --pos-lr-scale 10 --lr 0.005 --init-gain 1 --density-norm paper --head-offset 0"
spatialnet reproduce --modes concat,mix,sequential --variants spatial --seeds 100,101 --eval-split val --workers 2 \
    --data-dir "$D" $NEW --out results/controls/val-chosen --runs-dir runs/issue14/val-chosen
spatialnet reproduce --modes concat,mix --variants spatial,l1-only,frozen,offset-1.6 --seeds 0,1,2,3,4 \
    --eval-split test --workers 2 --data-dir "$D" $NEW --out results/controls/table1-default --runs-dir runs/issue14/table1-default
spatialnet reproduce --modes sequential --variants spatial,regular --seeds 0,1,2,3,4 \
    --eval-split test --workers 2 --data-dir "$D" $NEW --out results/controls/table1-sequential --runs-dir runs/issue14/table1-sequential
# 8. sequential at the recipe before issue 14 (the frontier's low-drop end), report seeds
spatialnet reproduce --modes sequential --variants spatial --seeds 0,1,2,3,4 --eval-split test --workers 2 \
    --data-dir "$D" $OLD --out results/controls/table1-sequential-old --runs-dir runs/issue14/table1-sequential-old
