r"""Drawing of ``paper_reviewers``: three reviewers' questions about Adam's stable region
(theory/stability.md), computed by `adamflow.experiments.reviewers`.

Pure drawing (data in, `matplotlib.figure.Figure` out).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .phase import B1_LABEL, B2_LABEL, _edges


def _unstable_fractions(diagram: Any) -> tuple[float, float, int]:
    """Fraction of theory-unstable cells measured stable, the same outside the band (0 if
    none there), and the band's size."""
    unstable = ~np.asarray(diagram.theory_stable)
    measured = np.asarray(diagram.measured_stable)
    outside = unstable & ~np.asarray(diagram.band)
    all_cells = float(measured[unstable].mean()) if unstable.any() else 0.0
    decided = float(measured[outside].mean()) if outside.any() else 0.0
    return all_cells, decided, int(np.asarray(diagram.band).sum())


def draw_paper_reviewers(data: Any) -> Figure:
    r"""Three panels: (a) per lr, the fraction of theory-unstable cells measured stable on
    the sparse problem (all cells, outside the ε-cap band) and on the full-gradient
    quadratic; (b) the noise models' verdicts over the (β₁, β₂) map; (c) log10 max|u| along
    one β₁ row for each weight decay λ, with the boundary :math:`\beta_2 = \beta_1^2`."""
    fig = Figure(figsize=(16.5, 5.0), layout="constrained")
    ax_lr, ax_noise, ax_wd = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.0, 1.1, 1.0]})

    # (a) lr
    labels = data.lr.labels
    x = np.arange(len(labels))
    width = 0.27
    sparse = [_unstable_fractions(d) for d in data.lr.diagrams]
    quadratic = [_unstable_fractions(d) for d in data.lr_quadratic.diagrams]
    ax_lr.bar(x - width, [s[0] for s in sparse], width, color="tab:orange", label="sparse: all")
    ax_lr.bar(
        x, [s[1] for s in sparse], width, color="tab:blue", label="sparse: outside ε-cap band"
    )
    ax_lr.bar(
        x + width,
        [q[0] for q in quadratic],
        width,
        color="0.6",
        label="full-gradient quadratic: all\n(no silences: all in the band)",
    )
    for i, (s, q) in enumerate(zip(sparse, quadratic)):
        ax_lr.text(i - width, s[0] + 0.02, f"band {s[2]}", ha="center", fontsize=7)
        ax_lr.text(i, s[1] + 0.02, f"{s[1]:.2f}", ha="center", fontsize=7)
        ax_lr.text(i + width, q[0] + 0.02, f"band {q[2]}", ha="center", fontsize=7)
    ax_lr.set_xticks(x, labels)
    ax_lr.set_ylim(0, 1.55)
    ax_lr.set_ylabel("theory-unstable cells measured stable")
    ax_lr.set_title("(a) Does the stable region depend on lr?\nno: the same cells at every lr")
    ax_lr.legend(fontsize=7, loc="upper left")

    # (b) noise
    det, gauss, bern = data.noise.diagrams
    b1s, b2s = np.asarray(bern.b1s), np.asarray(bern.b2s)
    category = np.zeros(bern.max_update.shape, dtype=int)  # 0: stable everywhere
    zeros_only = np.asarray(gauss.measured_stable) & ~np.asarray(bern.measured_stable)
    category[zeros_only] = 1
    category[np.asarray(bern.band) & ~np.asarray(bern.theory_stable)] = 2
    other = ~np.asarray(det.measured_stable) | ~np.asarray(gauss.measured_stable)
    category[other] = 3
    x_edges = _edges(1.0 - b1s)
    colors = ListedColormap(["#cfe3f3", "#d62728", "#f3c47a", "black"])
    ax_noise.pcolormesh(x_edges, _edges(1.0 - b2s), category.T, cmap=colors, vmin=-0.5, vmax=3.5)
    one_minus_b1 = np.geomspace(x_edges.min(), x_edges.max(), 200)
    ax_noise.plot(one_minus_b1, 1 - (1 - one_minus_b1) ** 2, "k--", lw=1.2)
    ax_noise.set_xscale("log")
    ax_noise.set_yscale("log")
    ax_noise.set_xlabel(B1_LABEL)
    ax_noise.set_ylabel(B2_LABEL)
    flips_dg = int(np.sum(np.asarray(det.measured_stable) != np.asarray(gauss.measured_stable)))
    flips_gb = int(np.sum(np.asarray(gauss.measured_stable) != np.asarray(bern.measured_stable)))
    ax_noise.set_title(
        "(b) Does gradient noise shrink it? Only through zeros\n"
        f"flips: deterministic↔Gaussian {flips_dg}, Gaussian↔Bernoulli {flips_gb}"
    )
    ax_noise.legend(
        handles=[
            Patch(color="#cfe3f3", label="stable under all three"),
            Patch(color="#d62728", label="unstable only with exact zeros (Bernoulli)"),
            Patch(color="#f3c47a", label="Bernoulli: ε-cap band"),
            Patch(color="black", label="unstable without zeros"),
            Patch(facecolor="none", edgecolor="k", ls="--", label=r"$\beta_2=\beta_1^2$"),
        ],
        fontsize=7,
        loc="lower right",
    )

    # (c) weight decay, one β₁ row
    first = data.weight_decay.diagrams[0]
    b1s, b2s = np.asarray(first.b1s), np.asarray(first.b2s)
    row = int(np.argmin(np.abs(b1s - 0.9)))
    styles = ("-", "--", ":")
    for label, diagram, style in zip(data.weight_decay.labels, data.weight_decay.diagrams, styles):
        ax_wd.plot(1 - b2s, np.log10(np.asarray(diagram.max_update)[row]), style, lw=2, label=label)
    ax_wd.axvline(1 - b1s[row] ** 2, color="k", ls="--", lw=1, label=r"$\beta_2=\beta_1^2$")
    threshold = float(first.threshold)
    ax_wd.axhline(np.log10(threshold), color="0.5", lw=1, label="threshold")
    ax_wd.set_xscale("log")
    ax_wd.set_xlabel(B2_LABEL)
    ax_wd.set_ylabel(r"$\log_{10}\max|u|$")
    flips = [
        int(np.sum(np.asarray(first.measured_stable) != np.asarray(d.measured_stable)))
        for d in data.weight_decay.diagrams[1:]
    ]
    ax_wd.set_title(
        f"(c) Does weight decay move it? no (AdamW, β₁={b1s[row]:.3g})\n"
        f"cells flipping vs λ=0: {', '.join(map(str, flips))} (all in the ε-cap band)"
    )
    losses = ", ".join(
        f"{label}: {np.nanmedian(np.asarray(d.final_loss)):.2g}"
        for label, d in zip(data.weight_decay.labels, data.weight_decay.diagrams)
    )
    ax_wd.text(
        0.02,
        0.6,
        f"median final loss (θ shrinks toward 0):\n{losses}",
        transform=ax_wd.transAxes,
        fontsize=7,
    )
    ax_wd.legend(fontsize=7)
    return fig
