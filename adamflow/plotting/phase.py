r"""Drawings of Adam's stable region: the (β₁, β₂) phase diagram and the switch-off growth.

Pure drawing (result in, `matplotlib.figure.Figure` out): the data come from
`adamflow.phase_diagram` and the experiments of `adamflow.experiments.phase_figures`; the
theory drawn against them is that of theory/stability.md -- the boundary
:math:`\beta_2 = \beta_1^2` and the growth :math:`\ln(\beta_1/\sqrt{\beta_2})` of
:math:`\ln|u|` per step without gradient, until the ε cap.
"""

from __future__ import annotations

from typing import Any

import matplotlib
import matplotlib.ticker
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from ..phase import PhaseDiagram

ADAM_DEFAULT = (0.9, 0.999)
#: Axis labels of the map: β₁ (optax's ``b1``) and β₂ (``b2``).
B1_LABEL = r"$1-\beta_1$ (momentum)"
B2_LABEL = r"$1-\beta_2$ (second moment)"


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges in log space for centres ``values`` (> 0, monotone)."""
    logs = np.log10(values)
    if logs.size == 1:
        return 10.0 ** np.array([logs[0] - 0.1, logs[0] + 0.1])
    middle = 0.5 * (logs[1:] + logs[:-1])
    first = logs[0] - (middle[0] - logs[0])
    last = logs[-1] + (logs[-1] - middle[-1])
    return 10.0 ** np.concatenate([[first], middle, [last]])


def _log_ticks(axis: Any, low: float, high: float, symbol: str) -> None:
    """Ticks at 1 - x = 10^k labelled with both 1 - x and x (β₁ or β₂)."""
    ticks = [t for t in 10.0 ** np.arange(-8, 1) if low * (1 - 1e-9) <= t <= high * (1 + 1e-9)]
    labels = [f"{t:g}\n({symbol}={1 - t:g})" for t in ticks]
    axis.set_ticks(ticks, labels, fontsize=8)
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def plot_phase_diagram(diagram: PhaseDiagram, ax: Axes) -> Figure:
    r"""Draw ``diagram`` on ``ax``: a heatmap of the measured :math:`\log_{10}\max|u|` over
    :math:`(1-\beta_1, 1-\beta_2)` on log axes, with the theoretical boundary
    :math:`\beta_2 = \beta_1^2` (theory/stability.md §1), the ε-cap band hatched
    (theory/stability.md §2), disagreements circled, cells whose gradient went non-finite
    crossed, diverged cells black and Adam's
    default (0.9, 0.999) starred. Returns the Figure ``ax`` belongs to."""
    fig = ax.get_figure()  # a Figure, or a SubFigure of one
    if fig is None:
        raise ValueError("ax must belong to a figure")
    x = 1.0 - np.asarray(diagram.b1s)
    y = 1.0 - np.asarray(diagram.b2s)
    x_edges, y_edges = _edges(x), _edges(y)
    level = np.log10(np.where(np.isfinite(diagram.max_update), diagram.max_update, np.nan))
    threshold = float(np.log10(diagram.threshold))
    top = threshold + 10.0
    norm = TwoSlopeNorm(vmin=-1.0, vcenter=threshold, vmax=top)
    mesh = ax.pcolormesh(x_edges, y_edges, level.T, cmap="RdBu_r", norm=norm, shading="flat")
    colorbar = fig.colorbar(mesh, ax=ax, pad=0.02, extend="max")
    colorbar.set_label(r"measured $\log_{10}\max|u|$ over steps and coordinates")
    colorbar.ax.axhline(threshold, color="k", lw=1.5)
    if diagram.diverged.any():
        ax.pcolormesh(
            x_edges,
            y_edges,
            np.where(diagram.diverged, 1.0, np.nan).T,
            cmap=ListedColormap(["#222222"]),
            shading="flat",
        )
    for i, j in zip(*np.nonzero(diagram.band), strict=True):
        left, right = sorted(x_edges[i : i + 2])
        bottom, top_edge = sorted(y_edges[j : j + 2])
        cell = Rectangle(
            (left, bottom),
            right - left,
            top_edge - bottom,
            fill=False,
            hatch="////",
            edgecolor="0.1",
            linewidth=0.0,
        )
        cell.set_hatch_linewidth(0.6)
        ax.add_patch(cell)
    wrong = diagram.disagreement
    xx, yy = np.meshgrid(x, y, indexing="ij")
    if wrong.any():
        ax.scatter(xx[wrong], yy[wrong], s=40, facecolors="none", edgecolors="lime", lw=1.5)
    if diagram.nonfinite.any():  # the gradient went nan/inf: no verdict, drawn as crosses
        nonfinite = diagram.nonfinite
        ax.scatter(xx[nonfinite], yy[nonfinite], s=30, marker="x", color="magenta", lw=1.2)
    curve_x = np.geomspace(x_edges.min(), x_edges.max(), 400)
    ax.plot(curve_x, 1.0 - (1.0 - curve_x) ** 2, color="k", lw=2.0, ls="--")
    ax.plot(1 - ADAM_DEFAULT[0], 1 - ADAM_DEFAULT[1], marker="*", ms=17, color="gold", mec="k")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_edges.min(), x_edges.max())
    ax.set_ylim(y_edges.min(), y_edges.max())
    _log_ticks(ax.xaxis, x.min(), x.max(), "β₁")
    _log_ticks(ax.yaxis, y.min(), y.max(), "β₂")
    ax.set_xlabel(B1_LABEL)
    ax.set_ylabel(B2_LABEL)
    handles = [
        Line2D([], [], color="k", lw=2, ls="--", label=r"theory boundary $\beta_2=\beta_1^2$"),
        Patch(facecolor="white", edgecolor="0.1", hatch="////", label="ε-cap band (undecidable)"),
        Line2D([], [], marker="*", color="gold", mec="k", ms=13, ls="", label="Adam (0.9, 0.999)"),
    ]
    if wrong.any():
        handles.append(
            Line2D([], [], marker="o", mfc="none", mec="lime", ls="", label="measured ≠ theory")
        )
    if diagram.diverged.any():
        handles.append(Patch(facecolor="#222222", label="diverged (non-finite)"))
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.9)
    box = {"boxstyle": "round", "facecolor": "white", "alpha": 0.85}
    ax.text(
        0.03,
        0.97,
        f"unstable: β₂ < β₁²\nagreement {100 * diagram.agreement:.1f}% of "
        f"{diagram.decided_cells} decided cells\nband: {diagram.band_cells} cells; "
        f"|u| > {diagram.threshold:g} counts as unstable",
        transform=ax.transAxes,
        va="top",
        fontsize=8.5,
        bbox=box,
    )
    ax.text(0.97, 0.30, "stable: β₂ > β₁²", transform=ax.transAxes, ha="right", bbox=box)
    params = diagram.parameters
    name = params.get("problem", {}).get("name", "?")
    ax.set_title(
        f"Adam on '{name}': {params.get('steps')} steps, lr={params.get('lr')}, "
        f"ε={params.get('eps')}, {params.get('dynamics')} dynamics",
        fontsize=10,
    )
    return fig if isinstance(fig, Figure) else fig.figure


def draw_phase_diagram_figure(data: PhaseDiagram) -> Figure:
    """The figure ``phase_diagram``: a new Figure with `plot_phase_diagram` of ``data`` (a
    `adamflow.PhaseDiagram`; theory/stability.md)."""
    fig = Figure(figsize=(7.6, 6.0))
    plot_phase_diagram(data, fig.add_subplot())
    return fig


def _switch_off_panel(ax: Axes, data: Any) -> None:
    r""":math:`\log_{10}|u_n|` against the steps since the switch-off, each curve with the
    line of slope :math:`\ln(\beta_1/\sqrt{\beta_2})/\ln 10` from where the silence starts."""
    since = np.asarray(data.since)
    shown = since >= data.shown_from
    start = int(np.searchsorted(since, 0))
    after = since >= 0
    colours = matplotlib.colormaps["tab10"].colors  # type: ignore[attr-defined]
    for colour, curve in zip(colours, data.curves, strict=False):
        measured = np.asarray(curve.log10_u)
        ax.plot(since[shown], measured[shown], color=colour, lw=2.0, alpha=0.85)
        prediction = measured[start] + curve.theory * (since - since[start]) / np.log(10.0)
        ax.plot(since[after], prediction[after], color=colour, ls=":", lw=1.4)
        verdict = "stable" if curve.stable else "unstable"
        ax.plot(
            [],
            [],
            color=colour,
            lw=2,
            label=f"β₁={curve.b1:g}, β₂={curve.b2:g} ({verdict}): {curve.theory:+.3f}",
        )
    ax.plot([], [], color="k", ls=":", label="theory: slope ln(β₁/√β₂) per step")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_ylim(-3.0, 9.5)
    ax.set_xlabel(f"steps after the gradient switches off (n0 = {data.n0})")
    ax.set_ylabel(rf"$\log_{{10}}|u_n|$ (measured, every {data.trace_every} steps)")
    ax.set_title(
        f"switch-off: growth by β₁/√β₂ per step until √v̂ reaches ε = {data.eps:g}",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="upper right", title="measured (solid), ln(β₁/√β₂)", title_fontsize=8)


def _growth_panel(ax: Axes, data: Any) -> None:
    r"""Measured growth of :math:`\ln|u|` per silent step against
    :math:`\ln(\beta_1/\sqrt{\beta_2})` for every cell of ``data.growth`` where it was
    measured; the theory is the diagonal."""
    diagram = data.growth
    measured = np.isfinite(diagram.growth_rate)
    unstable = np.asarray(data.growth_unstable)
    others = measured & ~unstable
    theory = diagram.theory_growth
    ax.scatter(theory[others], diagram.growth_rate[others], s=6, c="tab:blue", label="other cells")
    ax.scatter(
        theory[unstable],
        diagram.growth_rate[unstable],
        s=8,
        c="tab:red",
        label="unstable, outside band",
    )
    finite = theory[measured]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    line = np.linspace(low, high, 2)
    ax.plot(line, line, "k--", lw=1, label=r"theory $\ln(\beta_1/\sqrt{\beta_2})$")
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel(r"predicted growth $\ln(\beta_1/\sqrt{\beta_2})$ per step")
    ax.set_ylabel(r"measured growth of $\ln|u|$ per step (no gradient)")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(
        f"growth in silences (worst rel. error, unstable: {100 * data.growth_max_rel_error:.2f}%)",
        fontsize=10,
    )


def draw_switch_off_growth(data: Any) -> Figure:
    r"""The figure ``switch_off_growth`` (theory/stability.md §1-2): left,
    :math:`\log_{10}|u_n|` after the gradient switches off for several (β₁, β₂), each with
    the slope :math:`\ln(\beta_1/\sqrt{\beta_2})` per step; right, the measured growth per
    silent step against :math:`\ln(\beta_1/\sqrt{\beta_2})` over a (β₁, β₂) grid.

    ``data`` is an `adamflow.experiments.phase_figures.SwitchOffGrowth` (read by attribute:
    ``since``, ``shown_from``, ``trace_every``, ``n0``, ``eps``, ``curves`` with ``b1``,
    ``b2``, ``theory``, ``stable``, ``log10_u``; ``growth`` (a `adamflow.PhaseDiagram`),
    ``growth_unstable``, ``growth_max_rel_error``)."""
    fig = Figure(figsize=(12.5, 5.0), layout="tight")
    left, right = fig.subplots(1, 2)
    _switch_off_panel(left, data)
    _growth_panel(right, data)
    return fig
