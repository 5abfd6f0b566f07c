"""Drawings of how closely the flows follow the discrete optimizer (theory/adam.md §4,
theory/corrected_flow.md).

`draw_convergence` and `draw_trajectories` draw the data of
`adamflow.experiments.convergence`'s experiments, `draw_corrected_orders` that of
`adamflow.experiments.corrected.corrected_orders_experiment`; they compute nothing and
write nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

_COLORS = {"leading": "tab:blue", "corrected": "tab:red"}


def _lr_text(lr: float) -> str:
    """``0.02``, ``6.25e-4``, ``2.44e-6``: short learning rates for labels."""
    if lr >= 0.01:
        return f"{lr:g}"
    mantissa, exponent = f"{lr:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def draw_convergence(data: dict[str, Any]) -> Figure:
    r"""One log-log panel per spec: :math:`\max_{n\eta\le T}|\theta_n - \theta(n\eta)|`
    against η for the leading and the corrected flow (theory/corrected_flow.md); over each
    flow's asymptotic range, its fitted line :math:`C\eta^p` (wide, pale), labelled with
    the asymptotic order, its range and the order over all lrs; where the leading flow's
    O(η) and O(η²) error terms cancel (η*), a dotted vertical line.

    ``data``: ``{"fits": {spec name: {"leading": fit, "corrected": fit,
    "ratio_at_lr_0.01": float, "expansion": {"cancellation_lr", ...} or None}}, ...}``, each
    fit with ``lrs``, ``errors``, ``order`` and ``asymptotic`` (``order``, ``constant``,
    ``lr_max``, ``lr_min``), as `convergence_experiment` returns.
    """
    fits = data["fits"]
    fig = Figure(figsize=(15.5, 5.4))
    axes = fig.subplots(1, len(fits), sharey=True, squeeze=False)[0]
    for ax, (name, entry) in zip(axes, fits.items()):
        for order in ("leading", "corrected"):
            fit = entry[order]
            asym = fit["asymptotic"]
            color = _COLORS[order]
            marker = "o" if order == "leading" else "s"
            ax.loglog(fit["lrs"], fit["errors"], marker=marker, ms=4.5, color=color, lw=1.2)
            span = np.geomspace(asym["lr_min"], asym["lr_max"], 20)
            label = (
                f"{order}: order {asym['order']:.2f} for η in "
                f"[{_lr_text(asym['lr_min'])}, {_lr_text(asym['lr_max'])}]"
                f"\n    (all {len(fit['lrs'])} lrs: {fit['order']:.2f})"
            )
            ax.loglog(
                span,
                asym["constant"] * span ** asym["order"],
                color=color,
                lw=7,
                alpha=0.25,
                solid_capstyle="butt",
                label=label,
            )
        expansion = entry.get("expansion")
        lrs = np.asarray(entry["leading"]["lrs"])
        if expansion and expansion.get("cancellation_lr"):
            star = expansion["cancellation_lr"]
            if lrs.min() <= star <= lrs.max():
                ax.axvline(star, color="0.4", ls=":", lw=1.2)
                ax.annotate(
                    f"η* = {_lr_text(star)}:\nO(η) and O(η²)\nterms cancel",
                    (star, 0.02),
                    xycoords=("data", "axes fraction"),
                    xytext=(-4, 0),
                    textcoords="offset points",
                    ha="right",
                    va="bottom",
                    fontsize=8,
                    color="0.3",
                )
        ax.set_title(
            f"{name}: corrected {entry['ratio_at_lr_0.01']:.0f}× closer at η = 0.01", fontsize=10
        )
        ax.set_xlabel("learning rate η")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7.5, loc="upper left")
    axes[0].set_ylabel(r"$\max_{n\eta \leq 0.5}\, |\theta_n - \theta(n\eta)|$")
    fig.suptitle(
        "Flow against the discrete iterates (5-d quadratic far from its minimum, β₁ = 0.85, "
        "β₂ = 0.98): markers measured, pale lines the fits over each asymptotic range",
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


_ORDER_COLORS = {"leading": "tab:blue", "corrected": "tab:red", "corrected2": "tab:green"}


def draw_corrected_orders(data: dict[str, Any]) -> Figure:
    r"""One log-log panel per spec: the final-time error :math:`|\theta_K - \theta(K\eta)|`
    (solid, dots) and the largest error along the path (dashed) against η for the leading,
    corrected and corrected2 flows (theory/corrected_flow.md §2), each labelled with its
    fitted orders (final / largest).

    ``data``: ``{"fits": {spec name: {order: {"lrs", "final_errors", "max_errors",
    "final_order", "max_order"}, ...}}, "parameters": {...}}``, as
    `adamflow.experiments.corrected.corrected_orders_experiment` returns.
    """
    fits, params = data["fits"], data["parameters"]
    fig = Figure(figsize=(15.5, 5.0))
    axes = fig.subplots(1, len(fits), sharey=True, squeeze=False)[0]
    for ax, (name, entry) in zip(axes, fits.items()):
        for order, color in _ORDER_COLORS.items():
            fit = entry[order]
            lrs = np.asarray(fit["lrs"])
            ax.loglog(
                lrs,
                fit["final_errors"],
                "o-",
                color=color,
                label=f"{order}: order {fit['final_order']:.2f} / {fit['max_order']:.2f}",
            )
            ax.loglog(lrs, fit["max_errors"], "--", color=color, alpha=0.6)
        ax.set_xticks(lrs, [_lr_text(lr) for lr in lrs])
        ax.minorticks_off()
        ax.set_title(name)
        ax.set_xlabel("learning rate η")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right", title="fitted order: final / largest")
    axes[0].set_ylabel("error: final (solid) and largest along the path (dashed)")
    fig.suptitle(
        f"Leading, corrected and corrected2 flows against discrete optimizers on "
        f"{params['loss']} (β₁ = {params['b1']:g}, β₂ = {params['b2']:g}, T = {params['t1']:g})"
    )
    fig.tight_layout()
    return fig
