"""The analysis stage: what a trained net is made of. The paper's greedy split (``split.py``), the
modularity and crowding measures with their nulls (``modularity.py``), the read-out of a run and
the spatial net's targets (``evaluate.py``), and the means and intervals every table uses
(``stats.py``). Nothing here trains."""
