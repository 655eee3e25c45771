"""The studies: every experiment whose outputs live under results/, declared once in
``catalog.py`` and run with ``spatialnet study NAME``. Table 1 with its controls (``table1.py``),
grids over widths or task lists (``grid.py``), Optuna sweeps (``sweep.py``), the dead rule's
sensitivity (``dead_tol.py``), the measures' synthetic references (``references.py``), the
figures (``plots.py``), the demo (``demo.py``), spatialized timm and torchvision models
(``vit_modules.py``, ``wide_mlp.py``); the pool that trains their runs (``runs.py``)."""
