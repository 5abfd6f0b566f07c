"""Drawing of the paper-model comparison (`adamflow.experiments.paper_flows`)."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

_STYLE = {
    "leading/exact": ("tab:blue", "o", "leading flow, exact rates (ours)"),
    "leading/paper": ("tab:cyan", "v", "leading flow, paper's rates"),
    "paper/paper": ("tab:orange", "s", "paper's model (2nd-order θ, paper's rates)"),
    "paper/exact": ("tab:brown", "^", "2nd-order θ, exact rates"),
    "corrected/exact": ("tab:red", "D", "corrected flow (ours)"),
}


def draw_paper_flows(data: dict[str, dict[str, Any]]) -> Figure:
    """Error against lr on log-log axes, one panel per optimizer, one line per model,
    labelled with its fitted order."""
    figure = Figure(figsize=(11, 4.4), layout="constrained")
    axes = figure.subplots(1, len(data), sharey=True)
    for ax, (name, fits) in zip(axes, data.items(), strict=True):
        for key, fit in fits.items():
            color, marker, label = _STYLE[key]
            ax.loglog(
                fit["lrs"],
                fit["errors"],
                marker=marker,
                color=color,
                label=f"{label}: order {fit['order']:.2f}",
            )
        ax.set_title(name)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("learning rate η")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7.5, loc="lower right")
    axes[0].set_ylabel(r"$\max_{n\eta\leq 0.5} |\theta_n - \theta(n\eta)|$")
    figure.suptitle(
        "Continuous models against the discrete iterates (quadratic far from its minimum, "
        "β₁ 0.85, β₂ 0.98)"
    )
    return figure
