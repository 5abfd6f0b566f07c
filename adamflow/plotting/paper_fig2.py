r"""Drawing of the paper's Fig. 2, measured (`adamflow.experiments.paper_fig2`): the growth
of Adam's update after a gradient switches off, against the exact, Euler and paper
conventions. Pure drawing: the experiment's ``data`` in, a `matplotlib.figure.Figure` out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

#: Colour and label of each convention's boundary and prediction.
STYLE = {
    "exact": ("tab:green", r"exact: $\beta_2=\beta_1^2$, $\ln(\beta_1/\sqrt{\beta_2})$"),
    "euler": ("tab:orange", r"Euler: $\beta_2=2\beta_1-1$, $(b-2a)\eta/2$"),
    "paper": ("tab:purple", r"paper: $C=0$, $|C|/2$"),
}


def _boundary(convention: str, b1: np.ndarray) -> np.ndarray:
    """β₂ on the convention's boundary at each β₁."""
    if convention == "exact":
        return b1**2
    if convention == "euler":
        return 2.0 * b1 - 1.0
    return b1 / (2.0 - b1)


def draw_paper_fig2_stability(data: dict[str, Any]) -> Figure:
    """Three panels: (a) the measured growth map with the measured and the three theoretical
    boundaries, (b) the slope at n = 500 along the segment normal to C = 0, (c) measured
    against predicted growth over the map's unstable cells."""
    fig = Figure(figsize=(16.5, 5.2), layout="constrained")
    ax_a, ax_b, ax_c = fig.subplots(1, 3)
    b1s, b2s = np.asarray(data["b1s"]), np.asarray(data["b2s"])
    growth = np.asarray(data["measured_growth"])
    segment, far = data["segment"], data["far_point"]

    finite = growth[np.isfinite(growth)]
    low, high = min(float(finite.min()), -1e-3), max(float(finite.max()), 1e-3)
    mesh = ax_a.pcolormesh(
        b1s, b2s, growth.T, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, low, high), shading="nearest"
    )
    fig.colorbar(mesh, ax=ax_a, label=r"measured growth of $\ln|u|$ per step")
    ax_a.contour(b1s, b2s, growth.T, levels=[0.0], colors="black", linewidths=2.0)
    line = np.linspace(float(b1s[0]), float(b1s[-1]), 400)
    for convention, (colour, label) in STYLE.items():
        ax_a.plot(line, _boundary(convention, line), color=colour, lw=1.6, ls="--", label=label)
    ax_a.plot([], [], color="black", lw=2.0, label="measured boundary (growth = 0)")
    ax_a.plot(segment["b1"], segment["b2"], color="gold", lw=3.0, label="segment of (b)")
    ax_a.plot(far["b1"], far["b2"], "k*", ms=11, label=f"({far['b1']}, {far['b2']})")
    ax_a.set_xlim(float(b1s[0]), float(b1s[-1]))
    ax_a.set_ylim(float(b2s[0]), float(b2s[-1]))
    ax_a.set_xlabel(r"$\beta_1$")
    ax_a.set_ylabel(r"$\beta_2$")
    ax_a.set_title("(a) switch-off growth over the plane (red: grows)")
    ax_a.legend(loc="upper left", fontsize=7.5, framealpha=0.9)

    n0, at, half = data["window"]
    c_values = np.asarray(segment["C"])
    ax_b.axhline(0.0, color="grey", lw=0.8)
    ax_b.axvline(0.0, color="grey", lw=0.8)
    for convention, (colour, label) in STYLE.items():
        ax_b.plot(c_values, segment["predicted"][convention], color=colour, lw=1.8, label=label)
    ax_b.plot(c_values, segment["slope"], "k.", ms=6, label="measured slope (discrete Adam)")
    ax_b.set_xlabel(r"$C = 2(1-\beta_1)/\beta_1 - (1-\beta_2)/\beta_2$ along the normal")
    ax_b.set_ylabel(rf"slope of $\ln\|u_n\|_\infty$ at n = {at}")
    ax_b.set_title(
        f"(b) 64 points normal to C = 0 at β₁ = {segment['cross'][0]:.2f}"
        f"\n(gradient off after step {n0}, fit over {at - half}-{at + half})",
        fontsize=10,
    )
    ax_b.legend(fontsize=7.5)

    unstable = np.asarray(data["unstable"])
    measured = growth[unstable]
    for convention, (colour, label) in STYLE.items():
        predicted = np.asarray(data["predicted_growth"][convention])[unstable]
        shown = predicted > 0
        ax_c.plot(
            measured[shown], predicted[shown], "o", color=colour, ms=3.5, alpha=0.7, label=label
        )
    ax_c.plot(
        [far["slope"]] * 3,
        [_far(data, c) for c in STYLE],
        "k*",
        ms=10,
        label=f"({far['b1']}, {far['b2']}): measured {far['slope']:.3f}",
    )
    top = max(float(measured.max()), 1e-3) if measured.size else 1.0
    ax_c.plot([1e-4, 10 * top], [1e-4, 10 * top], color="black", lw=1.0, label="identity")
    ax_c.set_xscale("log")
    ax_c.set_yscale("log")
    ax_c.set_xlabel("measured growth per step (unstable cells)")
    ax_c.set_ylabel("predicted growth per step (positive predictions)")
    ax_c.set_title("(c) measured vs predicted over the plane")
    ax_c.legend(fontsize=7.5, loc="upper left")
    return fig


def _far(data: dict[str, Any], convention: str) -> float:
    """The convention's prediction at the far point (positive, else NaN: not drawn)."""
    value = float(data["far_point"]["predicted"][convention])
    return value if value > 0 else float("nan")
