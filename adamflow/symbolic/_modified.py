r"""The corrected flows of every order, by matching one-step maps on exponential sequences
(theory/corrected_flow.md §2), and their relation to Cattaneo, Klusowski & Shigida's
modified equation for Adam (theory/corrected_flow.md §3).

Backward error analysis for a one-step method matches the method's map with a flow map
order by order. Here every map is linear in what it averages or sums, so it is matched on
exponential sequences :math:`x_n = e^{z n}` (:math:`z = \eta s`), and the flow's drive
becomes an operator :math:`P(\eta\,d/dt)` -- a power series whose truncation at
:math:`z^p` is the order-p flow:

- a bias-corrected moment of step n averages :math:`x` over the n steps so far; its
  exponential flow kernel over the same window gives the same average exactly when the
  drive is :math:`P(\eta\,d/dt)\,x` with :math:`P(z)` the ratio of the two generating
  functions -- and the ratio does not depend on n (sympy checks it), so one operator
  serves every step, bias correction included;
- the parameters sum the updates at step ends and the decay at step starts:
  :math:`Q_R(z) = z/(1-e^{-z})` and :math:`Q_L(z) = z/(e^z-1)` (Euler--Maclaurin).

`modified_coefficients` returns their Taylor coefficients up to any order; order 1
reproduces the lags that `corrected_flow` derives by Taylor matching.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import sympy as sp

from ._derivation import Derivation, Step, eq, lhs_eq
from ._symbols import B1, Rule, expr, plain, pos, real


def _generic(value: Any) -> sp.Expr:
    """The general branch of a geometric sum or integral (sympy returns a Piecewise with a
    branch for the ratio-one case)."""
    folded: Any = sp.piecewise_fold(value)
    if not isinstance(folded, sp.Piecewise):
        return expr(folded)
    branches: list[Any] = [tuple(pair.args) for pair in folded.args]
    for branch, condition in branches:
        if isinstance(condition, sp.Ne):
            return expr(branch)
    return expr(next(branch for branch, condition in branches if condition == sp.true))


class _Multipliers(NamedTuple):
    start: sp.Expr  # P(z), drive read at the start of the step (level 1)
    end: sp.Expr  # P(z), drive read at the end of the step (levels >= 2)
    right: sp.Expr  # Q_R(z): the updates u_n summed at step ends
    left: sp.Expr  # Q_L(z): the weight decay on theta_{n-1}, step starts


@functools.cache
def _multipliers() -> tuple[_Multipliers, dict[str, sp.Expr]]:
    b1, z, n = pos(B1), real("z"), pos("n")
    ell = -sp.log(b1)  # a = ell/eta, the exact-decay rate
    shown: dict[str, sp.Expr] = {}

    def moment(offset: int) -> sp.Expr:
        # Discrete: m̂_n = Σ_{j<n} (1-b1) b1^j x_{n-offset-j} / (1-b1^n), x_k = e^{z k}.
        j = sp.Symbol("j", integer=True, nonnegative=True)
        w = pos("w")  # e^{-z}, so that sympy sees a geometric sum
        discrete = _generic(sp.summation((1 - b1) * b1**j * w ** (j + offset), (j, 0, n - 1)))
        discrete = sp.simplify(discrete.subs(w, sp.exp(-z)) / (1 - b1**n))
        # Flow: m̂(nη) = ∫_0^{nη} a e^{-a s} x(nη - s) ds / (1 - e^{-a nη}), x = e^{z τ/η}
        # (σ = s/η in step units).
        sigma = pos("sigma")
        flow = _generic(sp.integrate(ell * sp.exp(-(ell + z) * sigma), (sigma, 0, n)))
        flow = sp.simplify(flow / (1 - sp.exp(-ell * n)))
        ratio = sp.simplify(sp.powsimp(sp.expand_power_exp(discrete / flow), force=True))
        if sp.simplify(sp.diff(ratio, n)) != 0:
            raise RuntimeError("the drive multiplier depends on the window length")
        shown[f"discrete_{offset}"], shown[f"flow_{offset}"] = discrete, flow
        return sp.simplify(ratio)

    # Parameters: Σ_{k=1}^{n} η e^{z k} (updates at step ends) and Σ_{k=0}^{n-1} (step
    # starts) against ∫_0^{nη} e^{z τ/η} dτ.
    k = sp.Symbol("k", integer=True, nonnegative=True)
    w = pos("w")  # e^{z}
    integral = (sp.exp(z * n) - 1) / z
    right = _generic(sp.summation(w**k, (k, 1, n))).subs(w, sp.exp(z))
    left = _generic(sp.summation(w**k, (k, 0, n - 1))).subs(w, sp.exp(z))
    right, left = (sp.simplify(sp.powsimp(v / integral, force=True)) for v in (right, left))
    for name, value in (("right", right), ("left", left)):
        if sp.simplify(sp.diff(value, n)) != 0:
            raise RuntimeError(f"the {name} sum multiplier depends on n")
    return _Multipliers(moment(1), moment(0), right, left), shown


class ModifiedCoefficients(NamedTuple):
    r"""Taylor coefficients :math:`c_0..c_p` (``c_j`` multiplies :math:`\eta^j d^j/dt^j`) of
    the order-p corrected flow: ``start``/``end`` are sympy expressions in ``beta_1`` (use
    ``beta_2`` for second moments) for drives read at step starts (level 1) and ends
    (levels ≥ 2); ``right``/``left`` are numbers, for the updates and the weight decay.

    Attributes
    ----------
    start : tuple[sympy.Expr, ...]
        :math:`c_0..c_p` of :math:`P(z)` for a drive read at step starts (level 1).
    end : tuple[sympy.Expr, ...]
        The same for a drive read at step ends (levels ≥ 2).
    right : tuple[sympy.Expr, ...]
        The coefficients of :math:`Q_R(z) = z/(1-e^{-z})` (the updates).
    left : tuple[sympy.Expr, ...]
        The coefficients of :math:`Q_L(z) = z/(e^z-1)` (the weight decay).

    Notes
    -----
    The ``beta_1`` of ``start`` and ``end`` is the positive Symbol
    ``sympy.Symbol("beta_1", positive=True)``, not the assumption-free one of the other
    results.

    Examples
    --------
    >>> from adamflow.symbolic import modified_coefficients
    >>> coefficients = modified_coefficients(2)
    >>> coefficients.right, coefficients.left
    ((1, 1/2, 1/12), (1, -1/2, 1/12))
    """

    start: tuple[sp.Expr, ...]
    end: tuple[sp.Expr, ...]
    right: tuple[sp.Expr, ...]
    left: tuple[sp.Expr, ...]


@functools.cache
def modified_coefficients(order: int) -> ModifiedCoefficients:
    r"""The coefficients of the order-``order`` corrected flow (theory/corrected_flow.md §2):
    the series of :math:`P(z) = \frac{(1-\beta_1) e^{-z\,o}}{1-\beta_1 e^{-z}}
    \cdot\frac{\ell + z}{\ell}` (:math:`\ell = \ln(1/\beta_1)`, offset o = 1 at level 1,
    0 above), of :math:`Q_R(z) = z/(1-e^{-z})` and of :math:`Q_L(z) = z/(e^z-1)`, each
    derived from the one-step maps by `_multipliers`, to :math:`z^{order}`.

    Parameters
    ----------
    order : int
        The order p of the corrected flow (>= 0; 0 is the leading flow).

    Returns
    -------
    ModifiedCoefficients
        ``order + 1`` coefficients of each series. Cached per ``order``.

    Raises
    ------
    ValueError
        ``order`` < 0.
    TypeError
        ``order`` not an integer.
    RuntimeError
        A check of the matching fails (a multiplier that depends on the window length).

    Examples
    --------
    Order 1 gives the lag of `corrected_flow`, :math:`\delta_{\beta_1} = -c_1\eta`
    (``start`` is in the positive ``beta_1``):

    >>> import sympy as sp
    >>> from adamflow.symbolic import corrected_flow, modified_coefficients
    >>> c = modified_coefficients(1).start
    >>> b1, eta = sp.Symbol("beta_1", positive=True), sp.Symbol("eta")
    >>> lag = corrected_flow().results["delta_b1"].subs(sp.Symbol("beta_1"), b1)
    >>> c[0], sp.simplify(-c[1] * eta - lag) == 0
    (1, True)
    """
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}")
    multipliers, _ = _multipliers()
    z = real("z")

    def coefficients(function: sp.Expr) -> tuple[sp.Expr, ...]:
        series = sp.series(function, z, 0, order + 1).removeO()
        return tuple(sp.simplify(series.coeff(z, j)) for j in range(order + 1))

    return ModifiedCoefficients(
        coefficients(multipliers.start),
        coefficients(multipliers.end),
        coefficients(multipliers.right),
        coefficients(multipliers.left),
    )


@functools.cache
def corrected_flows() -> Derivation:
    r"""Derive the corrected flow of every order (theory/corrected_flow.md §2) by matching
    the one-step maps on exponential sequences; results ``P_start``, ``P_end``, ``Q_right``,
    ``Q_left`` and the order-2 coefficients ``order_2_start``, ``order_2_end``.

    Returns
    -------
    Derivation
        Its steps and the results above (in ``beta_1`` and ``z``). Cached.

    Raises
    ------
    RuntimeError
        A check of the matching fails (a multiplier that depends on the window length).

    Examples
    --------
    >>> from adamflow.symbolic import corrected_flows
    >>> results = corrected_flows().results
    >>> results["Q_right"], results["Q_left"]
    (z*exp(z)/(exp(z) - 1), z/(exp(z) - 1))
    """
    multipliers, shown = _multipliers()
    second = modified_coefficients(2)
    z = real("z")
    steps = (
        Step(
            "Every map of the optimizer is linear in what it averages, so match it on "
            "exponential sequences $x_k = e^{z k}$ ($z = \\eta s$). Level 1's bias-corrected "
            "first moment after $n$ steps (gradients read at step starts, `sympy.summation`) "
            "and the flow's bias-corrected moment $\\int_0^{n\\eta} a e^{-as}\\,x(n\\eta-s)\\,ds"
            "/(1-e^{-an\\eta})$ with $a = \\ell/\\eta$, $\\ell = \\ln(1/\\beta_1)$:",
            (
                lhs_eq("\\hat m_n", shown["discrete_1"]),
                lhs_eq("\\hat m(n\\eta)", shown["flow_1"]),
            ),
        ),
        Step(
            "Their ratio does not depend on $n$ (checked by sympy): one drive operator "
            "$P(\\eta\\,d/dt)$ makes the flow's moment equal the discrete one at every step, "
            "bias correction included. It holds for every window, one step included, so the "
            "flows start from the discrete state after the first step ($t = \\eta$): that "
            "state is consistent to every order, and the window $a/(1-e^{-at})$ is no longer "
            "singular there. Levels $i\\ge 2$ read their input at step ends:",
            (
                eq(sp.Symbol("P_start"), multipliers.start),
                eq(sp.Symbol("P_end"), multipliers.end),
            ),
        ),
        Step(
            "The parameters sum the updates at step ends, $\\theta_n = \\theta_0 - \\eta"
            "\\sum_{k=1}^{n} u_k - \\eta\\lambda\\sum_{k=0}^{n-1}\\theta_k$; against "
            "$\\int_0^{n\\eta}$ the multipliers are (Euler--Maclaurin):",
            (
                eq(sp.Symbol("Q_R"), multipliers.right),
                eq(sp.Symbol("Q_L"), multipliers.left),
            ),
        ),
        Step(
            "The order-$p$ corrected flow truncates each series at $z^p$ "
            "(`modified_coefficients(p)`): drives $\\tilde x = \\sum_{j\\le p} c_j "
            "\\eta^j x^{(j)}$, $d\\hat m/dt = \\frac{a}{1-e^{-at}}(\\tilde x - \\hat m)$, and "
            "$\\dot\\theta = -\\sum_{j\\le p}\\eta^j (q^R_j u^{(j)} + \\lambda q^L_j "
            "\\theta^{(j)})$, every derivative taken along the flow itself. Order 2, level 1 "
            "and levels above:",
            (
                tuple(eq(sp.Symbol(f"c_{j}"), c) for j, c in enumerate(second.start)),
                tuple(eq(sp.Symbol(f"c'_{j}"), c) for j, c in enumerate(second.end)),
            ),
        ),
        Step(
            "At order 1 the lag $-c_1\\eta$ is the $\\delta_{\\beta_1}$ (level 1) and "
            "$\\delta'_{\\beta_1}$ (above) of §1, and $Q_R$, $Q_L$ give the $\\pm\\eta/2$ "
            "terms of the parameter equation (checked by sympy).",
            (
                eq(sp.Symbol("q^R"), sp.series(multipliers.right, z, 0, 3).removeO()),
                eq(sp.Symbol("q^L"), sp.series(multipliers.left, z, 0, 3).removeO()),
            ),
        ),
    )
    results = {
        "P_start": multipliers.start,
        "P_end": multipliers.end,
        "Q_right": multipliers.right,
        "Q_left": multipliers.left,
        "order_2_start": sp.Tuple(*second.start),
        "order_2_end": sp.Tuple(*second.end),
    }
    return Derivation(
        "corrected_flows", "The corrected flows of every order", steps, plain(results)
    )


@functools.cache
def implicit_bias_comparison() -> Derivation:
    r"""Our first-order corrected flow for Adam with its moments slaved to the gradient
    (t ≫ the memories), against the modified equation of Cattaneo, Klusowski & Shigida
    ("On the Implicit Bias of Adam", ICML 2024; theory/corrected_flow.md §3).

    Per coordinate, with :math:`g` the gradient and :math:`\dot g = H\dot\theta_0`:
    eliminating :math:`\hat m \approx g - \eta\dot g/(1-\beta_1)`, :math:`\hat v \approx g^2
    - 2\eta g\dot g/(1-\beta_2)` (the stationary drive operators times the kernel) from
    :math:`\dot\theta = -(u + (\eta/2)\dot u)` gives a parameter-only equation. With ε
    inside the root (their algorithm, :math:`u = \hat m/\sqrt{\hat v+\varepsilon}`) it is
    theirs exactly: :math:`-\frac{1}{S}[g - \eta(\frac{\beta_1}{1-\beta_1} -
    \frac{\beta_2}{1-\beta_2} + \frac{1+\beta_2}{2(1-\beta_2)}\frac{\varepsilon}{S^2})
    \dot g]`, :math:`S = \sqrt{g^2+\varepsilon}`, where :math:`-\dot g =
    \partial_j\|\nabla E\|_{1,\varepsilon}`. Results: ``ours_eps_inside``, ``cks``,
    ``difference_eps_inside`` (zero), ``ours_eps_outside`` (optax's ε), ``eps_zero_gap``
    (zero: both agree at ε = 0), ``delay_window`` (the bias-corrected window's mean delay).

    Returns
    -------
    Derivation
        Its steps and the results above (in ``g``, ``gdot``, ``eta``, ``epsilon``,
        ``beta_1``, ``beta_2``, ``n``). Cached.

    Raises
    ------
    RuntimeError
        A check of the matching fails (a multiplier that depends on the window length).

    Examples
    --------
    >>> from adamflow.symbolic import implicit_bias_comparison
    >>> results = implicit_bias_comparison().results
    >>> results["difference_eps_inside"], results["eps_zero_gap"]
    (0, 0)
    """
    b1, b2, eta, eps = pos(B1), pos("beta_2"), pos("eta"), pos("epsilon")
    g, gdot, t = real("g"), real("gdot"), real("t")
    z = real("z")
    multipliers, _ = _multipliers()

    def stationary(factor: sp.Expr) -> sp.Expr:
        # Kernel times drive operator at n → ∞: the discrete EMA K_d(z), first order.
        ell = -sp.log(factor)
        kernel = ell / (ell + z)
        full = multipliers.start.subs(pos(B1), factor) * kernel
        return sp.simplify(sp.series(full, z, 0, 2).removeO().coeff(z, 1))

    c_m, c_v = stationary(b1), stationary(b2)
    gt = sp.Function("g")(t)

    def slaved(update: sp.Expr) -> sp.Expr:
        m_hat = gt + c_m * eta * sp.diff(gt, t)
        v_hat = gt**2 + c_v * eta * sp.diff(gt**2, t)
        u = update.subs({sp.Symbol("M"): m_hat, sp.Symbol("V"): v_hat})
        u0 = update.subs({sp.Symbol("M"): gt, sp.Symbol("V"): gt**2})
        velocity = -(u + eta / 2 * sp.diff(u0, t))
        series = sp.series(velocity, eta, 0, 2).removeO()
        return sp.simplify(series.subs(sp.Derivative(gt, t), gdot).subs(gt, g))

    inside = slaved(sp.Symbol("M") / sp.sqrt(sp.Symbol("V") + eps))
    outside = slaved(sp.Symbol("M") / (sp.sqrt(sp.Symbol("V")) + eps))
    s = sp.sqrt(g**2 + eps)
    cks = -(1 / s) * (
        g - eta * (b1 / (1 - b1) - b2 / (1 - b2) + (1 + b2) / (2 * (1 - b2)) * eps / s**2) * gdot
    )
    difference = sp.simplify(sp.expand(inside - cks))
    positive_g: Rule = {g: pos("g")}
    gap = sp.simplify((inside.subs(eps, 0) - outside.subs(eps, 0)).subs(positive_g))
    n = pos("n")
    j = sp.Symbol("j", integer=True, nonnegative=True)
    weights = (1 - b1) * b1**j / (1 - b1**n)
    delay = sp.simplify(_generic(sp.summation(weights * (j + 1), (j, 0, n - 1))))
    steps = (
        Step(
            "Slave the moments to the gradient (times long after the start): the drive "
            "operator times the kernel is the discrete EMA, $\\hat m \\approx g + c\\,\\eta"
            "\\dot g$ with:",
            (eq(sp.Symbol("c_m"), c_m), eq(sp.Symbol("c_v"), c_v)),
        ),
        Step(
            "Our first-order parameter equation $\\dot\\theta = -(u + \\tfrac{\\eta}{2}"
            "\\dot u)$ with $\\varepsilon$ inside the root, as Cattaneo, Klusowski & Shigida "
            "(ICML 2024) run Adam, and their modified equation for the coordinate $j$ "
            "($-\\dot g = \\partial_j\\|\\nabla E\\|_{1,\\varepsilon}$, "
            "$\\|v\\|_{1,\\varepsilon} = \\sum_i\\sqrt{v_i^2+\\varepsilon}$, along the leading "
            "flow). The paper's text was not reachable here: this is their equation as "
            "reconstructed by backward error analysis of their algorithm and checked "
            "numerically (error O(h) → O(h²)), matching their statement's terms as recalled.",
            (eq(sp.Symbol("thetadot_ours"), inside), eq(sp.Symbol("thetadot_CKS"), cks)),
        ),
        Step(
            "They are the same (the difference simplifies to zero):",
            (lhs_eq("\\dot\\theta_{ours} - \\dot\\theta_{CKS}", difference),),
        ),
        Step(
            "With $\\varepsilon$ outside the root (optax, PyTorch, this toolkit) the "
            "$\\varepsilon$ term differs; at $\\varepsilon = 0$ the two agree (gap shown, "
            "for $g > 0$):",
            (
                eq(sp.Symbol("thetadot_optax"), outside),
                lhs_eq("\\text{gap at } \\varepsilon=0", gap),
            ),
        ),
        Step(
            "Bias correction: the first $n$ gradients' normalised weights have the mean "
            "delay below (in steps). Its transient part $-n\\beta_1^n/(1-\\beta_1^n)$ is "
            "the one in their finite-$n$ coefficients; our flows carry it exactly in the "
            "window $a/(1-e^{-at})$ instead of in the coefficients.",
            (lhs_eq("\\text{mean delay}", delay),),
        ),
    )
    results = {
        "ours_eps_inside": inside,
        "cks": cks,
        "difference_eps_inside": difference,
        "ours_eps_outside": outside,
        "eps_zero_gap": gap,
        "delay_window": delay,
    }
    return Derivation(
        "implicit_bias_comparison",
        "Relation to Cattaneo, Klusowski & Shigida (ICML 2024)",
        steps,
        plain(results),
    )
