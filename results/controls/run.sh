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
spatialnet reproduce --modes concat,mix --variants spatial,offset-0 --seeds 100,101 --epochs 60 --eval-every 10 \
    --eval-split val --workers 1 --data-dir "$D" $BASE --out results/controls/val-offset-60 --runs-dir runs/issue14/val-offset-60
