"""Drawings of k-Adam and the meta-adaptive effect of normalization (theory/kadam.md,
theory/stability.md).

`draw_meta_adaptive`, `draw_kadam_stability`, `draw_kadam_training` and
`draw_phase_accuracy` draw the data of `adamflow.experiments.kadam_figures`' experiments
(see each experiment for the keys of ``data``); they compute nothing and write nothing.
"""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Running mean over ``width`` samples for display (same length, shorter windows at the
    ends)."""
    if width <= 1:
        return x
    kernel = np.ones(width)
    return np.convolve(x, kernel, "same") / np.convolve(np.ones_like(x), kernel, "same")


def _log_edges(x: np.ndarray) -> np.ndarray:
    """Cell edges around log-spaced centres ``x`` (for ``pcolormesh``)."""
    logs = np.log10(x)
    mid = (logs[1:] + logs[:-1]) / 2
    return 10 ** np.concatenate([[2 * logs[0] - mid[0]], mid, [2 * logs[-1] - mid[-1]]])


# --------------------------------------------------------------------------- meta-adaptive


def draw_meta_adaptive(data: dict[str, Any]) -> Figure:
    r"""Four panels (theory/kadam.md §4): |θ|² of each scale-invariant group against the
    predictions (a) identity, (b) flow, (c) EMA of η|u|², (d) EMA of η|ĝ|²; their relative
    errors (20-step means); the measured angular step against
    :math:`\sqrt{2\eta\lambda}|u|/\sqrt{E|u|^2}` and its |ĝ| variant; and the β₁ sweep of
    |∫2θ·u dt| / ∫η|u|² dt and mean |θ|² / (η E|u|²/2λ) beside 2β₁/(1−β₁) and
    (1+β₁)/(1−β₁). ``data``: as `meta_adaptive_experiment` returns."""
    groups = data["groups"]
    ts = np.asarray(data["ts"])
    norm_sq = np.asarray(data["norm_sq"])
    lr, weight_decay, steps = data["lr"], data["weight_decay"], data["steps"]
    colors = {"W1": "tab:blue", "W2": "tab:orange"}
    styles = {"identity": "o", "flow": "-", "ema_u": "--", "ema_g": ":"}
    fig = Figure(figsize=(12.5, 9.0))
    axes = fig.subplots(2, 2)

    ax = axes[0, 0]
    every = max(1, steps // 40)
    for g, name in enumerate(groups):
        c = colors.get(name, f"C{g}")
        ax.plot(ts, norm_sq[:, g], color=c, lw=3.0, alpha=0.35, label=f"measured |{name}|²")
        ax.plot(ts[::every], data["identity"][::every, g], "o", color=c, ms=3.5, mfc="none")
        ax.plot(ts, data["flow"][:, g], "-", color=c, lw=1.0)
        ax.plot(ts, data["ema_u"][:, g], "--", color=c, lw=1.2)
        ax.plot(ts, data["ema_g"][:, g], ":", color=c, lw=1.6)
    ax.plot([], [], "o", color="k", mfc="none", label="(a) exact identity")
    ax.plot([], [], "-", color="k", lw=1.0, label="(b) flow with θ·u")
    ax.plot([], [], "--", color="k", label=r"(c) EMA of $\eta|u|^2$ (drops θ·u)")
    ax.plot([], [], ":", color="k", lw=1.6, label=r"(d) EMA of $\eta|\hat g|^2$ (momentum-aware)")
    ax.set_yscale("log")
    ax.set_xlabel("t = nη")
    ax.set_ylabel("|θ|² of each scale-invariant group")
    ax.set_title(
        f"AdamW β₁={data['b1']}, β₂={data['b2']}, η={lr}, λ={weight_decay}, "
        f"batch {data['batch_size']}"
    )
    ax.legend(fontsize=8, ncol=2)

    ax = axes[0, 1]
    for g, name in enumerate(groups):
        c = colors.get(name, f"C{g}")
        for key, style in styles.items():
            err = np.maximum(data["rel_error"][key][:, g], 1e-16)  # an exact match at 1e-16
            if style == "o":
                ax.plot(ts[1::every], err[::every], style, color=c, ms=3, mfc="none")
            else:
                ax.plot(ts[1:], _smooth(err, 20), style, color=c, lw=1.3)
    for style, label in (
        ("o", "(a) identity"),
        ("-", "(b) flow"),
        ("--", "(c) EMA |u|²"),
        (":", "(d) EMA |ĝ|²"),
    ):
        ax.plot([], [], style, color="k", mfc="none", label=label)
    for g, name in enumerate(groups):
        ax.plot([], [], "-", color=colors.get(name, f"C{g}"), lw=4, alpha=0.5, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("t = nη")
    ax.set_ylabel("relative error |pred/measured − 1|")
    ax.set_title("How well each prediction tracks |θ|² (20-step means; 0 at 1e-16)")
    ax.legend(fontsize=8, ncol=2)

    ax = axes[1, 0]
    width = 50
    t_w = np.asarray(data["window_ts"])
    for g, name in enumerate(groups):
        c = colors.get(name, f"C{g}")
        ax.plot(t_w, _smooth(data["angle"][:, g], width), color=c, lw=2.2, alpha=0.6)
        ax.plot(t_w, _smooth(data["angle_pred_u"][:, g], width), "--", color=c, lw=1.2)
        ax.plot(t_w, _smooth(data["angle_pred_g"][:, g], width), ":", color=c, lw=1.6)
        ax.plot([], [], "-", color=c, lw=4, alpha=0.5, label=name)
    ax.plot([], [], "-", color="k", lw=2.2, alpha=0.6, label="measured angle(θ_{n-1}, θ_n)")
    ax.plot([], [], "--", color="k", label=r"$\sqrt{2\eta\lambda}\,|u|/\sqrt{E|u|^2}$")
    ax.plot([], [], ":", color="k", lw=1.6, label=r"$\sqrt{2\eta\lambda}\,|u|/\sqrt{E|\hat g|^2}$")
    ax.set_xlabel("t = nη (second half of the run; E over it)")
    ax.set_ylabel(f"angular step per iteration, rad ({width}-step mean)")
    ax.set_yscale("log")
    ax.set_title("Direction: effective step of the second normalization")
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    sweep_b1s = data["sweep_b1s"]
    b1_grid = np.linspace(0.01, max(sweep_b1s), 200)
    ax.plot(b1_grid, 2 * b1_grid / (1 - b1_grid), "k-", lw=1, label="2β₁/(1−β₁)")
    ax.plot(b1_grid, (1 + b1_grid) / (1 - b1_grid), "k--", lw=1, label="(1+β₁)/(1−β₁)")
    for g, name in enumerate(groups):
        c = colors.get(name, f"C{g}")
        ratio = data["sweep_cross_over_self"][name]
        norm_ratio = data["sweep_norm_over_equilibrium"][name]
        ax.plot(sweep_b1s, ratio, "o", color=c, label=f"{name}: |∫2θ·u dt| / ∫η|u|² dt")
        ax.plot(
            sweep_b1s,
            norm_ratio,
            "s",
            color=c,
            mfc="none",
            ms=8,
            label=f"{name}: mean |θ|² / (η E|u|²/2λ)",
        )
    ax.set_yscale("log")
    ax.set_xlabel("β₁ of AdamW (measured over the second half of each run)")
    ax.set_ylabel("ratio")
    ax.set_title("θ·u is not small for Adam with momentum")
    ax.legend(fontsize=8)
    fig.suptitle(
        f"Meta-adaptive effect: {data['problem']}, scale-invariant groups W1 (LayerNorm) and "
        f"W2 (weight-normalized)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- per-level bound


def draw_kadam_stability(data: dict[str, Any]) -> Figure:
    r"""Left: max over coordinates of |u_n| per step for plain Adam (stable and unstable)
    and the levels of 2- and 3-Adam, against the top level's bound
    :math:`C(\beta_1, \beta_2)` (theory/kadam.md §3); right: the largest |u| against β₂ of
    level 1, beside the ε-capped estimate (theory/stability.md §2).
    ``data``: as `kadam_stability_experiment` returns."""
    b1, unstable, top = data["b1"], data["b2_unstable"], data["b2_top"]
    bound_top, switch_off = data["bound_top"], data["switch_off"]
    curves, n = data["curves"], data["n"]
    fig = Figure(figsize=(13, 5.8))
    axes = fig.subplots(1, 2)
    ax = axes[0]
    lines: dict[str, tuple[dict[str, Any], str]] = {
        "plain_adam_unstable": (
            dict(color="tab:red", lw=2),
            f"plain Adam (β₁={b1}, β₂={unstable}) = level 1: unstable",
        ),
        "2-Adam_top": (
            dict(color="tab:blue", lw=2),
            f"2-Adam, β₂=({unstable}, {top}): top level output",
        ),
        "3-Adam_level2": (
            dict(color="tab:purple", lw=1, ls="--"),
            f"3-Adam, β₂=({unstable}, {unstable}, {top}): level 2",
        ),
        "3-Adam_top": (dict(color="tab:cyan", lw=2, ls="-."), "3-Adam: top level output"),
        "plain_adam_stable": (
            dict(color="tab:green", lw=1.2),
            f"plain Adam (β₁={b1}, β₂={top}): stable",
        ),
    }
    for key, (style, label) in lines.items():
        ax.semilogy(n, curves[key], label=label, **style)
    ax.axhline(bound_top, color="k", ls=":", label=f"C(β₁={b1}, β₂={top}) = {bound_top:.3f}")
    ax.set_ylim(1e-4, 1e5)
    ax.axvline(switch_off, color="gray", lw=0.8)
    ax.text(switch_off, 2e-4, " gradient switched off", color="gray", fontsize=8)
    ax.set_xlabel("step n")
    ax.set_ylabel("max over coordinates of |u_n|")
    ax.set_title(
        f"Switched-off gradient ({data['dims']} coordinates, |g| ~ {data['grad_scale']}, ε = 1e-8)"
    )
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)

    ax = axes[1]
    b2_sweep = data["b2_sweep"]
    ax.semilogy(b2_sweep, data["sweep_plain"], "o-", color="tab:red", label="plain Adam (β₁, β₂_1)")
    ax.semilogy(
        b2_sweep,
        np.maximum(data["capped"], 1.0),
        "--",
        color="tab:red",
        lw=1,
        label="ε-capped estimate (|g|/ε)^(1−p)",
    )
    ax.semilogy(
        b2_sweep,
        data["sweep_top"],
        "s-",
        color="tab:blue",
        label=f"2-Adam (β₁, β₂_1) → (β₁, {top}): top level",
    )
    ax.axhline(bound_top, color="k", ls=":", label=f"C(β₁, {top}) = {bound_top:.3f}")
    ax.axvline(b1**2, color="gray", lw=0.8)
    ax.text(b1**2, 2e2, " β₂_1 = β₁²", color="gray", fontsize=9)
    ax.set_xlabel("β₂_1 (level 1; unstable left of β₁²)")
    ax.set_ylabel("max over steps and coordinates of |u|")
    ax.set_title(f"Largest update vs the lower level's β₂ (β₁ = {b1})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- training


def draw_kadam_training(data: list[dict[str, Any]]) -> Figure:
    r"""One row per task (theory/kadam.md §1): bars of the final test accuracy (mean ± std
    over seeds) per (k, normalization) and learning rate, and the learning curves at each
    configuration's best learning rate. ``data``: as `kadam_training_experiment`
    returns."""
    fig = Figure(figsize=(13, 4.5 * len(data)))
    axes = fig.subplots(len(data), 2, squeeze=False, gridspec_kw={"width_ratios": [1.3, 1]})
    viridis = matplotlib.colormaps["viridis"]
    for row, res in enumerate(data):
        mean, std = np.asarray(res["mean"]), np.asarray(res["std"])
        ks, normalize, lrs = res["ks"], res["normalize"], res["lrs"]
        configs = [(i, j) for i in range(len(ks)) for j in range(len(normalize))]
        ax = axes[row, 0]
        n_lr = len(lrs)
        width = 0.8 / n_lr
        for lr_index, lr in enumerate(lrs):
            xs = np.arange(len(configs)) + (lr_index - (n_lr - 1) / 2) * width
            ax.bar(
                xs,
                [mean[i, j, lr_index] for i, j in configs],
                width,
                yerr=[std[i, j, lr_index] for i, j in configs],
                capsize=3,
                color=viridis(lr_index / max(n_lr - 1, 1)),
                label=f"lr = {lr:g}",
            )
        ax.set_xticks(
            np.arange(len(configs)),
            [f"k={ks[i]}\n{'LayerNorm' if normalize[j] else 'no norm'}" for i, j in configs],
        )
        low = max(0.0, float(np.min(mean - std)) - 0.05)
        ax.set_ylim(low, 1.0)
        ax.set_ylabel(f"final test accuracy (mean ± std, {res['n_seeds']} seeds)")
        ax.set_title(
            f"{res['task']}: k-Adam, β₁={res['b1']}, β₂={res['b2']}, λ={res['weight_decay']}"
        )
        ax.legend(fontsize=8, loc="lower left")

        ax = axes[row, 1]
        steps = np.asarray(res["steps"])
        for i, j in configs:
            curve, spread = res["curve_mean"][i, j], res["curve_std"][i, j]
            color = f"C{i}"
            label = f"k={ks[i]}, {'LN' if normalize[j] else 'no norm'}"
            style = "-" if normalize[j] else "--"
            best_lr = lrs[int(res["best"][i, j])]
            ax.plot(steps, curve, style, color=color, label=f"{label} (lr {best_lr:g})")
            ax.fill_between(steps, curve - spread, curve + spread, color=color, alpha=0.12)
        ax.set_xlabel("step")
        ax.set_ylabel("test accuracy (best lr per configuration)")
        ax.set_title("Learning curves (mean ± std over seeds)")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def draw_phase_accuracy(data: dict[str, Any]) -> Figure:
    """Left: final test accuracy over the (1 − β₁, 1 − β₂) grid with the boundary β₂ = β₁²
    of the stable region (theory/stability.md §1); right: accuracy against the growth rate
    max(0, ln(β₁/√β₂)) per step, stable and unstable cells apart.
    ``data``: as `phase_accuracy_experiment` returns."""
    one_minus_b1 = np.asarray(data["one_minus_b1"])
    one_minus_b2 = np.asarray(data["one_minus_b2"])
    acc, acc_std = np.asarray(data["mean"]), np.asarray(data["std"])
    stable, growth = np.asarray(data["stable"]), np.asarray(data["growth"])
    fig = Figure(figsize=(13, 5.2))
    axes = fig.subplots(1, 2)
    ax = axes[0]
    mesh = ax.pcolormesh(
        _log_edges(one_minus_b1),
        _log_edges(one_minus_b2),
        acc.T,
        cmap="viridis",
        vmin=0.0,
        vmax=1.0,
        shading="flat",
    )
    fig.colorbar(mesh, ax=ax, label=f"final test accuracy (mean of {data['n_seeds']} seeds)")
    for b_i, omb in enumerate(one_minus_b1):
        for g_i, omg in enumerate(one_minus_b2):
            ax.text(
                omb,
                omg,
                f"{acc[b_i, g_i]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if acc[b_i, g_i] < 0.6 else "black",
            )
    curve_b1s = np.linspace(0.0, 1.0 - one_minus_b1[0] / 1.5, 400)
    ax.plot(
        1 - curve_b1s, 1 - curve_b1s**2, "r-", lw=2, label="β₂ = β₁²: stable below, unstable above"
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(*_log_edges(one_minus_b1)[[0, -1]])
    ax.set_ylim(*_log_edges(one_minus_b2)[[0, -1]])
    ax.set_xlabel("1 − β₁")
    ax.set_ylabel("1 − β₂")
    ax.set_title(
        f"AdamW on {data['task']}: lr={data['lr']}, λ={data['weight_decay']}, {data['steps']} steps"
    )
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12))

    ax = axes[1]
    for cells, fmt, color, label in (
        (stable, "o", "tab:green", "stable cells (β₂ > β₁²)"),
        (~stable, "s", "tab:red", "unstable cells (β₂ < β₁²)"),
    ):
        ax.errorbar(
            growth[cells],
            acc[cells],
            yerr=acc_std[cells],
            fmt=fmt,
            color=color,
            label=label,
            alpha=0.8,
        )
    ax.set_xlabel("growth of the update bound per step, max(0, ln(β₁/√β₂))")
    ax.set_ylabel("final test accuracy (mean ± std over seeds)")
    ax.set_title("Accuracy against the instability's growth rate")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
