r"""The paper's Fig. 2, measured: the growth of Adam's update once a gradient switches off,
against the three continuous conventions' predictions (theory §4, §6).

The paper's claim (Eq. 6 of v2, in Adam's names): the updates stay bounded iff
:math:`C = 2(1-\beta_1)/\beta_1 - (1-\beta_2)/\beta_2 > 0`, and for :math:`C < 0` the
largest update grows at :math:`|C|/2` per step. Three conventions for the moment rates give
three boundaries and three growth rates (`adamflow.stability.log_growth`):

- exact, :math:`a = \ln(1/\beta_1)/\eta`: bounded iff :math:`\beta_2 > \beta_1^2`, growth
  :math:`\ln(\beta_1/\sqrt{\beta_2})` per step (what the discrete optimizer does exactly);
- Euler, :math:`a = (1-\beta_1)/\eta`: bounded iff :math:`\beta_2 > 2\beta_1 - 1`, growth
  :math:`(b - 2a)\eta/2 = ((1-\beta_2) - 2(1-\beta_1))/2`;
- paper, :math:`a = (1-\beta_1)/(\beta_1\eta)`: bounded iff :math:`C > 0`, growth
  :math:`-C/2`.

All measurements run discrete Adam (float64) on `adamflow.problems.switch_off`: a constant
gradient ``scale`` up to step ``n0``, zero after, so that after the switch-off
:math:`m_k = m_{n_0}\beta_1^k`, :math:`v_k = v_{n_0}\beta_2^k` and
:math:`\ln\|u\|_\infty` changes by exactly the discrete growth per step (up to the bias
corrections, settled here) until :math:`\sqrt{\hat v}` falls to ε. The gradient scale is
``GRAD_SCALE`` = 1e100 with ε = 1e-8, so :math:`\sqrt{\hat v}/\varepsilon \ge 10^{108}
(\sqrt{\beta_2})^k`: the ε cap does not stop the growth in the window of panel (b) (the
smallest :math:`\sqrt{\hat v}/\varepsilon` there is recorded as ``b_min_sqrt_v_over_eps``)
and the map's growth is measured over each cell's silent steps while
:math:`\sqrt{\hat v} \ge 10^3\varepsilon` (`adamflow.phase`; at least about 100 steps in
the fastest-decaying corner β₂ = 0.01).

Panels:

- (a) the (β₁, β₂) plane, β₁ in [0.05, 0.99] and β₂ in [0.01, 0.999] (linear grids): the
  measured growth rate per step (`adamflow.phase_diagram`'s ``growth_rate``), its zero
  contour (the measured boundary) and the three theoretical boundaries;
- (b) the slope of :math:`\ln\|u_n\|_\infty` at n = 500 (least-squares over steps
  480-520, the gradient switched off after step 400) at 64 points on the segment through
  the point of C = 0 at β₁ = 0.9 (β₂ = 0.9/1.1), along the unit normal
  :math:`\nabla C/|\nabla C|`, :math:`\nabla C = (-2/\beta_1^2, 1/\beta_2^2)`, from
  s = -0.1 (unstable side) to s = +0.1; against each convention's growth;
- (c) over the whole plane: the measured growth of the unstable cells against each
  convention's prediction (identity line).

Results: per convention, the max and median relative error of its growth prediction over
the measured-unstable cells of the map (measured growth > 0), the fraction of the map's
cells whose measured stability (sign of the measured growth) its boundary classifies
correctly, the same on the segment of (b), and the measured slope at (β₁, β₂) = (0.5, 0.1)
against 0.458 (exact) and 3.5 (|C|/2).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import Adam, cascade_step, init_state, parameter_step, problems, stability, stack_specs
from ..phase import phase_diagram
from .figures import FigureData

#: The conventions compared, in drawing order.
CONVENTIONS = ("exact", "euler", "paper")
#: Gradient size before the switch-off (so that ε never caps the growth measured).
GRAD_SCALE = 1e100
EPS = 1e-8
LR = 1e-2
#: Panel (b): switch-off step, the step where the slope is taken, the fit half-window.
B_N0, B_AT, B_HALF = 400, 500, 20
#: Panel (b): the crossing point (on C = 0 at β₁ = 0.9), half-length and number of points.
B_CROSS_B1 = 0.9
B_HALF_LENGTH = 0.1
B_POINTS = 64
#: The point far from the corner quoted in the results.
FAR_POINT = (0.5, 0.1)


def paper_c(b1: Any, b2: Any) -> np.ndarray:
    r"""The paper's :math:`C = 2(1-\beta_1)/\beta_1 - (1-\beta_2)/\beta_2` (Adam's names)."""
    b1, b2 = np.asarray(b1, dtype=np.float64), np.asarray(b2, dtype=np.float64)
    return 2.0 * (1.0 - b1) / b1 - (1.0 - b2) / b2


def normal_segment(
    b1_cross: float = B_CROSS_B1, half_length: float = B_HALF_LENGTH, points: int = B_POINTS
) -> dict[str, np.ndarray]:
    r"""``points`` points :math:`p_0 + s\,\nabla C/|\nabla C|`, s from ``-half_length`` to
    ``+half_length``, through :math:`p_0` on C = 0 at β₁ = ``b1_cross``
    (:math:`\beta_2 = \beta_1/(2-\beta_1)`); s < 0 is the unstable side (C < 0)."""
    b2_cross = b1_cross / (2.0 - b1_cross)
    grad = np.array([-2.0 / b1_cross**2, 1.0 / b2_cross**2])
    normal = grad / np.linalg.norm(grad)
    s = np.linspace(-half_length, half_length, points)
    return {
        "s": s,
        "b1": b1_cross + s * normal[0],
        "b2": b2_cross + s * normal[1],
        "cross": np.array([b1_cross, b2_cross]),
        "normal": normal,
    }


def switch_off_slopes(
    b1s: np.ndarray, b2s: np.ndarray, *, n0: int = B_N0, at: int = B_AT, half: int = B_HALF
) -> dict[str, np.ndarray]:
    r"""Discrete Adam (float64) on `adamflow.problems.switch_off` (4 coordinates, scale
    `GRAD_SCALE`, gradient off after ``n0``) at each (β₁, β₂): the least-squares slope of
    :math:`\ln\|u_n\|_\infty` over steps ``at - half .. at + half``, and the smallest
    :math:`\sqrt{\hat v}/\varepsilon` (largest coordinate) in that window."""
    problem = problems.switch_off(dim=4, n0=n0, scale=GRAD_SCALE)
    steps = at + half
    with jax.enable_x64(True):
        specs = stack_specs(
            [Adam(LR, float(b1), float(b2), EPS) for b1, b2 in zip(b1s, b2s, strict=True)]
        )
        theta0 = jnp.asarray(problem.theta0, jnp.float64)

        def run(spec: Any) -> tuple[jax.Array, jax.Array]:
            def step(carry: Any, n: jax.Array) -> Any:
                theta, state = carry
                g = problem.step_gradient(theta, jax.random.PRNGKey(0), n)
                state, u = cascade_step(spec, state, g)
                theta = parameter_step(spec, theta, u)
                v_hat = state.v[0] / (1.0 - spec.b2s[0] ** n)
                return (theta, state), (jnp.max(jnp.abs(u)), jnp.sqrt(jnp.max(v_hat)))

            numbers = jnp.arange(1, steps + 1, dtype=jnp.int32)
            _, (norms, root_v) = jax.lax.scan(step, (theta0, init_state(1, theta0)), numbers)
            return norms, root_v

        norms, root_v = jax.jit(jax.vmap(run))(specs)
        norms, root_v = np.asarray(norms), np.asarray(root_v)
    window = np.arange(at - half, at + half + 1)
    x = window - window.mean()
    logs = np.log(norms[:, window - 1])
    slope = (logs - logs.mean(axis=1, keepdims=True)) @ x / (x @ x)
    return {"slope": slope, "min_sqrt_v_over_eps": root_v[:, window - 1].min(axis=1) / EPS}


def _relative_errors(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    error = np.abs(predicted / measured - 1.0)
    return {"max": float(error.max()), "median": float(np.median(error))}


def paper_fig2_stability_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    """Panels (a)-(c) of the module docstring: a 60 × 60 map of 1500 steps (switch-off at
    1000; quick: 12 × 12, 700 steps, switch-off at 400) and the 64-point segment (both
    modes). A few seconds on two CPU cores (quick: about 3 s)."""
    size, n0, steps = (12, 400, 700) if quick else (60, 1000, 1500)
    b1s = np.linspace(0.05, 0.99, size)
    b2s = np.linspace(0.01, 0.999, size)
    diagram = phase_diagram(
        problems.switch_off(n0=n0, scale=GRAD_SCALE),
        b1s,
        b2s,
        steps=steps,
        lr=LR,
        eps=EPS,
        seed=seed,
        progress=False,
    )
    b1, b2 = np.meshgrid(b1s, b2s, indexing="ij")
    measured = np.asarray(diagram.growth_rate, dtype=np.float64)
    predicted = {c: np.asarray(stability.log_growth(b1, b2, c), np.float64) for c in CONVENTIONS}
    stable = {c: np.asarray(stability.is_stable(b1, b2, c), bool) for c in CONVENTIONS}
    known = np.isfinite(measured)
    unstable = known & (measured > 0)

    segment = normal_segment()
    slopes = switch_off_slopes(segment["b1"], segment["b2"])
    far = switch_off_slopes(np.array([FAR_POINT[0]]), np.array([FAR_POINT[1]]))
    seg_predicted = {
        c: np.asarray(stability.log_growth(segment["b1"], segment["b2"], c), np.float64)
        for c in CONVENTIONS
    }
    seg_unstable = slopes["slope"] > 0
    seg_stable = {
        c: np.asarray(stability.is_stable(segment["b1"], segment["b2"], c), bool)
        for c in CONVENTIONS
    }

    results: dict[str, Any] = {
        "map_cells": int(known.sum()),
        "map_unstable_cells": int(unstable.sum()),
        "far_point": {
            "b1": FAR_POINT[0],
            "b2": FAR_POINT[1],
            "measured_slope": float(far["slope"][0]),
            **{f"{c}_prediction": float(stability.log_growth(*FAR_POINT, c)) for c in CONVENTIONS},
        },
        "b_min_sqrt_v_over_eps": float(slopes["min_sqrt_v_over_eps"].min()),
        "b_unstable_points": int(seg_unstable.sum()),
    }
    for c in CONVENTIONS:
        errors = _relative_errors(predicted[c][unstable], measured[unstable])
        seg_errors = _relative_errors(seg_predicted[c][seg_unstable], slopes["slope"][seg_unstable])
        results[c] = {
            "map_growth_rel_error_max": errors["max"],
            "map_growth_rel_error_median": errors["median"],
            "map_classified_correctly": float(np.mean(stable[c][known] == ~unstable[known])),
            "segment_slope_rel_error_max": seg_errors["max"],
            "segment_slope_rel_error_median": seg_errors["median"],
            "segment_classified_correctly": float(np.mean(seg_stable[c] == ~seg_unstable)),
        }

    data = {
        "b1s": b1s,
        "b2s": b2s,
        "measured_growth": measured,
        "predicted_growth": predicted,
        "theory_stable": stable,
        "unstable": unstable,
        "segment": {
            **segment,
            "C": paper_c(segment["b1"], segment["b2"]),
            "slope": slopes["slope"],
            "predicted": seg_predicted,
        },
        "far_point": {
            "b1": FAR_POINT[0],
            "b2": FAR_POINT[1],
            "slope": float(far["slope"][0]),
            "predicted": {c: float(stability.log_growth(*FAR_POINT, c)) for c in CONVENTIONS},
        },
        "window": (B_N0, B_AT, B_HALF),
    }
    parameters = {
        "quick": quick,
        "seed": seed,
        "problem": "switch_off",
        "grad_scale": GRAD_SCALE,
        "eps": EPS,
        "lr": LR,
        "map": {"b1s": [0.05, 0.99, size], "b2s": [0.01, 0.999, size], "spacing": "linear"},
        "map_n0": n0,
        "map_steps": steps,
        "segment": {
            "cross_b1": B_CROSS_B1,
            "cross_b2": float(segment["cross"][1]),
            "normal": segment["normal"].tolist(),
            "half_length": B_HALF_LENGTH,
            "points": B_POINTS,
            "dim": 4,
            "n0": B_N0,
            "slope_at": B_AT,
            "fit_window": [B_AT - B_HALF, B_AT + B_HALF],
        },
    }
    return FigureData(data, parameters, results)
