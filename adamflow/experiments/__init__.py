"""The experiments behind adamflow's figures, tables and benchmarks.

They use the library (`adamflow`) and the drawing functions (`adamflow.plotting`); nothing
in the library imports them (as optax keeps ``optax.contrib`` apart). Each figure of
``figures/`` is an experiment function returning a `FigureData` and a pure drawing function;
`make_figure` runs one by name and writes its PNG with a JSON sidecar.

Modules (imported on demand):

- `figures`: the registry `FIGURES`, `FigureData`, `make_figure`;
- `convergence`, `kadam_figures`, `phase_figures`: the experiments behind each figure;
- `training`: data sets, models and the vmapped k-Adam training harness;
- `scale_invariant`, `meta`: scale-invariant problems and the |θ|² dynamics
  (theory/kadam.md §4);
- `corrected`: the corrected flow's accuracy table and cost (theory/corrected_flow.md);
- `bench`, `phase_baselines`: the performance measurements of ``scripts/bench.py``.
"""

from .figures import FIGURES as FIGURES
from .figures import FigureData as FigureData
from .figures import make_figure as make_figure

__all__ = [
    "FigureData",
    "FIGURES",
    "make_figure",
]
