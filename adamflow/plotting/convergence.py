"""Figures of how closely the flows follow the discrete optimizer (THEORY.md §2-§3).

`figure_convergence`: error against lr at a fixed time for the leading and the corrected
flow (Adam, AdamW, 2-Adam), with fitted slopes. `figure_trajectories`: discrete iterates
and both flows on a 2-D loss, and their distance step by step.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .._compare import compare, compare_orders, fit_order  # noqa: E402
from .._integrate import integrate  # noqa: E402
from .._io import save_figure, sidecar  # noqa: E402
from .._optimizers import KAdam  # noqa: E402

# THEORY §3's check: a 5-d coupled quadratic far from its minimum, T = 0.5.
_HESSIAN = np.array(
    [
        [2.0, 0.3, 0.0, 0.0, 0.0],
        [0.3, 1.0, 0.2, 0.0, 0.0],
        [0.0, 0.2, 1.5, 0.0, 0.1],
        [0.0, 0.0, 0.0, 0.7, 0.0],
        [0.0, 0.0, 0.1, 0.0, 3.0],
    ]
)
_MINIMUM = np.array([3.0, -4.0, 5.0, 6.0, -3.0])
CONVERGENCE_T1 = 0.5
CONVERGENCE_LRS = (0.02, 0.01, 0.005, 0.0025, 0.00125, 0.000625)
RTOL, ATOL = 1e-11, 1e-13
_COLORS = {"leading": "tab:blue", "corrected": "tab:red"}


def far_quadratic(theta: Any) -> Any:
    r""":math:`\tfrac12 (\theta - c)^\top H (\theta - c)` with c = (3, -4, 5, 6, -3): from
    θ = 0 its gradients stay between 0.4 and 10 in size over t ≤ 0.5."""
    d = theta - jnp.asarray(_MINIMUM)
    return 0.5 * d @ jnp.asarray(_HESSIAN) @ d


def _convergence_specs() -> dict[str, KAdam]:
    return {
        "Adam": KAdam(0.01, k=1, b1=0.85, b2=0.98),
        "AdamW (λ = 0.05)": KAdam(0.01, k=1, b1=0.85, b2=0.98, weight_decay=0.05),
        "2-Adam": KAdam(0.01, k=2, b1=0.85, b2=0.98),
    }


def figure_convergence(out_dir: Path, *, quick: bool = False, seed: int = 0) -> dict:
    r"""Largest distance :math:`\max_{n\eta \le 0.5} |\theta_n - \theta(n\eta)|` against η,
    leading vs corrected flow, for Adam, AdamW and 2-Adam on `far_quadratic` (β₁ = 0.85,
    β₂ = 0.98), with the least-squares slopes (all lrs, and the three smallest) and
    slope-1/slope-2 guides. (The final-time error alone has sign changes that make single
    points dip; the maximum over the path does not.)"""
    lrs = CONVERGENCE_LRS[:2] if quick else CONVERGENCE_LRS
    backend = "scipy" if quick else "diffrax"  # quick: no diffrax compilation
    start = time.perf_counter()
    theta0 = jnp.zeros(5)
    results: dict[str, Any] = {}
    fig, axes = plt.subplots(1, 3, figsize=(14.5, 4.8), sharey=True)
    for ax, (name, opt) in zip(axes, _convergence_specs().items()):
        fits = compare_orders(
            opt,
            far_quadratic,
            theta0,
            lrs,
            t1=CONVERGENCE_T1,
            metric="max",
            backend=backend,
            rtol=RTOL,
            atol=ATOL,
        )
        entry: dict[str, Any] = {}
        for order, fit in fits.items():
            tail = (
                fit_order(fit.lrs[-3:].tolist(), fit.errors[-3:].tolist()).order
                if len(lrs) > 3
                else fit.order
            )
            entry[order] = {
                "lrs": fit.lrs,
                "errors": fit.errors,
                "order": fit.order,
                "order_three_smallest_lrs": tail,
            }
            marker = "o" if order == "leading" else "s"
            label = f"{order}: slope {fit.order:.2f}"
            if len(lrs) > 3:
                label += f" (3 smallest lr: {tail:.2f})"
            ax.loglog(fit.lrs, fit.errors, marker=marker, color=_COLORS[order], label=label)
        ratio = entry["leading"]["errors"][1] / entry["corrected"]["errors"][1]
        entry["ratio_at_lr_0.01"] = float(ratio)
        results[name] = entry
        for slope, anchor_order in ((1, "leading"), (2, "corrected")):
            anchor = fits[anchor_order]
            guide = anchor.errors[0] * (np.asarray(lrs) / lrs[0]) ** slope
            ax.loglog(lrs, guide * 1.6, ls=":", color="0.45", lw=1)
            ax.annotate(
                f"slope {slope}",
                (lrs[-1], guide[-1] * 1.6),
                textcoords="offset points",
                xytext=(4, 0),
                fontsize=8,
                color="0.35",
            )
        ax.set_title(f"{name}: corrected {ratio:.0f}× closer at η = 0.01")
        ax.set_xlabel("learning rate η")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel(r"$\max_{n\eta \leq 0.5}\, |\theta_n - \theta(n\eta)|$")
    fig.suptitle(
        "Flow against the discrete iterates: the corrected flow (THEORY §3) is second order "
        "(5-d quadratic far from its minimum, β₁ = 0.85, β₂ = 0.98)",
        fontsize=11,
    )
    fig.tight_layout()
    seconds = time.perf_counter() - start
    params = {
        "loss": "far_quadratic (H, c in adamflow.plotting.convergence)",
        "theta0": [0.0] * 5,
        "b1": 0.85,
        "b2": 0.98,
        "t1": CONVERGENCE_T1,
        "lrs": list(lrs),
        "metric": "max over the path (save every max(1, K//50) steps)",
        "backend": backend,
        "rtol": RTOL,
        "atol": ATOL,
        "quick": quick,
    }
    save_figure(fig, Path(out_dir) / "convergence.png", sidecar(params, seed, results=results))
    plt.close(fig)
    summary = {
        name: {
            "leading_order": entry["leading"]["order"],
            "corrected_order": entry["corrected"]["order"],
            "corrected_order_three_smallest_lrs": entry["corrected"]["order_three_smallest_lrs"],
            "ratio_at_lr_0.01": entry["ratio_at_lr_0.01"],
        }
        for name, entry in results.items()
    }
    return {**summary, "seconds": seconds}


# --------------------------------------------------------------------------- trajectories


def curved_valley(theta: Any) -> Any:
    r"""A 2-D non-convex valley :math:`\tfrac12[(x-3)^2 + 6(y - \sin x)^2]`."""
    x, y = theta[0], theta[1]
    return 0.5 * ((x - 3.0) ** 2 + 6.0 * (y - jnp.sin(x)) ** 2)


def figure_trajectories(out_dir: Path, *, quick: bool = False, seed: int = 0) -> dict:
    r"""Discrete Adam iterates and both flows on `curved_valley` (contours), and the
    distance :math:`|\theta_n - \theta(n\eta)|` of each flow step by step."""
    lr, steps = 0.1, 50
    opt = KAdam(lr, k=1, b1=0.9, b2=0.99)
    theta0 = jnp.array([-2.0, -1.5])
    backend = "scipy" if quick else "diffrax"
    start = time.perf_counter()
    fine = np.linspace(0.0, steps, 8 * steps + 1)  # flow curves between the iterates
    runs = {}
    for order in ("leading", "corrected"):
        result = compare(
            opt, curved_valley, theta0, steps, order=order, backend=backend, rtol=RTOL, atol=ATOL
        )
        dense = integrate(
            opt,
            curved_valley,
            theta0,
            steps=steps,
            order=order,
            save_steps=fine,
            backend=backend,
            rtol=RTOL,
            atol=ATOL,
        )
        runs[order] = (result, dense.theta_flat())
    discrete = runs["leading"][0].discrete.theta_flat()

    fig, (ax, ax_err) = plt.subplots(1, 2, figsize=(13.0, 5.4), width_ratios=[1.25, 1])
    xs = np.linspace(-2.4, 3.8, 260)
    ys = np.linspace(-1.8, 1.8, 200)
    grid_x, grid_y = np.meshgrid(xs, ys)
    values = np.asarray(
        jax.vmap(jax.vmap(lambda a, b: curved_valley(jnp.array([a, b]))))(
            jnp.asarray(grid_x), jnp.asarray(grid_y)
        )
    )
    levels = np.geomspace(0.02, values.max(), 18)
    ax.contourf(grid_x, grid_y, values, levels=levels, cmap="Greys", alpha=0.55)
    ax.contour(grid_x, grid_y, values, levels=levels, colors="0.55", linewidths=0.5)
    ax.plot(*runs["leading"][1].T, color=_COLORS["leading"], lw=1.8, label="leading flow")
    ax.plot(
        *runs["corrected"][1].T,
        color=_COLORS["corrected"],
        lw=1.4,
        ls="--",
        label="corrected flow",
    )
    ax.plot(*discrete.T, "o", ms=4.5, mfc="white", mec="k", mew=1.0, label="discrete Adam")
    ax.plot(*discrete[0], "k*", ms=12, label=r"$\theta_0$")
    # Zoom on the last iterates, where the leading flow has drifted by O(η).
    end = discrete[-1]
    half = 2.0 * runs["leading"][0].final_error
    zoom = ax.inset_axes([0.6, 0.05, 0.37, 0.37])
    zoom.plot(*runs["leading"][1].T, color=_COLORS["leading"], lw=1.8)
    zoom.plot(*runs["corrected"][1].T, color=_COLORS["corrected"], lw=1.4, ls="--")
    zoom.plot(*discrete.T, "o", ms=5, mfc="white", mec="k", mew=1.0)
    zoom.set_xlim(end[0] - half, end[0] + half)
    zoom.set_ylim(end[1] - half, end[1] + half)
    zoom.set_title(f"zoom on the last steps ({2 * half:.2f} wide)", fontsize=8)
    zoom.tick_params(labelsize=7)
    ax.indicate_inset_zoom(zoom, edgecolor="0.3")
    ax.set_xlabel(r"$\theta_1$")
    ax.set_ylabel(r"$\theta_2$")
    ax.set_title(
        f"Adam(η = {lr}, β₁ = 0.9, β₂ = 0.99), {steps} steps on ½[(x−3)² + 6(y − sin x)²]",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=9)

    n = runs["leading"][0].steps
    summary: dict[str, Any] = {}
    for order, (result, _) in runs.items():
        ax_err.semilogy(n[1:], result.error[1:], color=_COLORS[order], marker=".", label=order)
        summary[f"{order}_max_error"] = result.max_error
        summary[f"{order}_final_error"] = result.final_error
    summary["corrected_validity"] = runs["corrected"][0].flow.validity
    ax_err.set_xlabel("step n")
    ax_err.set_ylabel(r"$|\theta_n - \theta(n\eta)|$")
    ax_err.set_title(
        f"distance to the iterates (max: leading {summary['leading_max_error']:.1e}, "
        f"corrected {summary['corrected_max_error']:.1e})",
        fontsize=10,
    )
    ax_err.grid(True, which="both", alpha=0.25)
    ax_err.legend()
    fig.tight_layout()
    seconds = time.perf_counter() - start
    params = {
        "loss": "curved_valley: 0.5*((x-3)^2 + 6*(y - sin x)^2)",
        "theta0": [-2.0, -1.5],
        "lr": lr,
        "b1": 0.9,
        "b2": 0.99,
        "steps": steps,
        "backend": backend,
        "rtol": RTOL,
        "atol": ATOL,
        "quick": quick,
    }
    save_figure(
        fig,
        Path(out_dir) / "trajectories.png",
        sidecar(
            params,
            seed,
            discrete=discrete,
            leading_error=runs["leading"][0].error,
            corrected_error=runs["corrected"][0].error,
            **summary,
        ),
    )
    plt.close(fig)
    return {**summary, "seconds": seconds}
