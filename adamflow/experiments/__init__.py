"""The experiments behind adamflow's figures, tables and benchmarks.

They use the library (`adamflow`) and the drawing functions (`adamflow.plotting`); nothing
in the library imports them (as optax keeps ``optax.contrib`` apart). Each figure of
``figures/`` is an experiment function returning a `FigureData` and a pure drawing function;
`make_figure` runs one by name and writes its PNG with a JSON sidecar.
"""

from .figures import FIGURES as FIGURES
from .figures import FigureData as FigureData
from .figures import make_figure as make_figure
