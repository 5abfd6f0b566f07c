"""Figures of k-Adam and the meta-adaptive effect of normalization (THEORY.md §4-5).

``figure_meta_adaptive``, ``figure_kadam_stability``, ``figure_kadam_training`` and
``figure_phase_accuracy`` each compute what they show from the library, write
``<name>.png`` and ``<name>.json`` into ``out_dir`` and return a summary of the numbers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .. import stability  # noqa: E402
from .._io import save_figure, sidecar  # noqa: E402
from .._meta import (  # noqa: E402
    integrate_norm_flow,
    norm_identity,
    predicted_angular_step,
    record_norm_dynamics,
    summarize_norm_dynamics,
)
from .._optimizers import Adam, AdamW, KAdam  # noqa: E402
from .._scale_invariant import normalized_mlp  # noqa: E402
from .._training import (  # noqa: E402
    compare_kadam,
    digits_mlp_task,
    level_outputs,
    modular_addition_task,
    phase_accuracy,
    switched_off_gradients,
)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Running mean over ``width`` samples (same length, shorter windows at the ends)."""
    if width <= 1:
        return x
    kernel = np.ones(width)
    return np.convolve(x, kernel, "same") / np.convolve(np.ones_like(x), kernel, "same")


def _rounded(summary: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            out[key] = _rounded(value, digits)
        elif isinstance(value, float):
            out[key] = float(f"{value:.{digits}g}")
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------- meta-adaptive


def figure_meta_adaptive(out_dir: Path, *, quick: bool = False, seed: int = 0) -> dict:
    r"""|θ|² of a weight-normalized MLP trained with AdamW against predictions (a)-(d).

    (a) the exact one-step identity, (b) the first-order flow
    d|θ|²/dt = -2λ|θ|² - 2θ·u + η|u|², (c) the same without θ·u (an EMA of η|u|², rate 2λ),
    (d) the momentum-aware variant of (c): the EMA of η|ĝ|² with ĝ = g/(sqrt(v̂)+ε), Adam's
    update before momentum (each normalized gradient eventually moves θ by η ĝ, orthogonal
    to θ up to the per-coordinate scaling, so with uncorrelated gradients
    E|u|² = (1-β₁)/(1+β₁) E|ĝ|² and 2θ·u contributes -(2β₁/(1-β₁)) η|u|² on average).
    A sweep over β₁ compares |∫2θ·u dt| / ∫η|u|² dt with 2β₁/(1-β₁).
    """
    lr, weight_decay, b2, batch = 0.01, 0.1, 0.999, 64
    steps = 1500 if quick else 4000
    sweep_b1s = (0.0, 0.9) if quick else (0.0, 0.5, 0.8, 0.9, 0.95)
    problem = normalized_mlp(seed)
    grad = problem.minibatch_grad(batch)
    start = time.perf_counter()

    def run(b1: float) -> Any:
        opt = AdamW(lr, b1=b1, b2=b2, weight_decay=weight_decay)
        return record_norm_dynamics(opt, grad, problem.theta0, steps, seed=seed)

    main_b1s = 0.9
    dyn = run(main_b1s)
    summary = summarize_norm_dynamics(dyn)
    sweep = {b1: summarize_norm_dynamics(run(b1)) for b1 in sweep_b1s}
    seconds = time.perf_counter() - start

    ts = dyn.ts
    n0 = dyn.norm_sq[0]
    identity = np.concatenate(
        [
            n0[None],
            norm_identity(dyn.norm_sq[:-1], dyn.theta_dot_u, dyn.update_sq, lr, weight_decay),
        ]
    )
    flow = integrate_norm_flow(n0, dyn.theta_dot_u, dyn.update_sq, lr, weight_decay)
    ema_u = integrate_norm_flow(
        n0, dyn.theta_dot_u, dyn.update_sq, lr, weight_decay, drop_theta_dot_u=True
    )
    ema_g = integrate_norm_flow(
        n0, dyn.theta_dot_u, dyn.normalized_grad_sq, lr, weight_decay, drop_theta_dot_u=True
    )
    half = steps // 2
    for g, name in enumerate(dyn.groups):
        entry = summary[name]
        rel_d = np.abs(ema_g[1:, g] / dyn.norm_sq[1:, g] - 1.0)
        entry["window_mean_rel_error_ema_ghat"] = float(rel_d[half:].mean())
        entry["max_rel_error_ema_ghat"] = float(rel_d.max())

    fig, axes = plt.subplots(2, 2, figsize=(12.5, 9.0))
    colors = {"W1": "tab:blue", "W2": "tab:orange"}
    ax = axes[0, 0]
    every = max(1, steps // 40)
    for g, name in enumerate(dyn.groups):
        c = colors.get(name, f"C{g}")
        ax.plot(ts, dyn.norm_sq[:, g], color=c, lw=3.0, alpha=0.35, label=f"measured |{name}|²")
        ax.plot(ts[::every], identity[::every, g], "o", color=c, ms=3.5, mfc="none")
        ax.plot(ts, flow[:, g], "-", color=c, lw=1.0)
        ax.plot(ts, ema_u[:, g], "--", color=c, lw=1.2)
        ax.plot(ts, ema_g[:, g], ":", color=c, lw=1.6)
    ax.plot([], [], "o", color="k", mfc="none", label="(a) exact identity")
    ax.plot([], [], "-", color="k", lw=1.0, label="(b) flow with θ·u")
    ax.plot([], [], "--", color="k", label=r"(c) EMA of $\eta|u|^2$ (drops θ·u)")
    ax.plot([], [], ":", color="k", lw=1.6, label=r"(d) EMA of $\eta|\hat g|^2$ (momentum-aware)")
    ax.set_yscale("log")
    ax.set_xlabel("t = nη")
    ax.set_ylabel("|θ|² of each scale-invariant group")
    ax.set_title(f"AdamW β₁={main_b1s}, β₂={b2}, η={lr}, λ={weight_decay}, batch {batch}")
    ax.legend(fontsize=8, ncol=2)

    ax = axes[0, 1]
    for g, name in enumerate(dyn.groups):
        c = colors.get(name, f"C{g}")
        meas = dyn.norm_sq[1:, g]
        for pred, style in ((identity, "o"), (flow, "-"), (ema_u, "--"), (ema_g, ":")):
            err = np.abs(pred[1:, g] / meas - 1.0)
            err = np.maximum(err, 1e-16)  # an exact match is drawn at 1e-16
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
    for g, name in enumerate(dyn.groups):
        ax.plot([], [], "-", color=colors.get(name, f"C{g}"), lw=4, alpha=0.5, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("t = nη")
    ax.set_ylabel("relative error |pred/measured − 1|")
    ax.set_title("How well each prediction tracks |θ|² (20-step means; 0 at 1e-16)")
    ax.legend(fontsize=8, ncol=2)

    ax = axes[1, 0]
    width = 50
    window = slice(half, None)
    for g, name in enumerate(dyn.groups):
        c = colors.get(name, f"C{g}")
        u2 = dyn.update_sq[window, g]
        predicted_u = predicted_angular_step(u2, u2.mean(), lr, weight_decay)
        predicted_g = predicted_angular_step(
            u2, dyn.normalized_grad_sq[window, g].mean(), lr, weight_decay
        )
        t_w = ts[1:][window]
        ax.plot(t_w, _smooth(dyn.angle[window, g], width), color=c, lw=2.2, alpha=0.6)
        ax.plot(t_w, _smooth(predicted_u, width), "--", color=c, lw=1.2)
        ax.plot(t_w, _smooth(predicted_g, width), ":", color=c, lw=1.6)
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
    b1_grid = np.linspace(0.01, max(sweep_b1s), 200)
    ax.plot(b1_grid, 2 * b1_grid / (1 - b1_grid), "k-", lw=1, label="2β₁/(1−β₁)")
    ax.plot(b1_grid, (1 + b1_grid) / (1 - b1_grid), "k--", lw=1, label="(1+β₁)/(1−β₁)")
    for g, name in enumerate(dyn.groups):
        c = colors.get(name, f"C{g}")
        ratio = [sweep[b][name]["cross_over_self_window"] for b in sweep_b1s]
        norm_ratio = [sweep[b][name]["norm_sq_over_equilibrium"] for b in sweep_b1s]
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
        f"Meta-adaptive effect: {problem.name}, scale-invariant groups W1 (LayerNorm) and "
        f"W2 (weight-normalized)",
        fontsize=11,
    )
    fig.tight_layout()

    result = {
        "main_run": _rounded(summary),
        "b1_sweep": {str(b): _rounded(s) for b, s in sweep.items()},
        "seconds": round(seconds, 1),
    }
    params = {
        "problem": problem.name,
        "lr": lr,
        "weight_decay": weight_decay,
        "b1": main_b1s,
        "b2": b2,
        "batch_size": batch,
        "steps": steps,
        "sweep_b1s": list(sweep_b1s),
        "quick": quick,
    }
    save_figure(fig, Path(out_dir) / "meta_adaptive.png", sidecar(params, seed, **result))
    plt.close(fig)
    return result


# --------------------------------------------------------------------------- per-level bound


def figure_kadam_stability(out_dir: Path, *, quick: bool = False, seed: int = 0) -> dict:
    r"""A stable top level bounds k-Adam's update whatever the lower levels do (THEORY.md §4).

    Gradients N(0, scale²) switch off after ``switch_off`` steps. Left: max over coordinates
    of |u⁽ⁱ⁾_n| per level for 2- and 3-Adam whose lower levels are unstable (β₂ < β₁²), against
    C(β₁_k, β₂_k); level 1 is plain Adam with the lower (β₁, β₂). Right: the largest |u| over
    the run against β₂_1 for plain Adam and for 2-Adam with a stable top level.
    """
    steps = 650
    switch_off, dims, scale, b1 = 200, 16, 1e-2, 0.9
    grads = switched_off_gradients(steps, switch_off, dims, scale=scale, seed=seed)
    unstable, top = 0.5, 0.999
    specs = {
        "2-Adam": KAdam(1e-3, k=2, b1=b1, b2=(unstable, top)),
        "3-Adam": KAdam(1e-3, k=3, b1=b1, b2=(unstable, unstable, top)),
    }
    outputs = {name: level_outputs(opt, grads) for name, opt in specs.items()}
    stable_adam = level_outputs(Adam(1e-3, b1=b1, b2=top), grads)[0]
    bound_top = float(stability.update_bound(b1, top))
    b2_sweep = np.linspace(0.3, 0.999, 8 if quick else 25)
    sweep_plain, sweep_top = [], []
    for b2_1 in b2_sweep:
        u = level_outputs(KAdam(1e-3, k=2, b1=b1, b2=(float(b2_1), top)), grads)
        sweep_plain.append(float(np.abs(u[0]).max()))
        sweep_top.append(float(np.abs(u[1]).max()))
    capped = stability.eps_capped_amplification(b1, b2_sweep, scale, 1e-8)

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.8))
    ax = axes[0]
    n = np.arange(1, steps + 1)
    ax.semilogy(
        n,
        np.abs(outputs["2-Adam"][0]).max(axis=1),
        color="tab:red",
        lw=2,
        label=f"plain Adam (β₁={b1}, β₂={unstable}) = level 1: unstable",
    )
    ax.semilogy(
        n,
        np.abs(outputs["2-Adam"][1]).max(axis=1),
        color="tab:blue",
        lw=2,
        label=f"2-Adam, β₂=({unstable}, {top}): top level output",
    )
    ax.semilogy(
        n,
        np.abs(outputs["3-Adam"][1]).max(axis=1),
        color="tab:purple",
        lw=1,
        ls="--",
        label=f"3-Adam, β₂=({unstable}, {unstable}, {top}): level 2",
    )
    ax.semilogy(
        n,
        np.abs(outputs["3-Adam"][2]).max(axis=1),
        color="tab:cyan",
        lw=2,
        ls="-.",
        label="3-Adam: top level output",
    )
    ax.semilogy(
        n,
        np.abs(stable_adam).max(axis=1),
        color="tab:green",
        lw=1.2,
        label=f"plain Adam (β₁={b1}, β₂={top}): stable",
    )
    ax.axhline(bound_top, color="k", ls=":", label=f"C(β₁={b1}, β₂={top}) = {bound_top:.3f}")
    ax.set_ylim(1e-4, 1e5)
    ax.axvline(switch_off, color="gray", lw=0.8)
    ax.text(switch_off, 2e-4, " gradient switched off", color="gray", fontsize=8)
    ax.set_xlabel("step n")
    ax.set_ylabel("max over coordinates of |u_n|")
    ax.set_title(f"Switched-off gradient ({dims} coordinates, |g| ~ {scale}, ε = 1e-8)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)

    ax = axes[1]
    ax.semilogy(b2_sweep, sweep_plain, "o-", color="tab:red", label="plain Adam (β₁, β₂_1)")
    ax.semilogy(
        b2_sweep,
        np.maximum(capped, 1.0),
        "--",
        color="tab:red",
        lw=1,
        label="ε-capped estimate (|g|/ε)^(1−p)",
    )
    ax.semilogy(
        b2_sweep,
        sweep_top,
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

    result = {
        "bound_top": bound_top,
        "max_update": {
            "plain_adam_unstable": float(np.abs(outputs["2-Adam"][0]).max()),
            "2-Adam_top": float(np.abs(outputs["2-Adam"][1]).max()),
            "3-Adam_level2": float(np.abs(outputs["3-Adam"][1]).max()),
            "3-Adam_top": float(np.abs(outputs["3-Adam"][2]).max()),
            "plain_adam_stable": float(np.abs(stable_adam).max()),
        },
        "sweep_max_top_over_bound": float(max(sweep_top) / bound_top),
        "sweep_max_plain": float(max(sweep_plain)),
    }
    params = {
        "steps": steps,
        "switch_off": switch_off,
        "dims": dims,
        "grad_scale": scale,
        "b1": b1,
        "b2_unstable": unstable,
        "b2_top": top,
        "eps": 1e-8,
        "b2_sweep": b2_sweep,
        "quick": quick,
    }
    result = _rounded(result)
    save_figure(fig, Path(out_dir) / "kadam_stability.png", sidecar(params, seed, **result))
    plt.close(fig)
    return result


# --------------------------------------------------------------------------- training


def _training_settings(quick: bool) -> dict[str, dict[str, Any]]:
    if quick:  # one compile per (task, k, normalize); the transformer's take ~10 s each
        return {
            "digits": dict(
                ks=(1, 2),
                normalize=(False, True),
                lrs=(3e-3,),
                b1=0.9,
                b2=0.999,
                weight_decay=1e-2,
                steps=100,
                eval_every=50,
                n_seeds=2,
            ),
        }
    return {
        "digits": dict(
            ks=(1, 2, 3),
            normalize=(False, True),
            lrs=(1e-3, 3e-3, 1e-2),
            b1=0.9,
            b2=0.999,
            weight_decay=1e-2,
            steps=600,
            eval_every=50,
            n_seeds=3,
        ),
        "modular": dict(
            ks=(1, 2, 3),
            normalize=(False, True),
            lrs=(3e-4, 1e-3),
            b1=0.9,
            b2=0.98,
            weight_decay=1.0,
            steps=2000,
            eval_every=100,
            n_seeds=3,
        ),
    }


def figure_kadam_training(out_dir: Path, *, quick: bool = False, seed: int = 0) -> dict:
    """Final test accuracy (mean ± std over seeds) of k-Adam (AdamW-style decay) for
    k = 1, 2, 3, with and without a LayerNorm, on an MLP on digits and a one-layer
    transformer on modular addition; learning curves at each configuration's best lr.
    ``quick`` trains only the MLP (k = 1, 2), briefly."""
    settings = _training_settings(quick)
    factories = {"digits": digits_mlp_task, "modular": modular_addition_task}
    tasks = {name: factories[name](seed) for name in settings}
    start = time.perf_counter()
    results = {name: compare_kadam(tasks[name], seed=seed, **settings[name]) for name in tasks}
    seconds = time.perf_counter() - start

    fig, axes = plt.subplots(
        len(tasks),
        2,
        figsize=(13, 4.5 * len(tasks)),
        squeeze=False,
        gridspec_kw={"width_ratios": [1.3, 1]},
    )
    summary: dict[str, Any] = {}
    for row, (name, res) in enumerate(results.items()):
        final = res.test_accuracy[..., -1]  # (k, norm, lr, seed)
        mean, std = final.mean(axis=-1), final.std(axis=-1)
        configs = [(i, j) for i in range(len(res.ks)) for j in range(len(res.normalize))]
        ax = axes[row, 0]
        n_lr = len(res.lrs)
        width = 0.8 / n_lr
        for lr_index, lr in enumerate(res.lrs):
            xs = np.arange(len(configs)) + (lr_index - (n_lr - 1) / 2) * width
            ax.bar(
                xs,
                [mean[i, j, lr_index] for i, j in configs],
                width,
                yerr=[std[i, j, lr_index] for i, j in configs],
                capsize=3,
                color=plt.cm.viridis(lr_index / max(n_lr - 1, 1)),
                label=f"lr = {lr:g}",
            )
        ax.set_xticks(
            np.arange(len(configs)),
            [
                f"k={res.ks[i]}\n{'LayerNorm' if res.normalize[j] else 'no norm'}"
                for i, j in configs
            ],
        )
        low = max(0.0, float(np.min(mean - std)) - 0.05)
        ax.set_ylim(low, 1.0)
        ax.set_ylabel(f"final test accuracy (mean ± std, {final.shape[-1]} seeds)")
        ax.set_title(
            f"{res.task}: k-Adam, β₁={settings[name]['b1']}, "
            f"β₂={settings[name]['b2']}, λ={settings[name]['weight_decay']}"
        )
        ax.legend(fontsize=8, loc="lower left")

        ax = axes[row, 1]
        task_summary: dict[str, Any] = {}
        for i, j in configs:
            best = int(np.argmax(mean[i, j]))
            curve = res.test_accuracy[i, j, best]
            label = f"k={res.ks[i]}, {'LN' if res.normalize[j] else 'no norm'}"
            color = f"C{i}"
            style = "-" if res.normalize[j] else "--"
            ax.plot(
                res.steps,
                curve.mean(axis=0),
                style,
                color=color,
                label=f"{label} (lr {res.lrs[best]:g})",
            )
            ax.fill_between(
                res.steps,
                curve.mean(0) - curve.std(0),
                curve.mean(0) + curve.std(0),
                color=color,
                alpha=0.12,
            )
            task_summary[label] = {
                f"lr={lr:g}": f"{mean[i, j, q]:.3f} ± {std[i, j, q]:.3f}"
                for q, lr in enumerate(res.lrs)
            }
        ax.set_xlabel("step")
        ax.set_ylabel("test accuracy (best lr per configuration)")
        ax.set_title("Learning curves (mean ± std over seeds)")
        ax.legend(fontsize=8, loc="lower right")
        summary[res.task] = task_summary
    fig.tight_layout()
    params = {name: {**settings[name], "task": tasks[name].name} for name in tasks}
    result = {"final_test_accuracy": summary, "seconds": round(seconds, 1)}
    save_figure(fig, Path(out_dir) / "kadam_training.png", sidecar(params, seed, **result))
    plt.close(fig)
    return result


def figure_phase_accuracy(out_dir: Path, *, quick: bool = False, seed: int = 0) -> dict:
    """Final test accuracy of AdamW on the digits MLP over a (β₁, β₂) grid, with the
    stability boundary β₂ = β₁² drawn, and against the growth rate ln(β₁/√β₂) per step."""
    if quick:
        one_minus_b1, one_minus_b2, n_seeds, steps = (
            np.logspace(-2, 0, 4),
            np.logspace(-3, np.log10(0.7), 4),
            1,
            200,
        )
    else:
        one_minus_b1, one_minus_b2, n_seeds, steps = (
            np.logspace(-2, 0, 9),
            np.logspace(-3, np.log10(0.7), 9),
            3,
            600,
        )
    b1s, b2s = 1.0 - one_minus_b1, 1.0 - one_minus_b2
    lr, weight_decay = 3e-3, 1e-2
    task = digits_mlp_task(seed)
    start = time.perf_counter()
    grid = phase_accuracy(
        task,
        b1s,
        b2s,
        lr=lr,
        weight_decay=weight_decay,
        steps=steps,
        n_seeds=n_seeds,
        seed=seed,
    )
    seconds = time.perf_counter() - start
    acc = grid.test_accuracy.mean(axis=-1)  # (b1, b2)
    acc_std = grid.test_accuracy.std(axis=-1)
    stable = np.asarray(stability.is_stable(b1s[:, None], b2s[None, :]))
    growth = np.asarray(stability.growth_rate(b1s[:, None], b2s[None, :]))

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    ax = axes[0]

    def edges(x: np.ndarray) -> np.ndarray:
        logs = np.log10(x)
        mid = (logs[1:] + logs[:-1]) / 2
        return 10 ** np.concatenate([[2 * logs[0] - mid[0]], mid, [2 * logs[-1] - mid[-1]]])

    mesh = ax.pcolormesh(
        edges(one_minus_b1),
        edges(one_minus_b2),
        acc.T,
        cmap="viridis",
        vmin=0.0,
        vmax=1.0,
        shading="flat",
    )
    fig.colorbar(mesh, ax=ax, label=f"final test accuracy (mean of {n_seeds} seeds)")
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
    ax.set_xlim(edges(one_minus_b1)[[0, -1]])
    ax.set_ylim(edges(one_minus_b2)[[0, -1]])
    ax.set_xlabel("1 − β₁")
    ax.set_ylabel("1 − β₂")
    ax.set_title(f"AdamW on {task.name}: lr={lr}, λ={weight_decay}, {steps} steps")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12))

    ax = axes[1]
    ax.errorbar(
        growth[stable],
        acc[stable],
        yerr=acc_std[stable],
        fmt="o",
        color="tab:green",
        label="stable cells (β₂ > β₁²)",
        alpha=0.8,
    )
    ax.errorbar(
        growth[~stable],
        acc[~stable],
        yerr=acc_std[~stable],
        fmt="s",
        color="tab:red",
        label="unstable cells (β₂ < β₁²)",
        alpha=0.8,
    )
    ax.set_xlabel("growth of the update bound per step, max(0, ln(β₁/√β₂))")
    ax.set_ylabel("final test accuracy (mean ± std over seeds)")
    ax.set_title("Accuracy against the instability's growth rate")
    ax.legend(fontsize=8)
    fig.tight_layout()

    order = np.argsort(acc[~stable])[:3]
    worst = [
        {"b1": float(b), "b2": float(g), "accuracy": float(a)}
        for b, g, a in zip(
            np.broadcast_to(b1s[:, None], acc.shape)[~stable][order],
            np.broadcast_to(b2s[None, :], acc.shape)[~stable][order],
            acc[~stable][order],
        )
    ]
    strongly = growth > 0.1
    result = {
        "mean_accuracy_stable": float(acc[stable].mean()),
        "mean_accuracy_unstable": float(acc[~stable].mean()) if (~stable).any() else None,
        "mean_accuracy_unstable_growth_gt_0.1": (
            float(acc[strongly].mean()) if strongly.any() else None
        ),
        "mean_accuracy_unstable_growth_le_0.1": (
            float(acc[~stable & ~strongly].mean()) if (~stable & ~strongly).any() else None
        ),
        "min_accuracy_stable": float(acc[stable].min()),
        "worst_unstable_cells": worst,
        "cells": {"stable": int(stable.sum()), "unstable": int((~stable).sum())},
        "seconds": round(seconds, 1),
    }
    params = {
        "b1s": b1s,
        "b2s": b2s,
        "lr": lr,
        "weight_decay": weight_decay,
        "steps": steps,
        "n_seeds": n_seeds,
        "task": task.name,
        "batch_size": 64,
        "quick": quick,
    }
    result = _rounded(result)
    save_figure(
        fig,
        Path(out_dir) / "phase_accuracy.png",
        sidecar(params, seed, test_accuracy=grid.test_accuracy, **result),
    )
    plt.close(fig)
    return result
