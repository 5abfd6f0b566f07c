r"""How closely the flows follow the discrete optimizer: the runs behind the figures
``convergence`` and ``trajectories`` (theory/adam.md §4, theory/corrected_flow.md).

`convergence_experiment`: error against lr at a fixed time for the leading and the
corrected flow (Adam, AdamW, 2-Adam), with fitted slopes. `trajectories_experiment`:
discrete iterates and both flows on a 2-D loss, and their distance step by step. The
drawings are `adamflow.plotting.convergence.draw_convergence` and ``draw_trajectories``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import KAdam, compare, compare_orders, fit_order, integrate
from .figures import FigureData

# The check of theory/corrected_flow.md: a 5-d coupled quadratic far from its minimum.
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


def far_quadratic(theta: Any) -> Any:
    r""":math:`\tfrac12 (\theta - c)^\top H (\theta - c)` with c = (3, -4, 5, 6, -3) and a
    fixed coupled ``H``: from θ = 0 its gradients stay between 0.4 and 10 in size over
    t ≤ 0.5, so the flows' error is the model error of theory/corrected_flow.md, not a
    vanishing gradient's."""
    d = theta - jnp.asarray(_MINIMUM)
    return 0.5 * d @ jnp.asarray(_HESSIAN) @ d


def curved_valley(theta: Any) -> Any:
    r"""A 2-D non-convex valley :math:`\tfrac12[(x-3)^2 + 6(y - \sin x)^2]`."""
    x, y = theta[0], theta[1]
    return 0.5 * ((x - 3.0) ** 2 + 6.0 * (y - jnp.sin(x)) ** 2)


def _convergence_specs() -> dict[str, KAdam]:
    return {
        "Adam": KAdam(0.01, k=1, b1=0.85, b2=0.98),
        "AdamW (λ = 0.05)": KAdam(0.01, k=1, b1=0.85, b2=0.98, weight_decay=0.05),
        "2-Adam": KAdam(0.01, k=2, b1=0.85, b2=0.98),
    }


def convergence_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    r"""Largest distance :math:`\max_{n\eta \le 0.5} |\theta_n - \theta(n\eta)|` against η,
    leading vs corrected flow (theory/adam.md §4, theory/corrected_flow.md), for Adam, AdamW
    and 2-Adam on `far_quadratic` (β₁ = 0.85, β₂ = 0.98), with the least-squares slopes
    :math:`\log e = p \log\eta + c` over all lrs and over the three smallest. The leading
    flow is first order (p ≈ 1), the corrected flow second order (p ≈ 2). (The final-time
    error alone has sign changes that make single points dip; the maximum over the path
    does not.) ``quick``: two lrs on the scipy backend. Deterministic: ``seed`` is unused.

    ``data``: ``{"lrs": [...], "fits": {spec name: {order: {"lrs", "errors", "order",
    "order_three_smallest_lrs"}, "ratio_at_lr_0.01": float}}}``; ``results``:
    ``{"results": fits}``.
    """
    lrs = CONVERGENCE_LRS[:2] if quick else CONVERGENCE_LRS
    backend = "scipy" if quick else "diffrax"  # quick: no diffrax compilation
    theta0 = jnp.zeros(5)
    results: dict[str, Any] = {}
    for name, opt in _convergence_specs().items():
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
        ratio = entry["leading"]["errors"][1] / entry["corrected"]["errors"][1]
        entry["ratio_at_lr_0.01"] = float(ratio)
        results[name] = entry
    parameters = {
        "loss": "far_quadratic (H, c in adamflow.experiments.convergence)",
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
    return FigureData({"lrs": list(lrs), "fits": results}, parameters, {"results": results})


def trajectories_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    r"""Discrete Adam(η = 0.1, β₁ = 0.9, β₂ = 0.99) iterates and both flows (leading and
    corrected, theory/adam.md §4 and theory/corrected_flow.md) from θ₀ = (-2, -1.5) on
    `curved_valley` over 50 steps, and the distance :math:`|\theta_n - \theta(n\eta)|` of
    each flow step by step. ``quick``: the scipy backend. Deterministic: ``seed`` is unused.

    ``data``: the iterates ``discrete`` (K+1, 2), the flows saved 8 times per step
    (``leading_path``, ``corrected_path``), ``steps``, both distances, the final distance of
    the leading flow, the loss on a grid (``grid_x``, ``grid_y``, ``values``), ``lr`` and
    ``n_steps``; ``results``: the iterates, both distances and their max/final values.
    """
    lr, steps = 0.1, 50
    opt = KAdam(lr, k=1, b1=0.9, b2=0.99)
    theta0 = jnp.array([-2.0, -1.5])
    backend = "scipy" if quick else "diffrax"
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

    grid_x, grid_y = np.meshgrid(np.linspace(-2.4, 3.8, 260), np.linspace(-1.8, 1.8, 200))
    values = np.asarray(
        jax.vmap(jax.vmap(lambda a, b: curved_valley(jnp.array([a, b]))))(
            jnp.asarray(grid_x), jnp.asarray(grid_y)
        )
    )
    summary: dict[str, Any] = {}
    for order, (result, _) in runs.items():
        summary[f"{order}_max_error"] = result.max_error
        summary[f"{order}_final_error"] = result.final_error
    summary["corrected_validity"] = runs["corrected"][0].flow.validity
    data = {
        "discrete": discrete,
        "leading_path": runs["leading"][1],
        "corrected_path": runs["corrected"][1],
        "steps": np.asarray(runs["leading"][0].steps),
        "leading_error": np.asarray(runs["leading"][0].error),
        "corrected_error": np.asarray(runs["corrected"][0].error),
        "leading_final_error": summary["leading_final_error"],
        "leading_max_error": summary["leading_max_error"],
        "corrected_max_error": summary["corrected_max_error"],
        "grid_x": grid_x,
        "grid_y": grid_y,
        "values": values,
        "lr": lr,
        "n_steps": steps,
    }
    parameters = {
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
    results = {
        "discrete": discrete,
        "leading_error": runs["leading"][0].error,
        "corrected_error": runs["corrected"][0].error,
        **summary,
    }
    return FigureData(data, parameters, results)
