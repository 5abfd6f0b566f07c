r"""The first-order corrected flow, by Taylor matching of one-step maps
(theory/corrected_flow.md §1).

`corrected_flow` matches, order by order in the learning rate :math:`\eta`, the discrete
one-step maps of a moment and of the parameters with the flow maps over one step, and so
derives the lags :math:`\delta_{\beta_1}`, :math:`\delta'_{\beta_1}` and the corrected
parameter velocity; `lag_functions` turns the lags into accurate NumPy functions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import sympy as sp

from .. import rules
from ._derivation import Derivation, Step, eq, lhs_eq
from ._symbols import B1, SYMPY_OPS, expr, plain, pos, real


class _MomentMatch(NamedTuple):
    drive: sp.Expr
    flow_drive: sp.Expr
    flow_map: sp.Expr
    order1_start: sp.Expr
    lag_start: sp.Expr
    rest_start: sp.Expr
    order1_end: sp.Expr
    lag_end: sp.Expr


def _match_moment() -> _MomentMatch:
    """Match the moment's one-step maps; drive read at the start or at the end of the step."""
    b1, eta, ell = pos(B1), pos("eta"), pos("ell")
    sigma = pos("sigma")
    m, x, xdot, xddot = real("m"), real("x"), real("xdot"), real("xddot")
    d = real("d")
    # The drive x(t + sigma) is smooth on the slow scale: Taylor to second order in sigma.
    # The flow's drive lags by delta = d * eta (d unknown).
    drive = x + sigma * xdot + sigma**2 / 2 * xddot
    flow_drive = drive - d * eta * sp.diff(drive, sigma)
    a = ell / eta  # the exact rate, b1 = e^{-ell}, with ell = ln(1/b1) fixed as eta -> 0
    kernel = a * sp.exp(-a * (eta - sigma))
    # Exact solution of m' = a (drive - m) over one step (variation of constants).
    flow_map = sp.expand(sp.exp(-a * eta) * m + sp.integrate(kernel * flow_drive, (sigma, 0, eta)))
    b1_of_ell = sp.exp(-ell)

    def match(read_at: sp.Expr) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
        discrete = m + rules.ema_increment(m, drive.subs(sigma, read_at), 1 - b1_of_ell)
        residual = sp.expand(flow_map - discrete)
        if residual.coeff(eta, 0) != 0:
            raise RuntimeError(f"zeroth order does not match: {residual.coeff(eta, 0)}")
        order1 = expr(sp.factor(residual.coeff(eta, 1)))
        d_value = expr(sp.solve(order1, d)[0])
        order2 = expr(sp.factor(sp.simplify(residual.coeff(eta, 2).subs(d, d_value))))
        lag = sp.simplify(eta * d_value.subs(ell, rules.decay_per_step(b1, SYMPY_OPS)))
        return order1, lag, order2

    order1_start, lag_start, rest_start = match(sp.Integer(0))
    order1_end, lag_end, _ = match(eta)
    if sp.simplify(lag_end - (lag_start - eta)) != 0:
        raise RuntimeError("the upper-level lead is not delta_b1 - eta")
    return _MomentMatch(
        drive, flow_drive, flow_map, order1_start, lag_start, rest_start, order1_end, lag_end
    )


class _ParameterMatch(NamedTuple):
    ansatz: sp.Expr
    order2: sp.Expr
    coefficients: dict[sp.Symbol, sp.Expr]
    velocity: sp.Expr
    leading: sp.Expr


def _match_parameters() -> _ParameterMatch:
    r"""Match :math:`\theta_n = \theta + \eta\,v(u(t+\eta), \theta)` with the flow map of
    :math:`\dot\theta = v(u, \theta) + \eta(c_1 \dot u + c_2 u + c_3\theta)`."""
    eta, lam = pos("eta"), pos("lambda")
    t, theta, moving = real("t"), real("theta"), real("Theta")
    c1, c2, c3 = sp.symbols("c_1:4", real=True)
    u_t = sp.Function("u")(t)
    u_dot = sp.diff(u_t, t)
    field = rules.parameter_velocity(u_t, moving, lam) + eta * (c1 * u_dot + c2 * u_t + c3 * moving)
    # Flow map to O(eta^3): theta + eta F + eta^2/2 dF/dt, with dF/dt = dF/dt + dF/dtheta F.
    total_dt = sp.diff(field, t) + sp.diff(field, moving) * field
    flow_map = (moving + eta * field + eta**2 / 2 * total_dt).subs(moving, theta)
    u_end = sp.Add(
        *(sp.diff(u_t, t, order) * eta**order / sp.factorial(order) for order in range(3))
    )
    discrete = theta + eta * rules.parameter_velocity(u_end, theta, lam)
    residual = sp.expand(flow_map - discrete)
    if residual.coeff(eta, 1) != 0:
        raise RuntimeError("first order of the parameter map does not match")
    order2 = residual.coeff(eta, 2)
    u, udot = real("u"), real("udot")
    in_symbols = sp.expand(order2.subs(u_dot, udot).subs(u_t, u))
    equations = [in_symbols.coeff(udot), in_symbols.coeff(u), in_symbols.coeff(theta)]
    if sp.expand(in_symbols - sum(e * s for e, s in zip(equations, (udot, u, theta)))) != 0:
        raise RuntimeError("the O(eta^2) mismatch is not linear in (udot, u, theta)")
    solutions = sp.solve(equations, [c1, c2, c3], dict=True)
    assert isinstance(solutions, list) and solutions, "a linear system with a unique solution"
    coefficients: dict[sp.Symbol, sp.Expr] = solutions[0]
    leading = rules.parameter_velocity(u, theta, lam)
    velocity = sp.expand((leading + eta * (c1 * udot + c2 * u + c3 * theta)).subs(coefficients))
    return _ParameterMatch(field.subs(moving, theta), order2, coefficients, velocity, leading)


@functools.cache
def corrected_flow() -> Derivation:
    r"""Derive the first-order corrected flow (theory/corrected_flow.md §1) by matching, order
    by order in :math:`\eta`, the one-step discrete map with the flow map over one step:
    :math:`\delta_{\beta_1} = \eta(1/(1-\beta_1) - 1/\ln(1/\beta_1))` (drive at the start of
    the step), :math:`\delta'_{\beta_1} = \eta(\beta_1/(1-\beta_1) - 1/\ln(1/\beta_1))`
    (drive at its end), and
    :math:`\dot\theta = -(u + (\eta/2)\dot u + \lambda(\theta - (\eta/2)\dot\theta_0))`.
    Results: ``delta_b1``, ``delta_prime_b1`` (in ``beta_1``, ``eta``; the second moment's
    lags are the same expressions in ``beta_2``), ``theta_velocity`` (in ``u``, ``udot``,
    ``theta``, ``lambda``, ``eta``) and ``lag_remainder``.

    Returns
    -------
    Derivation
        Its steps and the results above. Cached: derived once per process.

    Raises
    ------
    RuntimeError
        A check of the matching fails (an order that should agree does not, or the
        upper-level lead is not :math:`\delta_{\beta_1} - \eta`).

    Examples
    --------
    >>> import sympy as sp
    >>> from adamflow.symbolic import corrected_flow
    >>> results = corrected_flow().results
    >>> b1, eta = sp.symbols("beta_1 eta")  # ln(1/b1) = -ln(b1):
    >>> sp.simplify(results["delta_b1"] - eta * (1 / (1 - b1) + 1 / sp.log(b1))) == 0
    True
    >>> sp.simplify(results["delta_prime_b1"] - (results["delta_b1"] - eta)) == 0
    True
    """
    b1, eta = pos(B1), pos("eta")
    mm = _match_moment()
    pm = _match_parameters()
    limits = {
        name: (sp.limit(lag / eta, b1, 1), sp.limit(lag / eta, b1, 0))
        for name, lag in (("start", mm.lag_start), ("end", mm.lag_end))
    }
    t = real("t")
    gdot = sp.diff(sp.Function("g")(sp.Function("theta")(t)), t)
    # Second moment: drive g^2; the squared lagged drive agrees with the lagged square to O(eta).
    g, gdot_sym, lag_b2 = real("g"), real("gdot"), real("delta_b2")
    square_rest = sp.expand(
        (g - lag_b2 * gdot_sym) ** 2 - (g**2 - lag_b2 * sp.diff(g**2, g) * gdot_sym)
    )
    delta, delta_prime = sp.Symbol("delta_b1"), sp.Symbol("deltaprime_b1")
    steps = (
        Step(
            "Over one step $[t, t+\\eta]$ the drive $x$ of a moment varies on the slow scale; "
            "Taylor-expand it in the step time $\\sigma$. Let the flow's drive lag by "
            "$\\delta = d\\,\\eta$ ($d$ unknown), and keep $\\ell = \\ln(1/\\beta_1)$ fixed with "
            "the exact rate $a = \\ell/\\eta$ (shown for the first moment; the second moment "
            "is the same with $\\beta_2$):",
            (lhs_eq("x(t+\\sigma)", mm.drive), lhs_eq("\\tilde x(t+\\sigma)", mm.flow_drive)),
        ),
        Step(
            "The flow map of $\\dot m = a(\\tilde x - m)$ over the step is exact (variation of "
            "constants, `sympy.integrate`):",
            (lhs_eq("m(t+\\eta)", sp.collect(mm.flow_map, pos("eta"))),),
        ),
        Step(
            "Level 1 reads its drive at the start of the step ($g_n = g(\\theta_{n-1})$): "
            "$m_n = m + (1-\\beta_1)(x(t) - m)$ (`rules.ema_increment`). The $O(\\eta^0)$ "
            "terms agree; the $O(\\eta)$ coefficient of the difference must vanish:",
            (lhs_eq("[\\eta^1]", mm.order1_start), eq(delta, mm.lag_start)),
        ),
        Step(
            "The mismatch left is $O(\\eta^2)$: a second-order local error.",
            (lhs_eq("[\\eta^2]", mm.rest_start),),
        ),
        Step(
            "Levels $i \\ge 2$ read the output of the level below at the end of the step, "
            "$m_n = m + (1-\\beta_1)(x(t+\\eta) - m)$; the same matching gives a lead, "
            "$\\delta'_{\\beta_1} = \\delta_{\\beta_1} - \\eta < 0$ (checked by sympy):",
            (lhs_eq("[\\eta^1]", mm.order1_end), eq(delta_prime, mm.lag_end)),
        ),
        Step(
            "Limits as $\\beta_1 \\to 1$ and $\\beta_1 \\to 0$:",
            (
                (
                    eq(sp.Limit(delta / eta, b1, 1), limits["start"][0]),
                    eq(sp.Limit(delta / eta, b1, 0), limits["start"][1]),
                ),
                (
                    eq(sp.Limit(delta_prime / eta, b1, 1), limits["end"][0]),
                    eq(sp.Limit(delta_prime / eta, b1, 0), limits["end"][1]),
                ),
            ),
        ),
        Step(
            "Level 1's drive is $g(\\theta(t))$; its rate is the Jacobian-vector product of the "
            "gradient along the leading velocity, $\\dot g = H(\\theta)\\,\\dot\\theta_0$:",
            (eq(sp.Symbol("gdot"), gdot),),
        ),
        Step(
            "The second moment is driven by $g^2$, with the lag $\\delta_{\\beta_2}$ (the same "
            "formula in $\\beta_2$). The lagged drive $g^2 - \\delta_{\\beta_2}\\,d(g^2)/dt$ and "
            "the square $(g - \\delta_{\\beta_2}\\dot g)^2$, which keeps $v \\ge 0$, differ at "
            "$O(\\delta^2) = O(\\eta^2)$:",
            (
                lhs_eq(
                    "(g - \\delta_{\\beta_2}\\dot g)^2 - (g^2 - 2\\delta_{\\beta_2} g\\dot g)",
                    square_rest,
                ),
            ),
        ),
        Step(
            "Parameters: the discrete step applies the update of the end of the step, "
            "$\\theta_n = \\theta + \\eta\\,v(u(t+\\eta), \\theta)$ "
            "(`rules.parameter_velocity`). The flow map of $\\dot\\theta = F$ is "
            "$\\theta + \\eta F + (\\eta^2/2)\\,dF/dt + O(\\eta^3)$. With the ansatz $F$ below, "
            "the $O(\\eta)$ terms agree and the $O(\\eta^2)$ mismatch must vanish for all "
            "$u, \\dot u, \\theta$:",
            (
                eq(sp.Symbol("F"), pm.ansatz),
                lhs_eq("[\\eta^2]", pm.order2),
                tuple(eq(key, value) for key, value in pm.coefficients.items()),
            ),
        ),
        Step(
            "The corrected parameter velocity, with $\\dot\\theta_0$ the leading one:",
            (
                eq(sp.Symbol("thetadot"), sp.collect(pm.velocity, pos("eta"))),
                eq(sp.Symbol("thetadot_0"), pm.leading),
            ),
        ),
        Step(
            "Together: level 1 is driven by $g - \\delta_{\\beta_1} \\dot g$ and "
            "$(g - \\delta_{\\beta_2} \\dot g)^2$, levels $i\\ge2$ by "
            "$u^{(i-1)} - \\delta'\\,\\dot u^{(i-1)}$ (with that level's factors); $u$ in the "
            "parameter equation is the bias-corrected update and $\\dot u$ its total derivative "
            "along the corrected flow (its tangent must be the corrected $\\dot m$, $\\dot v$).",
        ),
        Step(
            "The expansion assumes that every drive varies slowly over one step. A coordinate "
            "whose gradient is small against its change, $|g| \\lesssim \\eta|\\dot g|$, "
            "changes by $O(1)$ in one step, which no expansion in $\\eta$ captures: there the "
            "corrected flow is no better than the leading one for that coordinate. How much "
            "of a run is in that regime, the root mean square of $\\eta|\\dot g|/|g|$ over "
            "the coordinates, predicts the corrected flow's gain over the leading one "
            "(corrected_validity.md).",
        ),
    )
    results = {
        "delta_b1": mm.lag_start,
        "delta_prime_b1": mm.lag_end,
        "theta_velocity": pm.velocity,
        "lag_remainder": mm.rest_start,
    }
    return Derivation("corrected_flow", "The first-order corrected flow", steps, plain(results))


class Lags(NamedTuple):
    r"""NumPy functions ``f(factor, lr)`` of the corrected flow's lags: ``first_level`` is
    :math:`\delta_{\beta_1}` (with ``factor = b1``; ``factor = b2`` gives
    :math:`\delta_{\beta_2}`), ``upper_levels`` is :math:`\delta'_{\beta_1}` (levels
    ``i >= 2``).

    Attributes
    ----------
    first_level : Callable[[Any, Any], Any]
        :math:`\delta_{\beta}(\beta, \eta)` of level 1, ``f(factor, lr)``.
    upper_levels : Callable[[Any, Any], Any]
        :math:`\delta'_{\beta}(\beta, \eta)` of levels ``i >= 2``, ``f(factor, lr)``.

    Examples
    --------
    >>> from adamflow.symbolic import Lags, lag_functions
    >>> lags = lag_functions()
    >>> isinstance(lags, Lags), round(float(lags.upper_levels(0.9, 0.01)), 8)
    (True, -0.00491222)
    """

    first_level: Callable[[Any, Any], Any]
    upper_levels: Callable[[Any, Any], Any]


@functools.cache
def lag_functions() -> Lags:
    r"""`sympy.lambdify` of the derived lags (theory/corrected_flow.md §1):
    :math:`\delta_{\beta_1}(\beta_1, \eta)` and :math:`\delta'_{\beta_1}(\beta_1, \eta)`,
    vectorised NumPy functions of ``(factor, lr)`` for an EMA factor ``0 < factor < 1``.

    The expressions are evaluated in :math:`x = 1-\beta_1` with ``log1p(-x)`` for
    :math:`\ln\beta_1`, which keeps the relative error near :math:`10^{-16}/(1-\beta_1)`
    (the two terms cancel as :math:`\beta_1 \to 1`).

    Returns
    -------
    Lags
        ``first_level`` and ``upper_levels``, each ``f(factor, lr)`` broadcasting NumPy
        arrays. Cached: made once per process.

    Raises
    ------
    RuntimeError
        A check of `corrected_flow` fails.

    Examples
    --------
    :math:`\delta_{\beta_1} = \eta(1/(1-\beta_1) - 1/\ln(1/\beta_1))`, which tends to
    :math:`\eta/2` as :math:`\beta_1 \to 1`:

    >>> import numpy as np
    >>> from adamflow.symbolic import lag_functions
    >>> lag = lag_functions().first_level
    >>> round(float(lag(0.9, 0.01)), 8), round(float(0.01 * (1 / 0.1 - 1 / np.log(1 / 0.9))), 8)
    (0.00508778, 0.00508778)
    >>> [round(float(x), 4) for x in lag(np.array([0.999, 1 - 1e-9]), 1.0)]
    [0.5001, 0.5]
    """
    from sympy.codegen.cfunctions import log1p

    results = corrected_flow().results
    b1, eta, x = sp.Symbol(B1), sp.Symbol("eta"), sp.Symbol("x")

    def numeric(lag: sp.Expr) -> Callable[[Any, Any], Any]:
        in_x = lag.subs(b1, 1 - x).replace(sp.log, lambda arg: log1p(sp.expand(arg - 1)))
        function = sp.lambdify([x, eta], in_x, modules="numpy")
        return lambda factor, lr: function(1.0 - np.asarray(factor, dtype=float), lr)

    return Lags(numeric(results["delta_b1"]), numeric(results["delta_prime_b1"]))
