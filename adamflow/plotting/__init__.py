"""Matplotlib figure functions, one module per subject (imported on demand).

Each ``figure_<name>(out_dir, *, quick=False, seed=0)`` computes what it shows from the
library, writes ``<name>.png`` and its JSON sidecar atomically, and returns a summary dict.
"""
