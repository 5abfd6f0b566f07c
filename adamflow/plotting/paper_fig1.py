r"""Drawing of the paper's Fig. 1 with its measurement (theory/adam.md §4,
theory/corrected_flow.md §2): discrete Adam/AdamW on a character-level transformer against
the paper's second-order model, the leading and the corrected flow.

`draw_paper_fig1` draws the data of `adamflow.experiments.paper_fig1.paper_fig1_experiment`;
it computes nothing and writes nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

#: Line style of each flow: (color, line style, label).
_STYLE = {
    "paper": ("tab:orange", "-", "paper's model (2nd-order θ, backward rates)"),
    "leading": ("tab:blue", "--", "leading flow (exact rates)"),
    "corrected": ("tab:red", ":", "corrected flow (exact rates)"),
}
_DISCRETE = {"color": "black", "marker": "o", "ls": "none", "ms": 1.6, "alpha": 0.55}


def _short(name: str) -> str:
    """``['blocks'][0]['w1'][3,17]`` -> ``blocks0.w1[3,17]``."""
    return name.replace("']['", ".").replace("['", "").replace("']", "").replace("][", ".")


def _flow_label(flow: str, info: dict[str, Any]) -> str:
    """The legend entry: the flow's name, or why it failed."""
    if info["success"]:
        start = info.get("start_step")
        if start is not None and start > 1:  # a corrected flow that began later
            return f"{_STYLE[flow][2]}, from step {start:g}"
        return _STYLE[flow][2]
    message = info["message"]
    if "may start" in message or "would be refused" in message or "farther from" in message:
        reason = "refused at its start (theory/corrected_validity.md)"
    elif "max_steps" in message or "maximum number of solver steps" in message:
        reason = "solver hit max_steps"
    elif "non-finite" in message:
        reason = "went non-finite"
    else:
        reason = "failed (see the sidecar)"
    return f"{flow} flow: {reason}"


def _traces(subfig: Any, window: dict[str, Any], flows: dict[str, Any], names: list[str]) -> None:
    """A 4 × 4 grid (or as square as fits) of one parameter each: discrete dots, flow lines."""
    n = window["discrete"].shape[1]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    axes = np.atleast_1d(subfig.subplots(rows, cols, sharex=True)).reshape(-1)
    steps = np.asarray(window["steps"])
    for j, ax in enumerate(axes):
        if j >= n:
            ax.set_visible(False)
            continue
        ax.plot(steps, window["discrete"][:, j], **_DISCRETE)
        for flow, entry in window["flows"].items():
            if flows[flow]["success"]:
                color, style, _ = _STYLE[flow]
                ax.plot(steps, entry["traces"][:, j], color=color, ls=style, lw=1.0)
        ax.set_title(_short(names[j]), fontsize=6.5, pad=2)
        ax.tick_params(labelsize=5.5, length=2, pad=1)
        ax.yaxis.get_offset_text().set_fontsize(5.5)
        ax.margins(x=0.01)
    for ax in axes[-cols:]:
        ax.set_xlabel("step n", fontsize=6.5, labelpad=1)


def _mse_panel(ax: Any, run: dict[str, Any], title: str) -> None:
    """MSE over all parameters along the run (log-log), every window joined, with the
    baseline that holds θ₀ fixed."""
    joined: dict[str, dict[int, float]] = {"baseline": {}}
    for window in run["windows"].values():
        steps = np.asarray(window["steps"], dtype=int)
        for s, value in zip(steps, window["baseline_mse"]):
            joined["baseline"][int(s)] = float(value)
        for flow, entry in window["flows"].items():
            points = joined.setdefault(flow, {})
            for s, value in zip(steps, entry["mse"]):
                points[int(s)] = float(value)
    for name, points in joined.items():
        steps = np.array(sorted(k for k in points if k > 0))
        values = np.array([points[k] for k in steps])
        if name == "baseline":
            ax.loglog(steps, values, color="0.6", lw=2.5, alpha=0.7, label="θ₀ held fixed")
            continue
        info = run["flows"][name]
        if not info["success"] and not np.any(np.isfinite(values)):
            ax.plot(
                [], [], color=_STYLE[name][0], ls=_STYLE[name][1], label=_flow_label(name, info)
            )
            continue
        color, style, _ = _STYLE[name]
        ax.loglog(steps, values, color=color, ls=style, lw=1.6, label=_flow_label(name, info))
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step n", fontsize=8)
    ax.set_ylabel("MSE over all parameters", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def draw_paper_fig1(data: dict[str, Any]) -> Figure:
    r"""The paper's Fig. 1 and the measurement reviewers asked for.

    Top: for each optimizer (rows) and each traced run length (columns), 16 randomly chosen
    parameters :math:`\theta_i` (among those with a nonzero gradient at θ₀) against the
    step n: discrete iterates as dots, the paper's
    model, the leading and the corrected flow as lines (a flow that failed is left out and
    named in the legend). Bottom: per optimizer, the mean squared error over all
    parameters :math:`\frac1D\sum_i(\theta_{n,i}-\theta_i(n\eta))^2` along the whole run
    (log-log; the windows joined, up to the 10⁴-step run where there is one), against the
    baseline that holds θ₀ fixed.

    ``data``: as returned by `adamflow.experiments.paper_fig1.run_fig1`: ``runs`` (per
    optimizer: ``windows`` and ``flows``), ``trace_names``, ``n_parameters`` and
    ``optimizer_labels``.
    """
    runs = data["runs"]
    names = data["trace_names"]
    traced = [w for w in next(iter(runs.values()))["windows"] if w != "long"]
    fig = Figure(figsize=(5.0 * len(traced) + 0.5, 4.6 * len(runs) + 4.2))
    top, bottom = np.asarray(fig.subfigures(2, 1, height_ratios=[4.6 * len(runs), 4.0]))
    grid = np.asarray(top.subfigures(len(runs), len(traced), wspace=0.04, hspace=0.06))
    grid = grid.reshape(len(runs), len(traced))
    for r, (opt_name, run) in enumerate(runs.items()):
        label = data["optimizer_labels"].get(opt_name, opt_name)
        for c, window in enumerate(traced):
            sub = grid[r, c]
            _traces(sub, run["windows"][window], run["flows"], names)
            sub.suptitle(f"{label}: {window} steps", fontsize=9)
    bottom_axes = np.atleast_1d(bottom.subplots(1, len(runs)))
    for ax, (opt_name, run) in zip(bottom_axes, runs.items()):
        longest = max(int(np.asarray(w["steps"])[-1]) for w in run["windows"].values())
        ax_title = f"{opt_name}: MSE along the run ({longest} steps, D = {data['n_parameters']})"
        _mse_panel(ax, run, ax_title)
    handles = [Line2D([], [], label="discrete iterates", **{**_DISCRETE, "ms": 4})]
    handles += [Line2D([], [], color=c, ls=s, lw=1.4, label=lab) for c, s, lab in _STYLE.values()]
    top.legend(
        handles=handles,
        loc="lower center",
        ncol=4,
        fontsize=8.5,
        frameon=False,
        bbox_to_anchor=(0.5, 1.0),
    )
    return fig
