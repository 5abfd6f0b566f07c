"""Matplotlib figure functions, one module per subject (imported on demand).

Each ``figure_<name>(out_dir, *, quick=False, seed=0)`` computes what it shows from the
library, writes ``<name>.png`` and its JSON sidecar atomically, and returns a summary dict.
`FIGURES` lists every figure of ``figures/``; `make_figure` runs one by name.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

#: figure name -> (module under adamflow.plotting, function); the order of the gallery.
FIGURES: dict[str, tuple[str, str]] = {
    "phase_diagram": ("phase", "figure_phase_diagram"),
    "switch_off_growth": ("phase", "figure_switch_off_growth"),
    "trajectories": ("convergence", "figure_trajectories"),
    "convergence": ("convergence", "figure_convergence"),
    "meta_adaptive": ("kadam", "figure_meta_adaptive"),
    "kadam_stability": ("kadam", "figure_kadam_stability"),
    "kadam_training": ("kadam", "figure_kadam_training"),
    "phase_accuracy": ("kadam", "figure_phase_accuracy"),
}


def make_figure(name: str, out_dir: str | Path, *, quick: bool = False, seed: int = 0) -> Any:
    """Regenerate figure ``name`` (a key of `FIGURES`) into ``out_dir``."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; known: {list(FIGURES)}")
    module_name, function_name = FIGURES[name]
    module = importlib.import_module(f"adamflow.plotting.{module_name}")
    return getattr(module, function_name)(Path(out_dir), quick=quick, seed=seed)
