r"""The experiments behind the figures ``phase_diagram`` and ``switch_off_growth``.

Both run `adamflow.phase_diagram` and compare it with theory/stability.md: the stable region
:math:`\beta_2 > \beta_1^2` and the growth :math:`\ln(\beta_1/\sqrt{\beta_2})` of
:math:`\ln|u|` per step without gradient, until the ε cap. The drawings are
`adamflow.plotting.phase.draw_phase_diagram_figure` and
`adamflow.plotting.phase.draw_switch_off_growth`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

import adamflow as af
from adamflow import phase

from ..fileio import save_figure
from .figures import FigureData

#: (β₁, β₂) whose log|u| after a switch-off is drawn: fast, medium and slow growth, growth
#: stopped early by the ε cap near the boundary, and decay at Adam's default.
SWITCH_OFF_CURVES = ((0.9, 0.5), (0.99, 0.8), (0.99, 0.97), (0.9, 0.8), (0.9, 0.999))


def phase_diagram_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    r"""The default phase diagram (what ``scripts/phase_diagram.py`` makes): Adam on
    `adamflow.problems.sparse` over `adamflow.phase.default_grid` (40 × 40; 12 × 12 with
    ``quick``) with the steps and lr of ``DEFAULT_RUNS["sparse"]`` (1500 steps with
    ``quick``), measured against :math:`\beta_2 > \beta_1^2` (theory/stability.md §1).

    Returns the `adamflow.PhaseDiagram` as ``data``, its parameters, and
    ``results = {"summary": diagram.summary()}`` (no run time)."""
    b1s, b2s = phase.default_grid(12) if quick else phase.default_grid()
    run = dict(phase.DEFAULT_RUNS["sparse"])
    if quick:
        run["steps"] = 1500
    diagram = af.phase_diagram(af.problems.sparse(), b1s, b2s, seed=seed, progress=False, **run)
    return FigureData(diagram, dict(diagram.parameters), {"summary": diagram.summary()})


def write_phase_diagram(
    diagram: af.PhaseDiagram, figure: Any, directory: str | Path, name: str = "phase_diagram"
) -> Path:
    """Write ``<name>.npz`` and ``<name>.json`` (`adamflow.PhaseDiagram.save`) and the drawn
    ``figure`` as ``<name>.png``, atomically, into ``directory``; the JSON sidecar holds every
    parameter, the seed, the version and the summary, never a run time. Returns the PNG
    path."""
    directory = Path(directory)
    diagram.save(directory, name)
    return save_figure(figure, directory / f"{name}.png", diagram.metadata())


class SwitchOffCurve(NamedTuple):
    """One (β₁, β₂) of the switch-off panel: ``theory`` = ln(β₁/√β₂), ``measured`` = the
    fitted slope (`growth_slope`), ``stable`` = β₂ > β₁², ``log10_u`` = log10 max_i|u_i| at
    the trace steps."""

    b1: float
    b2: float
    theory: float
    measured: float
    stable: bool
    log10_u: np.ndarray


class SwitchOffGrowth(NamedTuple):
    """What `adamflow.plotting.phase.draw_switch_off_growth` draws.

    ``since``: trace steps counted from the switch-off ``n0``; ``shown_from``: the first
    ``since`` drawn; ``trace_every``: steps between trace points; ``eps``: ε; ``curves``:
    one `SwitchOffCurve` per (β₁, β₂); ``growth``: the grid sweep; ``growth_unstable``: its
    cells with a measured growth that are theory-unstable outside the band;
    ``growth_max_rel_error``: the worst relative error of their growth against theory."""

    n0: int
    eps: float
    since: np.ndarray
    shown_from: int
    trace_every: int
    curves: tuple[SwitchOffCurve, ...]
    growth: af.PhaseDiagram
    growth_unstable: np.ndarray
    growth_max_rel_error: float


def growth_slope(steps: np.ndarray, log10_u: np.ndarray, start: int) -> float:
    r"""Least-squares slope of :math:`\ln|u|` per step after index ``start`` (to compare with
    :math:`\ln(\beta_1/\sqrt{\beta_2})`, theory/stability.md §1): over the rise up to one
    decade below its peak (before the ε cap of theory/stability.md §2 bends it), or, where
    |u| only falls, over the first 100 steps of the fall. NaN with fewer than two points."""
    rise = log10_u[start:]
    after = steps[start:] - steps[start]
    peak = int(np.argmax(rise))
    if peak > 0:
        usable = np.nonzero(rise[: peak + 1] <= rise[peak] - 1.0)[0]
        if usable.size < 3:
            usable = np.arange(peak + 1)
    else:
        usable = np.nonzero(after <= 100)[0]
    if usable.size < 2:
        return float("nan")
    slope = np.polyfit(after[usable], rise[usable], 1)[0]
    return float(slope * np.log(10.0))


def growth_accuracy(diagram: af.PhaseDiagram) -> tuple[np.ndarray, float]:
    r"""The cells of ``diagram`` whose growth was measured and that are theory-unstable
    outside the band, and the worst relative error there of the measured growth against
    :math:`\ln(\beta_1/\sqrt{\beta_2})`, :math:`\max|r_\text{measured}/r_\text{theory} - 1|`
    (NaN when there is no such cell; theory/stability.md §1)."""
    measured = np.isfinite(diagram.growth_rate)
    unstable = measured & ~diagram.theory_stable & ~diagram.band
    relative = np.abs(diagram.growth_rate[unstable] / diagram.theory_growth[unstable] - 1.0)
    worst = float(relative.max()) if relative.size else float("nan")
    return unstable, worst


def switch_off_growth_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    r"""The growth of :math:`\ln|u|` after the gradient switches off
    (`adamflow.problems.switch_off`, ``n0`` = 5000 steps of gradient; 1000 with ``quick``)
    against :math:`\ln(\beta_1/\sqrt{\beta_2})` per step (theory/stability.md §1-2):

    - traces of log10 max|u| for the (β₁, β₂) of `SWITCH_OFF_CURVES` (600 steps after the
      switch-off) and their fitted slopes (`growth_slope`);
    - the measured growth over a `adamflow.phase.default_grid` (30 × 30; 10 × 10 with
      ``quick``) and its worst relative error where it is theory-unstable outside the band.

    Returns a `SwitchOffGrowth` as ``data``, the parameters of both sweeps, and ``results``
    ``slopes`` (b1, b2, theory, measured per curve), ``growth_cells`` and
    ``growth_max_rel_error``."""
    n0 = 1000 if quick else 5000
    problem = af.problems.switch_off(n0=n0)
    after = 600
    traces = af.phase_diagram(
        problem,
        sorted({b1 for b1, _ in SWITCH_OFF_CURVES}),
        sorted({b2 for _, b2 in SWITCH_OFF_CURVES}),
        steps=n0 + after,
        lr=1e-2,
        seed=seed,
        progress=False,
        record_trace=True,
    )
    b1s, b2s = phase.default_grid(10 if quick else 30)
    growth = af.phase_diagram(
        problem,
        b1s,
        b2s,
        steps=n0 + (800 if quick else 2000),
        lr=1e-2,
        seed=seed,
        progress=False,
    )
    assert traces.trace is not None and traces.trace_steps is not None
    since = traces.trace_steps - n0
    start = int(np.searchsorted(since, 0))
    curves = []
    for b1, b2 in SWITCH_OFF_CURVES:
        i = int(np.argmin(np.abs(traces.b1s - b1)))
        j = int(np.argmin(np.abs(traces.b2s - b2)))
        log10_u = traces.trace[i, j]
        curves.append(
            SwitchOffCurve(
                b1=b1,
                b2=b2,
                theory=float(phase.theory_growth(b1, b2)),
                measured=growth_slope(since, log10_u, start),
                stable=bool(af.stability.is_stable(b1, b2)),
                log10_u=log10_u,
            )
        )
    unstable, worst = growth_accuracy(growth)
    data = SwitchOffGrowth(
        n0=n0,
        eps=float(traces.parameters["eps"]),
        since=since,
        shown_from=-5 * phase.GROWTH_BLOCK,
        trace_every=phase.GROWTH_BLOCK,
        curves=tuple(curves),
        growth=growth,
        growth_unstable=unstable,
        growth_max_rel_error=worst,
    )
    results = {
        "slopes": [
            {"b1": c.b1, "b2": c.b2, "theory": c.theory, "measured": c.measured} for c in curves
        ],
        "growth_cells": int(unstable.sum()),
        "growth_max_rel_error": worst,
    }
    return FigureData(data, {"traces": traces.parameters, "grid": growth.parameters}, results)
