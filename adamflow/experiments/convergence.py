r"""How closely the flows follow the discrete optimizer: the runs behind the figures
``convergence`` and ``trajectories`` (theory/adam.md §4, theory/corrected_flow.md).

`convergence_experiment`: error against lr at a fixed time for the leading and the
corrected flow (Adam, AdamW, 2-Adam), with fitted orders over all lrs and over the
asymptotic range (`asymptotic_fit`), and the expansion of the leading flow's error in η
that explains the pre-asymptotic stretch. `trajectories_experiment`: discrete iterates and
both flows on a 2-D loss, and their distance step by step. The drawings are
`adamflow.plotting.convergence.draw_convergence` and ``draw_trajectories``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import KAdam, compare, fit_order, integrate
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
#: The leading flow's lrs: 0.02 halved 13 times (down to 2.44e-6, 204 800 steps to t = 0.5).
#: Its error is η e₁ + η² e₂ + … with a small e₁ on this loss, so it reaches its asymptotic
#: order only below ~1e-4 (Adam, AdamW).
LEADING_LRS = tuple(0.02 / 2**k for k in range(14))
#: The corrected flow's lrs (0.02 … 6.25e-4): it is already second order there, and below
#: them its error (< 1e-8) would approach the solver tolerance.
CORRECTED_LRS = LEADING_LRS[:6]
QUICK_LRS = (0.02, 0.01)
RTOL, ATOL = 1e-11, 1e-13
#: Errors below this are recorded but not fitted: at lr 1.22e-6 (4·10⁵ steps) rounding
#: added ~2e-12 to 2-Adam's leading error, so the smallest lr kept is 2.44e-6.
ERROR_FLOOR = 1e-11
#: `asymptotic_fit`: the local slopes of the fitted range agree to within this.
SLOPE_TOL = 0.05
#: The expansion e(η) = η e₁ + η² e₂ + η³ e₃ of the final error is fitted on lrs up to this
#: (nine lrs, 6.25e-4 … 2.44e-6; Adam's and AdamW's e₁, e₂ agree to 0.3% for any cut
#: from 1.25e-3 down to 1.56e-4).
EXPANSION_LR_MAX = 0.000625


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


ADAM, ADAMW, KADAM2 = "Adam", "AdamW (λ = 0.05)", "2-Adam"


def _convergence_specs() -> dict[str, KAdam]:
    return {
        ADAM: KAdam(0.01, k=1, b1=0.85, b2=0.98),
        ADAMW: KAdam(0.01, k=1, b1=0.85, b2=0.98, weight_decay=0.05),
        KADAM2: KAdam(0.01, k=2, b1=0.85, b2=0.98),
    }


def local_slopes(lrs: Sequence[float], errors: Sequence[float]) -> list[float]:
    r"""Slopes :math:`\Delta\log e / \Delta\log\eta` between consecutive points."""
    log_lr, log_err = np.log(np.asarray(lrs, float)), np.log(np.asarray(errors, float))
    return (np.diff(log_err) / np.diff(log_lr)).tolist()


def asymptotic_fit(
    lrs: Sequence[float],
    errors: Sequence[float],
    *,
    tol: float = SLOPE_TOL,
    min_lrs: int = 3,
    floor: float = ERROR_FLOOR,
) -> dict[str, Any]:
    r"""The order fitted where the error is asymptotic: over the longest run of the smallest
    lrs whose local slopes (`local_slopes`) agree to within ``tol`` (max − min), at least
    ``min_lrs`` points (all of them if fewer); errors below ``floor`` are left out.

    Returns ``{"order", "constant", "lr_max", "lr_min", "n_lrs"}`` of
    :math:`e \approx C\eta^p` fitted on that range (`adamflow.fit_order`).
    """
    pairs = sorted(
        ((lr, err) for lr, err in zip(lrs, errors, strict=True) if err >= floor),
        reverse=True,
    )
    if len(pairs) < 2:
        raise ValueError(f"need two errors above {floor:g} to fit an order, got {pairs}")
    lr_arr = np.array([lr for lr, _ in pairs])
    err_arr = np.array([err for _, err in pairs])
    slopes = local_slopes(lr_arr.tolist(), err_arr.tolist())
    start = len(slopes) - 1  # the range's first slope
    while start > 0:
        window = slopes[start - 1 :]
        if max(window) - min(window) > tol:
            break
        start -= 1
    first = min(start, max(len(pairs) - min_lrs, 0))  # first point of the fitted range
    fit = fit_order(lr_arr[first:].tolist(), err_arr[first:].tolist())
    return {
        "order": fit.order,
        "constant": fit.constant,
        "lr_max": float(lr_arr[first]),
        "lr_min": float(lr_arr[-1]),
        "n_lrs": len(pairs) - first,
    }


def error_expansion(
    lrs: Sequence[float], final_errors: Sequence[Any], *, lr_max: float = EXPANSION_LR_MAX
) -> dict[str, Any] | None:
    r"""The final error vector :math:`\theta_K - \theta(K\eta)` expanded in η:
    :math:`e(\eta) = \eta e_1 + \eta^2 e_2 + \eta^3 e_3`, least squares on
    :math:`e/\eta` over the lrs up to ``lr_max`` (``None`` with fewer than four).

    Returns ``e1``, ``e2``, their lengths, their cosine and the cancellation lr
    :math:`\eta^* = -e_1\cdot e_2/|e_2|^2` where :math:`\eta e_1 + \eta^2 e_2` is shortest
    (``None`` where ``|e₁|`` is below ``e1_resolution`` = `ERROR_FLOOR` / smallest lr, the
    size rounding gives it; η* also ``None`` if the terms do not oppose), and the lr range.
    """
    rows = [(lr, np.asarray(e, float)) for lr, e in zip(lrs, final_errors, strict=True)]
    rows = [(lr, e) for lr, e in rows if lr <= lr_max]
    if len(rows) < 4:
        return None
    eta = np.array([lr for lr, _ in rows])
    design = np.stack([np.ones_like(eta), eta, eta**2], axis=1)
    target = np.stack([e / lr for lr, e in rows])
    coef = np.linalg.lstsq(design, target, rcond=None)[0]
    e1, e2 = coef[0], coef[1]
    n1, n2 = float(np.linalg.norm(e1)), float(np.linalg.norm(e2))
    cancel = float(-(e1 @ e2) / n2**2)
    resolution = ERROR_FLOOR / float(eta.min())
    resolved = n1 > resolution
    return {
        "e1": e1.tolist(),
        "e2": e2.tolist(),
        "e1_norm": n1,
        "e2_norm": n2,
        "cosine": float(e1 @ e2 / (n1 * n2)) if resolved else None,
        "cancellation_lr": cancel if cancel > 0 and resolved else None,
        "e1_resolution": resolution,
        "lr_max": float(eta.max()),
        "lr_min": float(eta.min()),
    }


def _error_sweep(
    opt: KAdam, lrs: Sequence[float], order: str, backend: str
) -> tuple[list[float], list[Any], Any]:
    """Max error over the path (saved every max(1, K//50) steps) at each lr, the final error
    vectors θ_K − θ(Kη), and the flow's θ(t1) at the smallest lr."""
    max_errors, finals, theta_end = [], [], None
    for lr in lrs:
        steps = round(CONVERGENCE_T1 / lr)
        result = compare(
            opt.replace(lr=lr),
            far_quadratic,
            jnp.zeros(5),
            steps,
            save_every=max(1, steps // 50),
            order=order,
            backend=backend,
            rtol=RTOL,
            atol=ATOL,
        )
        max_errors.append(result.max_error)
        flow_end = result.flow.theta_flat()[-1]
        finals.append(result.discrete.theta_flat()[-1] - flow_end)
        theta_end = flow_end
    return max_errors, finals, theta_end


def _fit_entry(lrs: Sequence[float], errors: Sequence[float]) -> dict[str, Any]:
    kept = [(lr, err) for lr, err in zip(lrs, errors, strict=True) if err >= ERROR_FLOOR]
    return {
        "lrs": list(lrs),
        "errors": list(errors),
        "order": fit_order([lr for lr, _ in kept], [err for _, err in kept]).order,
        "asymptotic": asymptotic_fit(lrs, errors),
        "local_slopes": local_slopes(lrs, errors),
    }


def convergence_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    r"""Largest distance :math:`\max_{n\eta \le 0.5} |\theta_n - \theta(n\eta)|` against η,
    leading vs corrected flow (theory/adam.md §4, theory/corrected_flow.md), for Adam, AdamW
    and 2-Adam on `far_quadratic` (β₁ = 0.85, β₂ = 0.98). The leading flow is run at
    `LEADING_LRS` (0.02 … 2.44e-6), the corrected one at `CORRECTED_LRS` (0.02 … 6.25e-4).
    Each gets the least-squares order :math:`\log e = p \log\eta + c` over all its lrs and
    over its asymptotic range (`asymptotic_fit`: the smallest lrs whose local slopes agree
    to 0.05). (The final-time error alone has sign changes that make single points dip;
    the maximum over the path does not.)

    Why the leading flow needs small lrs: its final error vector, expanded as
    :math:`\eta e_1 + \eta^2 e_2 + \eta^3 e_3` (`error_expansion`), has on this loss an
    ``e₂`` nearly opposite to ``e₁``, and ``e₁`` small (for Adam and 2-Adam; the cause of
    that is not isolated here). Above :math:`\eta^* = -e_1\cdot e_2/|e_2|^2` the O(η²)
    term dominates (order ≈ 2 just above η*), near η* the two cancel (AdamW's flat
    stretch), and only well below η* is the order 1. AdamW's
    decoupled decay, stepped by explicit Euler (:math:`\theta \leftarrow \theta -
    \eta\lambda\theta` against the flow's :math:`\dot\theta = -\lambda\theta - u`), adds
    :math:`\tfrac12\lambda(\theta(t) - \theta_0)` to ``e₁``; ``weight_decay_term`` holds
    the length of the measured AdamW − Adam difference of ``e₁`` and of that prediction.
    It makes AdamW's ``e₁`` several times Adam's and puts its η* inside the plotted lrs.

    ``quick``: lrs (0.02, 0.01) for both flows on the scipy backend.
    Deterministic: ``seed`` is unused.

    ``data`` and ``results``: ``{"fits": {spec name: {"leading": fit, "corrected": fit,
    "ratio_at_lr_0.01": float, "expansion": error_expansion(...) or None}},
    "weight_decay_term": {"measured", "predicted"} or None}``; each fit has ``lrs``,
    ``errors``, ``order`` (all lrs), ``asymptotic`` (`asymptotic_fit`) and ``local_slopes``.
    """
    leading_lrs = QUICK_LRS if quick else LEADING_LRS
    corrected_lrs = QUICK_LRS if quick else CORRECTED_LRS
    backend = "scipy" if quick else "diffrax"  # quick: no diffrax compilation
    specs = _convergence_specs()
    fits: dict[str, Any] = {}
    theta_end: dict[str, Any] = {}
    for name, opt in specs.items():
        lead_errors, finals, theta_end[name] = _error_sweep(opt, leading_lrs, "leading", backend)
        corr_errors, _, _ = _error_sweep(opt, corrected_lrs, "corrected", backend)
        expansion = error_expansion(leading_lrs, finals)
        fits[name] = {
            "leading": _fit_entry(leading_lrs, lead_errors),
            "corrected": _fit_entry(corrected_lrs, corr_errors),
            "ratio_at_lr_0.01": float(
                lead_errors[leading_lrs.index(0.01)] / corr_errors[corrected_lrs.index(0.01)]
            ),
            "expansion": expansion,
        }
    decay_term = None
    adam, adamw = fits[ADAM]["expansion"], fits[ADAMW]["expansion"]
    if adam is not None and adamw is not None:
        displacement = np.linalg.norm(theta_end[ADAMW])  # θ₀ = 0
        decay_term = {
            "measured": float(np.linalg.norm(np.subtract(adamw["e1"], adam["e1"]))),
            "predicted": float(0.5 * specs[ADAMW].weight_decay * displacement),
        }
    parameters = {
        "loss": "far_quadratic (H, c in adamflow.experiments.convergence)",
        "theta0": [0.0] * 5,
        "b1": 0.85,
        "b2": 0.98,
        "t1": CONVERGENCE_T1,
        "leading_lrs": list(leading_lrs),
        "corrected_lrs": list(corrected_lrs),
        "metric": "max over the path (save every max(1, K//50) steps)",
        "backend": backend,
        "rtol": RTOL,
        "atol": ATOL,
        "error_floor": ERROR_FLOOR,
        "slope_tol": SLOPE_TOL,
        "expansion_lr_max": EXPANSION_LR_MAX,
        "quick": quick,
    }
    results = {"fits": fits, "weight_decay_term": decay_term}
    return FigureData(results, parameters, results)


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
