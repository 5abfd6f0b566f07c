"""Drawings of how closely the flows follow the discrete optimizer (theory/adam.md §4,
theory/corrected_flow.md).

`draw_convergence` and `draw_trajectories` draw the data of
`adamflow.experiments.convergence`'s experiments; they compute nothing and write nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

_COLORS = {"leading": "tab:blue", "corrected": "tab:red"}


def draw_convergence(data: dict[str, Any]) -> Figure:
    r"""One log-log panel per spec: :math:`\max_{n\eta\le T}|\theta_n - \theta(n\eta)|`
    against η for the leading and the corrected flow (theory/corrected_flow.md), labelled
    with their fitted slopes, and dotted slope-1 and slope-2 guides.

    ``data``: ``{"lrs": [...], "fits": {spec name: {"leading": fit, "corrected": fit,
    "ratio_at_lr_0.01": float}}}``, each fit with ``lrs``, ``errors``, ``order`` and
    ``order_three_smallest_lrs`` (as `convergence_experiment` returns).
    """
    lrs = np.asarray(data["lrs"])
    fits = data["fits"]
    fig = Figure(figsize=(14.5, 4.8))
    axes = fig.subplots(1, len(fits), sharey=True, squeeze=False)[0]
    for ax, (name, entry) in zip(axes, fits.items()):
        for order in ("leading", "corrected"):
            fit = entry[order]
            marker = "o" if order == "leading" else "s"
            label = f"{order}: slope {fit['order']:.2f}"
            if len(lrs) > 3:
                label += f" (3 smallest lr: {fit['order_three_smallest_lrs']:.2f})"
            ax.loglog(fit["lrs"], fit["errors"], marker=marker, color=_COLORS[order], label=label)
        for slope, anchor_order in ((1, "leading"), (2, "corrected")):
            guide = entry[anchor_order]["errors"][0] * (lrs / lrs[0]) ** slope
            ax.loglog(lrs, guide * 1.6, ls=":", color="0.45", lw=1)
            ax.annotate(
                f"slope {slope}",
                (lrs[-1], guide[-1] * 1.6),
                textcoords="offset points",
                xytext=(4, 0),
                fontsize=8,
                color="0.35",
            )
        ax.set_title(f"{name}: corrected {entry['ratio_at_lr_0.01']:.0f}× closer at η = 0.01")
        ax.set_xlabel("learning rate η")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel(r"$\max_{n\eta \leq 0.5}\, |\theta_n - \theta(n\eta)|$")
    fig.suptitle(
        "Flow against the discrete iterates: the corrected flow (theory/corrected_flow.md) is "
        "second order (5-d quadratic far from its minimum, β₁ = 0.85, β₂ = 0.98)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def draw_trajectories(data: dict[str, Any]) -> Figure:
    r"""Left: the discrete iterates and both flows over the loss's contours, with a zoom on
    the last steps; right: the distance :math:`|\theta_n - \theta(n\eta)|` of each flow
    step by step (theory/adam.md §4, theory/corrected_flow.md).

    ``data``: as `trajectories_experiment` returns (``discrete``, ``leading_path``,
    ``corrected_path``, ``steps``, ``leading_error``, ``corrected_error``,
    ``leading_final_error``, ``leading_max_error``, ``corrected_max_error``, ``grid_x``,
    ``grid_y``, ``values``, ``lr``, ``n_steps``).
    """
    discrete = np.asarray(data["discrete"])
    paths = {order: np.asarray(data[f"{order}_path"]) for order in ("leading", "corrected")}
    fig = Figure(figsize=(13.0, 5.4))
    ax, ax_err = fig.subplots(1, 2, width_ratios=[1.25, 1])
    grid_x, grid_y, values = data["grid_x"], data["grid_y"], np.asarray(data["values"])
    levels = np.geomspace(0.02, values.max(), 18)
    ax.contourf(grid_x, grid_y, values, levels=levels, cmap="Greys", alpha=0.55)
    ax.contour(grid_x, grid_y, values, levels=levels, colors="0.55", linewidths=0.5)
    ax.plot(*paths["leading"].T, color=_COLORS["leading"], lw=1.8, label="leading flow")
    ax.plot(
        *paths["corrected"].T,
        color=_COLORS["corrected"],
        lw=1.4,
        ls="--",
        label="corrected flow",
    )
    ax.plot(*discrete.T, "o", ms=4.5, mfc="white", mec="k", mew=1.0, label="discrete Adam")
    ax.plot(*discrete[0], "k*", ms=12, label=r"$\theta_0$")
    # Zoom on the last iterates, where the leading flow has drifted by O(η).
    end = discrete[-1]
    half = 2.0 * data["leading_final_error"]
    zoom = ax.inset_axes((0.6, 0.05, 0.37, 0.37))
    zoom.plot(*paths["leading"].T, color=_COLORS["leading"], lw=1.8)
    zoom.plot(*paths["corrected"].T, color=_COLORS["corrected"], lw=1.4, ls="--")
    zoom.plot(*discrete.T, "o", ms=5, mfc="white", mec="k", mew=1.0)
    zoom.set_xlim(end[0] - half, end[0] + half)
    zoom.set_ylim(end[1] - half, end[1] + half)
    zoom.set_title(f"zoom on the last steps ({2 * half:.2f} wide)", fontsize=8)
    zoom.tick_params(labelsize=7)
    ax.indicate_inset_zoom(zoom, edgecolor="0.3")
    ax.set_xlabel(r"$\theta_1$")
    ax.set_ylabel(r"$\theta_2$")
    ax.set_title(
        f"Adam(η = {data['lr']}, β₁ = 0.9, β₂ = 0.99), {data['n_steps']} steps on "
        "½[(x−3)² + 6(y − sin x)²]",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=9)

    n = np.asarray(data["steps"])
    for order in ("leading", "corrected"):
        error = np.asarray(data[f"{order}_error"])
        ax_err.semilogy(n[1:], error[1:], color=_COLORS[order], marker=".", label=order)
    ax_err.set_xlabel("step n")
    ax_err.set_ylabel(r"$|\theta_n - \theta(n\eta)|$")
    ax_err.set_title(
        f"distance to the iterates (max: leading {data['leading_max_error']:.1e}, "
        f"corrected {data['corrected_max_error']:.1e})",
        fontsize=10,
    )
    ax_err.grid(True, which="both", alpha=0.25)
    ax_err.legend()
    fig.tight_layout()
    return fig
