r"""Drawing of the ``eos`` figure (`adamflow.experiments.eos`, theory/eos.md §5): discrete
Adam, its leading flow and the eos flow at the edge of stability. Pure drawing: the
experiment's ``data`` in, a `matplotlib.figure.Figure` out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = ["draw_eos", "draw_paper_fig1_sharpness"]

#: Colour, line style and label of each run.
STYLE = {
    "discrete": ("black", "-", "discrete Adam"),
    "leading": ("tab:blue", "--", "leading flow"),
    "eos": ("tab:red", "-", "eos flow"),
}


def draw_eos(data: dict[str, Any]) -> Figure:
    """One row per network: (a) the preconditioned sharpness λ_max(P⁻¹H) over the
    threshold 2(1+β₁)/((1−β₁)η) of each run, (b) the losses, (c) each flow's distance to
    the discrete iterates in function space (RMS over the network's training outputs), to
    each iterate and to the mean of the 1/(1−β₁) = 10 iterates around it (the oscillation
    averaged out)."""
    rows = len(data)
    fig = Figure(figsize=(15, 4.2 * rows), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, 3))
    for row, (name, run) in zip(axes, data.items()):
        steps = np.asarray(run["steps"])
        ax_ratio, ax_loss, ax_distance = row
        for key in ("discrete", "leading", "eos"):
            colour, style, label = STYLE[key]
            ax_ratio.plot(steps, run[key]["ratio"], style, color=colour, label=label)
            ax_loss.plot(steps, run[key]["loss"], style, color=colour, label=label, lw=1)
            if key != "discrete":
                distance = run[key]["output_distance"]
                ax_distance.plot(steps, distance, style, color=colour, label=f"{label}: iterate")
                centre = run[key]["output_distance_centre"]
                ax_distance.plot(
                    steps, centre, ":", color=colour, lw=1.5, label=f"{label}: 10-step mean"
                )
        ax_ratio.axhline(1.0, color="grey", lw=0.8)
        ax_ratio.axvline(run["onset"], color="grey", lw=0.8, ls=":")
        ax_ratio.set_yscale("log")
        ax_ratio.set_ylabel("λ_max(P⁻¹H) / threshold")
        ax_ratio.set_title(
            f"({name}, {run['params']} parameters) sharpness; onset at step {run['onset']}"
        )
        ax_loss.set_yscale("log")
        ax_loss.set_ylabel("loss")
        ax_loss.set_title("loss")
        ax_distance.set_yscale("log")
        ax_distance.set_ylabel("RMS output difference to the iterate")
        ax_distance.set_title("distance to the discrete run (function space)")
        for ax in row:
            ax.set_xlabel("step n")
            ax.legend(fontsize=8)
    return fig


def draw_paper_fig1_sharpness(data: dict[str, Any]) -> Figure:
    """The preconditioned sharpness λ_max(P⁻¹H) over Adam's edge-of-stability threshold
    2(1+β₁)/((1−β₁)η) along the discrete Adam and AdamW runs of the paper's Fig. 1 (log
    scale; 1 is the edge, theory/eos.md §2)."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for (name, run), colour in zip(data.items(), ("tab:blue", "tab:red")):
        ax.semilogy(run["steps"], run["ratio"], "o-", color=colour, label=name, ms=3)
    ax.axhline(1.0, color="black", ls="--", lw=1, label="edge of stability")
    ax.set_xlabel("step")
    ax.set_ylabel("λ_max(P⁻¹H) / threshold")
    ax.set_title("The paper's Fig. 1 transformer: preconditioned sharpness")
    ax.legend()
    return fig
