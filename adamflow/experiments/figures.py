"""The figures of ``figures/``: each is an experiment (computes) and a drawing (draws).

``FIGURES[name] = (experiment, drawing)``, as dotted paths imported on first use:

- the experiment ``f(*, quick: bool = False, seed: int = 0) -> FigureData`` computes what
  the figure shows from the library;
- the drawing ``draw(data) -> matplotlib.figure.Figure`` (in `adamflow.plotting`) draws
  ``FigureData.data`` and does nothing else.

`make_figure` runs both and writes ``<name>.png`` with its JSON sidecar (every parameter,
the seed, the package version and ``FigureData.results``) atomically. Run times are not
written, so regenerating a figure with the same seed leaves its sidecar unchanged.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, NamedTuple

from ..fileio import save_figure, sidecar


class FigureData(NamedTuple):
    """What an experiment returns: ``data`` for the drawing, every ``parameters`` it used,
    and ``results`` (JSON-able numbers quoted in the sidecar and the Results page).

    Attributes
    ----------
    data : Any
        What the figure's drawing function draws (an experiment's own structure).
    parameters : dict[str, Any]
        Every parameter the experiment used (written to the sidecar's ``parameters``).
    results : dict[str, Any]
        JSON-able numbers (written at the sidecar's top level; `make_figure` returns them).

    Examples
    --------
    >>> from adamflow.experiments import FigureData
    >>> figure_data = FigureData(data=[1.0, 2.0], parameters={"n": 2}, results={"mean": 1.5})
    >>> figure_data.results["mean"], figure_data.parameters
    (1.5, {'n': 2})
    """

    data: Any
    parameters: dict[str, Any]
    results: dict[str, Any]


#: figure name -> (experiment, drawing); the order of the Results page's gallery (docs/results.md).
FIGURES: dict[str, tuple[str, str]] = {
    "phase_diagram": (
        "adamflow.experiments.phase_figures:phase_diagram_experiment",
        "adamflow.plotting.phase:draw_phase_diagram_figure",
    ),
    "switch_off_growth": (
        "adamflow.experiments.phase_figures:switch_off_growth_experiment",
        "adamflow.plotting.phase:draw_switch_off_growth",
    ),
    "trajectories": (
        "adamflow.experiments.convergence:trajectories_experiment",
        "adamflow.plotting.convergence:draw_trajectories",
    ),
    "convergence": (
        "adamflow.experiments.convergence:convergence_experiment",
        "adamflow.plotting.convergence:draw_convergence",
    ),
    "corrected_orders": (
        "adamflow.experiments.corrected:corrected_orders_experiment",
        "adamflow.plotting.convergence:draw_corrected_orders",
    ),
    "meta_adaptive": (
        "adamflow.experiments.kadam_figures:meta_adaptive_experiment",
        "adamflow.plotting.kadam:draw_meta_adaptive",
    ),
    "kadam_stability": (
        "adamflow.experiments.kadam_figures:kadam_stability_experiment",
        "adamflow.plotting.kadam:draw_kadam_stability",
    ),
    "kadam_training": (
        "adamflow.experiments.kadam_figures:kadam_training_experiment",
        "adamflow.plotting.kadam:draw_kadam_training",
    ),
    "phase_accuracy": (
        "adamflow.experiments.kadam_figures:phase_accuracy_experiment",
        "adamflow.plotting.kadam:draw_phase_accuracy",
    ),
    "eos": (
        "adamflow.experiments.eos:eos_experiment",
        "adamflow.plotting.eos:draw_eos",
    ),
    "paper_fig1_sharpness": (
        "adamflow.experiments.eos:paper_fig1_sharpness_experiment",
        "adamflow.plotting.eos:draw_paper_fig1_sharpness",
    ),
    "paper_fig1": (
        "adamflow.experiments.paper_fig1:paper_fig1_experiment",
        "adamflow.plotting.paper_fig1:draw_paper_fig1",
    ),
    "paper_fig2_stability": (
        "adamflow.experiments.paper_fig2:paper_fig2_stability_experiment",
        "adamflow.plotting.paper_fig2:draw_paper_fig2_stability",
    ),
    "paper_flows": (
        "adamflow.experiments.paper_flows:paper_flows_experiment",
        "adamflow.plotting.paper_flows:draw_paper_flows",
    ),
    "paper_reviewers": (
        "adamflow.experiments.reviewers:paper_reviewers_experiment",
        "adamflow.plotting.reviewers:draw_paper_reviewers",
    ),
    "paper_fig3_generalization": (
        "adamflow.experiments.paper_figs:paper_fig3_generalization_experiment",
        "adamflow.plotting.paper_figs:draw_paper_fig3_generalization",
    ),
    "paper_fig4_kadam": (
        "adamflow.experiments.paper_figs:paper_fig4_kadam_experiment",
        "adamflow.plotting.paper_figs:draw_paper_fig4_kadam",
    ),
    "paper_assumptions": (
        "adamflow.experiments.paper_figs:paper_assumptions_experiment",
        "adamflow.plotting.paper_figs:draw_paper_assumptions",
    ),
}


def _resolve(dotted: str) -> Any:
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


def run_experiment(name: str, *, quick: bool = False, seed: int = 0) -> FigureData:
    """The data of figure ``name`` (a key of `FIGURES`), without drawing it."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; known: {list(FIGURES)}")
    return _resolve(FIGURES[name][0])(quick=quick, seed=seed)


def make_figure(
    name: str, out_dir: str | Path, *, quick: bool = False, seed: int = 0
) -> dict[str, Any]:
    """Run figure ``name``'s experiment, draw it, write ``<out_dir>/<name>.png`` and
    ``<name>.json``; returns the figure's ``results``. A quick figure's sidecar says
    ``"quick": true`` at its top level (a full one is unchanged), so no reader mistakes it
    for the full figure.

    Parameters
    ----------
    name : str
        A key of `FIGURES` (``"phase_diagram"``, ``"switch_off_growth"``, ...).
    out_dir : str | pathlib.Path
        The folder of the PNG and its sidecar; created if missing.
    quick : bool, optional
        Run the experiment's quick variant (fewer cells, steps or runs; default ``False``).
    seed : int, optional
        The experiment's seed, recorded in the sidecar (default 0).

    Returns
    -------
    dict[str, Any]
        The experiment's ``results`` (`FigureData.results`), without the ``quick`` mark.

    Raises
    ------
    ValueError
        ``name`` is not a key of `FIGURES`; or the experiment refuses ``seed``.
    OSError
        ``out_dir`` or a file in it cannot be written.
    TypeError
        The sidecar holds a value JSON cannot encode (the PNG is then already written).

    Examples
    --------
    A quick figure (two small phase sweeps, a few seconds):

    >>> import json, tempfile
    >>> from pathlib import Path
    >>> from adamflow.experiments import make_figure
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     results = make_figure("switch_off_growth", tmp, quick=True)
    ...     sidecar = json.loads((Path(tmp) / "switch_off_growth.json").read_text())
    ...     print(sorted(path.name for path in Path(tmp).iterdir()), sidecar["quick"])
    ['switch_off_growth.json', 'switch_off_growth.png'] True
    >>> sorted(results)
    ['growth_cells', 'growth_max_rel_error', 'slopes']
    """
    figure_data = run_experiment(name, quick=quick, seed=seed)
    figure = _resolve(FIGURES[name][1])(figure_data.data)
    marker = {"quick": True} if quick else {}
    save_figure(
        figure,
        Path(out_dir) / f"{name}.png",
        sidecar(figure_data.parameters, seed, **{**figure_data.results, **marker}),
    )
    return figure_data.results
