"""Figures of Adam's stable region: the (β₁, β₂) phase diagram and the switch-off growth.

Both are computed by `adamflow.phase_diagram` (THEORY.md §4) and drawn against the theory:
the boundary β₂ = β₁² and the growth ln(β₁/√β₂) per step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap, TwoSlopeNorm  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from .. import _io, problems  # noqa: E402
from .._phase import (  # noqa: E402
    DEFAULT_RUNS,
    GROWTH_BLOCK,
    PhaseDiagram,
    default_grid,
    phase_diagram,
    theory_growth,
)

ADAM_DEFAULT = (0.9, 0.999)
#: (β₁, β₂) whose log|u| after a switch-off is drawn: fast, medium and slow growth, growth
#: stopped early by the ε cap near the boundary, and decay at Adam's default.
SWITCH_OFF_CURVES = ((0.9, 0.5), (0.99, 0.8), (0.99, 0.97), (0.9, 0.8), (0.9, 0.999))


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


def plot_phase_diagram(diagram: PhaseDiagram, ax: Any = None) -> Any:
    """Heatmap of log10 max|u| over (1-β₁, 1-β₂) on log axes, with the theoretical boundary
    β₂ = β₁², the ε-cap band hatched, disagreements circled and Adam's default (0.9, 0.999)
    starred. Returns the Figure."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.6, 6.0))
    else:
        fig = ax.figure
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
    wrong = (diagram.measured_stable != diagram.theory_stable) & ~diagram.band
    xx, yy = np.meshgrid(x, y, indexing="ij")
    if wrong.any():
        ax.scatter(xx[wrong], yy[wrong], s=40, facecolors="none", edgecolors="lime", lw=1.5)
    curve_x = np.geomspace(x_edges.min(), x_edges.max(), 400)
    ax.plot(curve_x, 1.0 - (1.0 - curve_x) ** 2, color="k", lw=2.0, ls="--")
    ax.plot(1 - ADAM_DEFAULT[0], 1 - ADAM_DEFAULT[1], marker="*", ms=17, color="gold", mec="k")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_edges.min(), x_edges.max())
    ax.set_ylim(y_edges.min(), y_edges.max())
    _log_ticks(ax.xaxis, x.min(), x.max(), "β₁")
    _log_ticks(ax.yaxis, y.min(), y.max(), "β₂")
    ax.set_xlabel(r"$1-\beta_1$   (β₁: Adam's β₁$_1$)")
    ax.set_ylabel(r"$1-\beta_2$   (β₂: Adam's β₁$_2$)")
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
    return fig


def _growth_panel(ax: Any, diagram: PhaseDiagram) -> dict[str, Any]:
    """Measured growth rate against ln(β₁/√β₂) for every cell where it was measured."""
    measured = np.isfinite(diagram.growth_rate)
    unstable = measured & ~diagram.theory_stable & ~diagram.band
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
    relative = np.abs(diagram.growth_rate[unstable] / theory[unstable] - 1.0)
    worst = float(relative.max()) if relative.size else float("nan")
    ax.set_title(
        f"growth in silences (worst rel. error, unstable: {100 * worst:.2f}%)", fontsize=10
    )
    return {"growth_cells": int(unstable.sum()), "growth_max_rel_error": worst}


def figure_phase_diagram(out_dir: Path, *, quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """The default sparse-problem phase diagram (what ``scripts/phase_diagram.py`` makes):
    writes ``phase_diagram.png``/``.json``/``.npz`` and returns the summary."""
    n = 12 if quick else None
    b1s, b2s = default_grid(n) if n else default_grid()
    run = dict(DEFAULT_RUNS["sparse"])
    if quick:
        run["steps"] = 1500
    diagram = phase_diagram(problems.sparse(), b1s, b2s, seed=seed, progress=False, **run)
    out_dir = Path(out_dir)
    fig = plot_phase_diagram(diagram)
    diagram.save(out_dir, "phase_diagram")
    _io.save_figure(fig, out_dir / "phase_diagram.png", diagram.metadata())
    plt.close(fig)
    return diagram.summary()


def figure_switch_off_growth(
    out_dir: Path, *, quick: bool = False, seed: int = 0
) -> dict[str, Any]:
    """log|u| against steps after the gradient switches off, for several (β₁, β₂), next to the
    slope ln(β₁/√β₂); and measured vs predicted growth over a (β₁, β₂) grid. Writes
    ``switch_off_growth.png``/``.json``."""
    n0 = 1000 if quick else 5000
    problem = problems.switch_off(n0=n0)
    after = 600
    traces = phase_diagram(
        problem,
        sorted({b1 for b1, _ in SWITCH_OFF_CURVES}),
        sorted({b2 for _, b2 in SWITCH_OFF_CURVES}),
        steps=n0 + after,
        lr=1e-2,
        seed=seed,
        progress=False,
        record_trace=True,
    )
    b1s, b2s = default_grid(10 if quick else 30)
    growth = phase_diagram(
        problem,
        b1s,
        b2s,
        steps=n0 + (800 if quick else 2000),
        lr=1e-2,
        seed=seed,
        progress=False,
    )
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.5, 5.0))
    assert traces.trace is not None and traces.trace_steps is not None
    since = traces.trace_steps - n0
    shown = since >= -5 * GROWTH_BLOCK
    start = int(np.searchsorted(since, 0))
    slopes = []
    for colour, (b1, b2) in zip(plt.get_cmap("tab10").colors, SWITCH_OFF_CURVES, strict=False):
        i = int(np.argmin(np.abs(traces.b1s - b1)))
        j = int(np.argmin(np.abs(traces.b2s - b2)))
        measured = traces.trace[i, j]
        rate = float(theory_growth(b1, b2))
        left.plot(since[shown], measured[shown], color=colour, lw=2.0, alpha=0.85)
        after_start = since >= 0
        prediction = measured[start] + rate * (since - since[start]) / np.log(10.0)
        left.plot(since[after_start], prediction[after_start], color=colour, ls=":", lw=1.4)
        fit = growth_slope(since, measured, start)
        slopes.append({"b1": b1, "b2": b2, "theory": rate, "measured": fit})
        verdict = "stable" if b2 > b1**2 else "unstable"
        left.plot(
            [], [], color=colour, lw=2, label=f"β₁={b1:g}, β₂={b2:g} ({verdict}): {rate:+.3f}"
        )
    left.plot([], [], color="k", ls=":", label="theory: slope ln(β₁/√β₂) per step")
    left.axvline(0, color="grey", lw=0.8)
    left.set_ylim(-3.0, 9.5)
    left.set_xlabel(f"steps after the gradient switches off (n0 = {n0})")
    left.set_ylabel(r"$\log_{10}|u_n|$ (measured, every 8 steps)")
    left.set_title(
        f"switch-off: growth by β₁/√β₂ per step until √v̂ reaches ε = {traces.parameters['eps']:g}",
        fontsize=10,
    )
    left.legend(fontsize=8, loc="upper right", title="measured (solid), ln(β₁/√β₂)", title_fontsize=8)
    summary = _growth_panel(right, growth)
    fig.tight_layout()
    metadata = _io.sidecar(
        {"traces": traces.parameters, "grid": growth.parameters},
        seed,
        slopes=slopes,
        **summary,
    )
    _io.save_figure(fig, Path(out_dir) / "switch_off_growth.png", metadata)
    plt.close(fig)
    return {**summary, "band_cells": growth.band_cells, "cells": growth.cells}


def growth_slope(steps: np.ndarray, log10_u: np.ndarray, start: int) -> float:
    """Least-squares slope of ln|u| per step after index ``start``: over the rise up to one
    decade below its peak (before the ε cap bends it), or, where |u| only falls, over the
    first 100 steps of the fall."""
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
