r"""Drawings of the paper's Figs. 3-4 and its appendix's assumptions figure (arXiv
2411.05746; theory/stability.md, theory/kadam.md).

`draw_paper_fig3_generalization`, `draw_paper_fig4_kadam` and `draw_paper_assumptions` draw
the data of `adamflow.experiments.paper_figs`' experiments (see each experiment for the keys
of ``data``); they compute nothing but what is drawn and write nothing.
"""

from __future__ import annotations

from typing import Any

import matplotlib.ticker
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

STABLE, UNSTABLE = "tab:blue", "tab:red"
B1_LABEL = r"$1-\beta_1$ (momentum)"
B2_LABEL = r"$1-\beta_2$ (second moment)"


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges in log space around log-spaced centres ``values``."""
    logs = np.log10(values)
    middle = 0.5 * (logs[1:] + logs[:-1])
    return 10.0 ** np.concatenate([[2 * logs[0] - middle[0]], middle, [2 * logs[-1] - middle[-1]]])


def _rho(value: Any) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:+.2f}"


# --------------------------------------------------------------------------- Fig. 3


def _boundaries(ax: Axes, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
    """C = 0 (β₂ = β₁/(2−β₁)) and the exact boundary β₂ = β₁² in (1−β₁, 1−β₂) axes."""
    x = np.geomspace(*x_range, 300)
    paper = 2 * x / (1 + x)  # 1 - β₁/(2-β₁) with β₁ = 1 - x
    exact = x * (2 - x)  # 1 - β₁²
    ax.plot(x, paper, "k-", lw=1.6, label="C = 0 (paper): β₂ = β₁/(2−β₁)")
    ax.plot(x, exact, "k--", lw=1.6, label="exact: β₂ = β₁²")
    ax.set_xlim(*x_range)
    ax.set_ylim(*y_range)


def _scatter_against_c(
    ax: Axes,
    c: np.ndarray,
    values: np.ndarray,
    stable: np.ndarray,
    ylabel: str,
    cap_label: str,
    top: float | None = None,
) -> None:
    """``values`` per cell against C, coloured by exact stability; non-finite values (a
    diverged run, a threshold never reached) drawn as triangles at ``top`` (default: above
    the finite ones)."""
    c, values, stable = c.ravel(), values.ravel(), stable.ravel()
    finite = np.isfinite(values)
    default = float(values[finite].max()) * 1.6 if finite.any() else 1.0
    top = default if top is None else top
    for mask, color in ((stable, STABLE), (~stable, UNSTABLE)):
        ax.scatter(c[mask & finite], values[mask & finite], s=28, color=color, alpha=0.85)
        ax.scatter(
            c[mask & ~finite], np.full((mask & ~finite).sum(), top), marker="^", s=34, color=color
        )
    if (~finite).any():
        ax.axhline(top, color="gray", lw=0.6, ls=":")
        ax.text(
            0.01, top, f" {cap_label}", transform=ax.get_yaxis_transform(), fontsize=7, va="bottom"
        )
    ax.axvline(0.0, color="k", lw=1.0)
    ax.set_xscale("symlog", linthresh=0.01, linscale=0.5)
    ticks = [-1.0, -0.1, -0.01, 0.0, 0.01, 0.1, 1.0]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel(r"paper's $C = 2(1-\beta_1)/\beta_1 - (1-\beta_2)/\beta_2$")
    ax.set_ylabel(ylabel)


def draw_paper_fig3_generalization(data: list[dict[str, Any]]) -> Figure:
    r"""One row per task: (a) the final test loss over (1−β₁, 1−β₂) with C = 0 and
    β₂ = β₁² drawn; (b) final test loss against C; (c) steps to the test-loss threshold
    against C. Points are blue where β₂ > β₁² (exactly stable), red elsewhere; titles give
    the experiment's Spearman ρ on each side of C = 0. ``data``: as
    `paper_fig3_generalization_experiment` returns."""
    fig = Figure(figsize=(16, 4.9 * len(data)))
    axes = np.atleast_2d(fig.subplots(len(data), 3))
    for row, task in zip(axes, data, strict=True):
        x, y = np.asarray(task["one_minus_b1"]), np.asarray(task["one_minus_b2"])
        c, stable = np.asarray(task["C"]), np.asarray(task["stable"], bool)
        loss = np.asarray(task["final_test_loss"], float)
        reach = np.asarray(task["steps_to_threshold"], float)

        ax = row[0]
        shown = np.log10(np.where(np.isfinite(loss), loss, np.nan))
        low = float(np.nanmin(shown)) if np.isfinite(shown).any() else 0.0
        mesh = ax.pcolormesh(
            _edges(x),
            _edges(y),
            shown.T,
            cmap="viridis_r",
            shading="flat",
            vmin=low,
            vmax=low + 1.5,
        )
        fig.colorbar(mesh, ax=ax, pad=0.02, extend="max").set_label(
            "log10 final test loss (white: diverged)"
        )
        x_edges, y_edges = _edges(x), _edges(y)
        _boundaries(ax, (x_edges[0], x_edges[-1]), (y_edges[0], y_edges[-1]))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(B1_LABEL)
        ax.set_ylabel(B2_LABEL)
        ax.set_title(
            f"(a) {task['task']}: AdamW lr={task['lr']:g}, λ={task['weight_decay']:g}, "
            f"{task['steps']} steps",
            fontsize=9,
        )
        ax.legend(fontsize=7, loc="upper left")

        rho_loss, rho_steps = task["spearman_loss"], task["spearman_steps"]
        ax = row[1]
        _scatter_against_c(ax, c, loss, stable, "final test loss (seed mean)", "diverged")
        ax.set_yscale("log")
        ax.set_title(
            f"(b) final test loss vs C: Spearman ρ = {_rho(rho_loss['C>0'])} (C>0), "
            f"{_rho(rho_loss['C<0'])} (C<0), {_rho(rho_loss['all'])} (all)",
            fontsize=9,
        )
        ax = row[2]
        _scatter_against_c(
            ax,
            c,
            reach,
            stable,
            f"steps to test loss ≤ {task['threshold']:g} (evaluated every "
            f"{task['eval_every']} steps)",
            f"not reached in {task['steps']} steps",
            top=1.25 * task["steps"],
        )
        ax.axhline(task["steps"], color="gray", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_title(
            f"(c) steps to threshold vs C: ρ = {_rho(rho_steps['C>0'])} (C>0), "
            f"{_rho(rho_steps['C<0'])} (C<0), {_rho(rho_steps['all'])} (all)",
            fontsize=9,
        )
        handles = [
            Line2D([], [], marker="o", ls="", color=STABLE, label="exactly stable (β₂ > β₁²)"),
            Line2D([], [], marker="o", ls="", color=UNSTABLE, label="exactly unstable"),
            Line2D([], [], color="k", lw=1.0, label="C = 0"),
        ]
        ax.legend(handles=handles, fontsize=7, loc="upper right")
    fig.suptitle(
        f"Paper Fig. 3: generalization against the paper's C (cells: seed means of "
        f"{data[0]['n_seeds']} seeds; x axis symmetric-log)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- Fig. 4

STRATEGY_STYLE = {
    "equal": ("tab:blue", "o", "(a) equal levels (β₁, β₂)"),
    "no_momentum": ("tab:green", "s", "(b) levels ≥ 2 without momentum (β₁ = 0)"),
    "decay": ("tab:purple", "D", "(c) β₂ of level i → 0.9"),
    "tuned": ("tab:orange", "^", "(d) equal levels, lr tuned per k"),
}


def draw_paper_fig4_kadam(data: dict[str, Any]) -> Figure:
    r"""(a) final test accuracy (mean ± std over seeds) against k for the four per-level
    strategies, with tuned AdamW as a band; (b) the same, zoomed on the top; (c) the
    ablation: 2-Adam without level-2 momentum against a LayerNorm after the hidden layer.
    ``data``: as `paper_fig4_kadam_experiment` returns."""
    ks = np.asarray(data["ks"])
    fig = Figure(figsize=(17, 5.4))
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.1, 1.1, 1.0]})
    adamw = data["adamw"]
    for ax in axes[:2]:
        for offset, (name, (color, marker, label)) in enumerate(STRATEGY_STYLE.items()):
            entry = data["strategies"][name]
            shift = (offset - 1.5) * 0.06
            ax.errorbar(
                ks + shift,
                entry["mean"],
                yerr=entry["std"],
                color=color,
                marker=marker,
                ms=5,
                capsize=3,
                lw=1.3,
                label=label,
            )
        ax.axhspan(
            adamw["mean"] - adamw["std"], adamw["mean"] + adamw["std"], color="gray", alpha=0.25
        )
        ax.axhline(
            adamw["mean"],
            color="k",
            lw=1.0,
            label=f"tuned AdamW (k = 1; lr {data['adamw_lr']:g}, λ {data['adamw_weight_decay']:g})",
        )
        ax.axhline(0.1, color="gray", lw=0.8, ls=":")
        ax.set_xticks(ks)
        ax.set_xlabel("k (levels of the cascade)")
        ax.set_ylabel("final test accuracy")
    axes[0].set_title(
        f"(a) k-Adam on {data['task']}, {data['steps']} steps, β₁={data['b1']}, "
        f"β₂={data['b2']}; (a)-(c) at lr {data['fixed_lr']:g}",
        fontsize=9,
    )
    axes[0].text(ks[0], 0.1, "chance", fontsize=7, color="gray", va="bottom")
    axes[0].legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 0.1))
    best = max(max(float(np.max(e["mean"])) for e in data["strategies"].values()), adamw["mean"])
    axes[1].set_ylim(best - 0.06, min(1.0, best + 0.015))
    tuned = ", ".join(f"{lr:g}" for lr in data["tuned_lr"])
    axes[1].set_title(f"(b) zoom on the top; (d)'s lr per k: {tuned}", fontsize=9)

    ax = axes[2]
    names = list(data["ablation"])
    means = [data["ablation"][n]["mean"] for n in names]
    stds = [data["ablation"][n]["std"] for n in names]
    colors = ["tab:green", "tab:cyan", "tab:blue", "tab:gray", "k"][: len(names)]
    ax.barh(range(len(names)), means, xerr=stds, color=colors, alpha=0.75, capsize=4)
    for i, n in enumerate(names):
        extra = data["ablation"][n]
        note = f"lr {extra['lr']:g}" if "lr" in extra else ""
        if "weight_decay" in extra:
            note += f", λ {extra['weight_decay']:g}"
        ax.text(means[i] + stds[i], i, f"  {means[i]:.3f} ({note})", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    finite = [m - s for m, s in zip(means, stds, strict=True) if np.isfinite(m)]
    ax.set_xlim(min(finite) - 0.02, 1.0 + 0.5 * (1.0 - min(finite)))
    ax.invert_yaxis()
    ax.set_xlabel("final test accuracy (best lr each)")
    ax.set_title("(c) ablation: 2-Adam (level-2 β₁ = 0) vs a LayerNorm", fontsize=9)
    fig.suptitle(
        f"Paper Fig. 4 on digits (8×8 images, not CIFAR-10): mean ± std over "
        f"{data['n_seeds']} seeds",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- assumptions


def draw_paper_assumptions(data: dict[str, Any]) -> Figure:
    r"""Top: :math:`\cos\langle W(t), g_W(\tau)\rangle` over snapshot pairs τ ≤ t for both
    groups at β₁ = first of ``b1s``, and |cos| against the lag t − τ (median, 10-90%) beside
    the random-direction median and the equilibrium angular step √(2ηλ). Bottom: the signed
    median cos against lag; the coefficient of variation over a weight's entries of v and
    √v over time; the 90/10 percentile ratio of √v. ``data``: as
    `paper_assumptions_experiment` returns."""
    groups, b1s = data["groups"], data["b1s"]
    snaps = np.asarray(data["snap_steps"])
    colors = {"W1": "tab:blue", "W2": "tab:orange"}
    styles = {0: "-", 1: "--"}
    fig = Figure(figsize=(17, 9.5))
    axes = fig.subplots(2, 3)
    main = data["runs"][f"{b1s[0]:g}"]
    for ax, name in zip(axes[0, :2], groups, strict=False):
        cos = np.asarray(main[name]["cos"])
        limit = float(np.nanpercentile(np.abs(cos), 99)) or 1e-3
        extent = (snaps[0], snaps[-1], snaps[-1], snaps[0])
        image = ax.imshow(
            cos,
            cmap="RdBu_r",
            norm=TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit),
            extent=extent,
            aspect="auto",
            interpolation="nearest",
        )
        fig.colorbar(image, ax=ax, pad=0.02).set_label("cos⟨W(t), g_W(τ)⟩")
        ax.set_xlabel("τ (step of the gradient)")
        ax.set_ylabel("t (step of the weight)")
        ax.set_title(
            f"{name} ({main[name]['entries']} entries), β₁={b1s[0]:g}: τ ≤ t only",
            fontsize=9,
        )

    ax = axes[0, 2]
    for b, b1 in enumerate(b1s):
        run = data["runs"][f"{b1:g}"]
        for name in groups:
            lags = run[name]["lags"]
            c = colors.get(name, "C2")
            ax.plot(lags["lag"], lags["q50"], styles.get(b, ":"), color=c, marker="o", ms=2.5)
            if b == 0:
                ax.fill_between(lags["lag"], lags["q10"], lags["q90"], color=c, alpha=0.15)
    for name in groups:
        c = colors.get(name, "C2")
        ax.axhline(main[name]["random_median"], color=c, lw=0.8, ls=":")
    ax.axhline(data["angular_step"], color="k", lw=1.0, ls="-.")
    ax.axvline(data["lags"] + 0.5, color="gray", lw=0.6)
    handles = [Line2D([], [], color=colors.get(n, "C2"), lw=3, label=n) for n in groups]
    handles += [
        Line2D([], [], color="k", ls=styles.get(b, ":"), label=f"median, β₁={b1:g}")
        for b, b1 in enumerate(b1s)
    ]
    handles += [
        Line2D([], [], color="gray", lw=6, alpha=0.3, label=f"10-90%, β₁={b1s[0]:g}"),
        Line2D([], [], color="k", ls=":", lw=0.8, label="random directions: 0.674/√d"),
        Line2D([], [], color="k", ls="-.", label="equilibrium rotation per step √(2ηλ)"),
    ]
    ax.legend(handles=handles, fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"lag t − τ (steps; ≤ {data['lags']}: every step, beyond: snapshot pairs)")
    ax.set_ylabel("|cos⟨W(t), g_W(τ)⟩|")
    ax.set_title("Assumption 1: ⟨W(t), g_W(τ)⟩ ≈ 0 for τ < t?", fontsize=9)

    ax = axes[1, 0]
    for b, b1 in enumerate(b1s):
        run = data["runs"][f"{b1:g}"]
        for name in groups:
            ax.plot(
                run[name]["lags"]["lag"],
                run[name]["lags"]["signed_median"],
                styles.get(b, ":"),
                color=colors.get(name, "C2"),
                marker="o",
                ms=3,
                label=f"{name}, β₁={b1:g}",
            )
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("lag t − τ (steps)")
    ax.set_ylabel("median signed cos")
    ax.set_title("Sign: W(t) leans against recent gradients", fontsize=9)
    ax.legend(fontsize=7)

    for ax, keys, ylabel, title in (
        (
            axes[1, 1],
            (("cv_v", "-", "v"), ("cv_sqrt_v", "--", "√v")),
            "coefficient of variation over entries",
            "Assumption 2: every entry's v alike? (CV = 0 if so)",
        ),
        (
            axes[1, 2],
            (("q90_q10_sqrt_v", "-", "√v"),),
            "90th / 10th percentile of √v over entries",
            "Spread of the per-entry scale √v (1 if alike)",
        ),
    ):
        for b, b1 in enumerate(b1s):
            run = data["runs"][f"{b1:g}"]
            for name in groups:
                spread = run[name]["spread"]
                for key, style, what in keys:
                    ax.plot(
                        snaps[1:],
                        np.asarray(spread[key])[1:],
                        style,
                        color=colors.get(name, "C2"),
                        alpha=1.0 if b == 0 else 0.45,
                        lw=1.2,
                        label=f"{name} {what}, β₁={b1:g}",
                    )
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(
        f"Meta-adaptive assumptions: {data['problem']}, AdamW lr={data['lr']:g}, "
        f"λ={data['weight_decay']:g}, β₂={data['b2']:g}, batch {data['batch_size']} "
        f"(snapshots every {data['every']} steps)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig
