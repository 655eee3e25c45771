"""The studies whose outputs live under results/, each one file that registers itself
(``registry.py``) and is listed once in ``catalog.py``: ``spatialnet study --list`` lists them,
``spatialnet study NAME`` runs one. Beside them: the pool that trains a study's runs
(``runs.py``), the Table 1 and grid machinery other studies reuse (``table1.py``, ``grid.py``), and
the demo (``demo.py``)."""
