r"""The edge-of-stability threshold of Adam, AdamW and k-Adam (theory/eos.md §2, §3).

`eos` linearizes the discrete step, built from the same `adamflow.rules` functions the
numerical code runs, on the quadratic :math:`L = \tfrac12 h\theta^2` with every level's
preconditioner :math:`P_i = \sqrt{\hat v_i} + \varepsilon` frozen and the bias correction at
its late-time limit 1. The step is then linear in :math:`(\theta, m_1, \dots, m_k)`; its
characteristic polynomial, the Schur-Cohn (Jury) conditions on it and their boundaries give
the largest stable preconditioned curvature :math:`s = h/\prod_i P_i`. For Adam/AdamW
(``k = 1``) sympy finds that a real root leaves the unit circle through :math:`z = -1` at

.. math:: s^* = \frac{(2 - \eta\lambda)(1 + \beta_1)}{\eta (1 - \beta_1)}

and that no complex pair can leave first (`eos_threshold_expr`). For ``k >= 2`` the
:math:`z = -1` crossing is the first instability only at some factor values: at
:math:`\beta_{1,i} = 0.9` a complex pair leaves far earlier (`first_instability`).
"""

from __future__ import annotations

import cmath
import functools
from collections.abc import Sequence
from typing import NamedTuple

import sympy as sp

from .. import rules
from ._derivation import Derivation, Step, eq, lhs_eq
from ._symbols import SYMPY_OPS, Rule, check_k, expr, level_names, plain, pos, real

#: Factor values at which `eos` (k >= 2) checks which root leaves first: β₁ shared by every
#: level and ηλ (the default, with weight decay, shorter memories) ...
_SHARED_FACTORS: tuple[tuple[float, float], ...] = ((0.9, 0.0), (0.9, 0.01), (0.5, 0.0), (0.1, 0.0))
#: ... and, for k = 2, levels that differ (one without momentum; a longer lower memory).
_MIXED_FACTORS_K2: tuple[tuple[tuple[float, ...], float], ...] = (
    ((0.0, 0.9), 0.0),
    ((0.99, 0.9), 0.0),
)

#: The display name of the characteristic polynomial.
_P_OF_Z = sp.Symbol("p(z)")


class Instability(NamedTuple):
    """Where the frozen-preconditioner step first becomes unstable as :math:`s` grows from 0:
    ``kind`` is ``"z=-1"`` (a real root through -1: period-two oscillation), ``"z=1"`` or
    ``"complex"`` (a pair :math:`e^{\\pm i\\omega}`); ``s`` the value of :math:`\\eta s`
    there (the learning rate scaled out), ``omega`` the angle of the leaving root, and
    ``crossing`` the :math:`\\eta s` of the :math:`z = -1` crossing, for comparison.

    Attributes
    ----------
    kind : str
        ``"z=-1"``, ``"z=1"``, ``"complex"``, or ``"none"`` (nothing leaves).
    s : float
        The :math:`\\eta s` of the first instability (``inf`` for ``"none"``).
    omega : float
        The angle of the leaving root (NaN for ``"none"``).
    crossing : float
        The :math:`\\eta s` at which :math:`p(-1) = 0` (``inf`` if none).

    Examples
    --------
    Adam at β₁ = 0.9 (no weight decay): a real root leaves through -1 at
    :math:`\\eta s = 2(1+\\beta_1)/(1-\\beta_1) = 38`:

    >>> from adamflow.symbolic import eos_first_instability
    >>> found = eos_first_instability(1, (0.9,), 0.0)
    >>> found.kind, round(found.s, 6), round(found.omega, 6), round(found.crossing, 6)
    ('z=-1', 38.0, 3.141593, 38.0)
    """

    kind: str
    s: float
    omega: float
    crossing: float


def schur_cohn(poly: sp.Poly) -> list[tuple[sp.Expr, sp.Expr]]:
    r"""The Schur-Cohn recursion of a real polynomial: the (leading, constant) coefficients
    of :math:`p_0 = p` and of each reduced :math:`p_{j+1}(z) = (a_n p_j(z) - a_0 p_j^*(z))/z`
    (:math:`p^*` the reversed polynomial). Every root of ``p`` lies in :math:`|z| < 1` iff
    :math:`|a_0| < a_n` at every stage (Jury's conditions; theory/eos.md §2)."""
    z = poly.gen
    pairs: list[tuple[sp.Expr, sp.Expr]] = []
    while poly.degree() >= 1:
        coeffs = poly.all_coeffs()
        lead, const = expr(coeffs[0]), expr(coeffs[-1])
        pairs.append((lead, const))
        mirrored = sp.Poly(list(reversed(coeffs)), z)
        combined = lead * poly - const * mirrored  # its constant term cancels
        reduced, remainder = sp.div(combined, sp.Poly(z, z))
        if not remainder.is_zero:
            raise RuntimeError("Schur-Cohn: the constant term did not cancel")
        poly = sp.Poly(sp.expand(reduced.as_expr()), z)
    return pairs


def _levels(k: int) -> tuple[list[sp.Symbol], list[sp.Symbol], list[sp.Symbol]]:
    """Per level: the first moment (real), β₁ and the frozen preconditioner (positive)."""
    names = [level_names(k, i) for i in range(1, k + 1)]
    ms = [real(nm.m) for nm in names]
    b1s = [pos(nm.b1) for nm in names]
    ps = [pos("P" if k == 1 else f"P_{i}") for i in range(1, k + 1)]
    return ms, b1s, ps


@functools.cache
def eos(k: int = 1) -> Derivation:
    r"""The edge-of-stability threshold of the k-level cascade (theory/eos.md §2 for
    ``k = 1``, §3 for ``k = 2``).

    Results: ``step`` (the linear step matrix of :math:`(\theta, m_1..m_k)`), ``charpoly``
    (:math:`p(z)`, in ``z``, ``s``, ``eta``, ``lambda``, ``beta_1`` or ``beta_1,i``),
    ``conditions`` (the Schur-Cohn factors that must stay positive), ``crossing`` (the
    :math:`s` at which :math:`p(-1) = 0`), and for ``k = 1`` ``threshold`` (= ``crossing``,
    proven the first instability) and ``threshold_no_decay``; for ``k >= 2``
    ``first_instability``: a tuple of ``(b1s, eta*lambda, Instability)`` at checked factor
    values.

    Parameters
    ----------
    k : int, optional
        The number of levels (>= 1; default 1, Adam/AdamW).

    Returns
    -------
    Derivation
        Its steps and the results above. Cached per ``k``.

    Raises
    ------
    ValueError
        ``k`` not an integer >= 1.
    RuntimeError
        A check of the derivation fails (e.g. the step is not linear, or for ``k = 1`` the
        :math:`z = -1` crossing is not proven the first instability).

    Examples
    --------
    >>> import sympy as sp
    >>> from adamflow.symbolic import eos
    >>> results = eos(1).results
    >>> sorted(results)
    ['charpoly', 'conditions', 'crossing', 'step', 'threshold', 'threshold_no_decay']
    >>> b1, eta = sp.symbols("beta_1 eta")
    >>> sp.simplify(results["threshold_no_decay"] - 2 * (1 + b1) / (eta * (1 - b1))) == 0
    True
    """
    k = check_k(k)
    eta, lam, h, s = pos("eta"), pos("lambda"), pos("h"), real("s")
    theta, z = real("theta"), sp.Symbol("z")
    n, rate = sp.Symbol("n", integer=True, positive=True), pos("r")
    ms, b1s, ps = _levels(k)
    loss = h * theta**2 / 2
    gradient = sp.diff(loss, theta)
    # Late-time bias correction: 1 - b1^n with b1 = e^{-r}, r = ln(1/b1) > 0 as b1 < 1.
    late = sp.limit(rules.bias_correction(n * rate, SYMPY_OPS), n, sp.oo)
    if late != 1:
        raise RuntimeError(f"the bias correction tends to {late}, not 1")
    drive: sp.Expr = gradient
    new_ms = []
    for m, b1, p in zip(ms, b1s, ps, strict=True):
        m_new = m + rules.ema_increment(m, drive, 1 - b1)
        # Frozen preconditioner: v̂ = w² fixed, so sqrt(v̂) + ε = w + ε = P.
        w, eps = pos("w"), pos("epsilon")
        update = rules.normalized_update(m_new / late, w**2, eps, SYMPY_OPS)
        drive = expr(update).subs(w, p - eps)
        new_ms.append(m_new)
    theta_new = theta + eta * rules.parameter_velocity(drive, theta, lam)
    state = sp.Matrix([theta, *ms])
    step_map = sp.Matrix([theta_new, *new_ms])
    matrix = step_map.jacobian(state)
    if sp.expand(step_map - matrix * state) != sp.zeros(k + 1, 1):
        raise RuntimeError("the frozen-preconditioner step is not linear in (theta, m)")
    charpoly = sp.expand((z * sp.eye(k + 1) - matrix).det(method="berkowitz"))
    # The stiffness seen by the step is s = h / prod(P_i): the preconditioned curvature.
    curvature = h / sp.Mul(*ps)
    poly_s = sp.expand(charpoly.subs(h, s * sp.Mul(*ps)))
    if poly_s.has(h, *ps):
        raise RuntimeError("the characteristic polynomial depends on h and P apart from h/P")
    if sp.diff(poly_s, s, 2) != 0:
        raise RuntimeError("the characteristic polynomial is not linear in s")
    inside_point = _inside_point(k)
    unforced = sp.factor(poly_s.subs(s, 0))
    forcing = _readable(sp.diff(poly_s, s), inside_point)
    if sp.expand(unforced + s * forcing - poly_s) != 0:
        raise RuntimeError("p(z) differs from its s = 0 part plus s times its s-derivative")
    crossing_solutions = sp.solve(poly_s.subs(z, -1), s)
    if len(crossing_solutions) != 1:
        raise RuntimeError(f"expected one z = -1 crossing, got {crossing_solutions}")
    crossing = _readable(crossing_solutions[0], inside_point)
    steps: list[Step] = [
        Step(
            "On $L = \\tfrac12 h\\theta^2$ the gradient is $h\\theta$. Each level's moment "
            "follows `rules.ema_increment`, its bias correction `rules.bias_correction` "
            "at $n \\to \\infty$ (a `limit`: 1), and its update `rules.normalized_update` "
            "with $\\hat v$ frozen, so that $\\sqrt{\\hat v} + \\varepsilon = P$; the "
            "parameters move by `rules.parameter_velocity`. The step is linear:",
            (
                eq(sp.Symbol("theta_n"), theta_new),
                *(
                    eq(sp.Symbol(f"{m.name},n" if k > 1 else "m_n"), mn)
                    for m, mn in zip(ms, new_ms, strict=True)
                ),
            ),
        ),
        Step(
            "Its matrix in $(\\theta, m)$ (a `jacobian`) and characteristic polynomial "
            "$\\det(zI - A)$ depend on $h$ and the preconditioners only through "
            f"$s = {sp.latex(curvature)}$, and linearly (its part at $s = 0$ and its "
            "$s$-derivative factored):",
            (
                eq(sp.Symbol("A"), matrix),
                eq(_P_OF_Z, unforced + s * forcing),
            ),
        ),
        Step(
            "The root $z = -1$ (a period-two oscillation) appears where $p(-1) = 0$, "
            "solved for $s$:",
            (eq(sp.Symbol("s_-1"), crossing),),
        ),
    ]
    results: dict[str, object] = {
        "step": sp.ImmutableMatrix(matrix),
        "charpoly": poly_s,
        "crossing": crossing,
    }
    if k == 1:
        # The symbolic Schur-Cohn conditions: small for the quadratic (for k >= 2 they are
        # taken at factor values below, where they are polynomials in s alone).
        pairs = schur_cohn(sp.Poly(poly_s, z))
        conditions = tuple(
            expr(sp.factor(lead + sign * const)) for lead, const in pairs for sign in (-1, 1)
        )
        steps.insert(
            2,
            Step(
                "All roots lie inside the unit circle iff $|a_0| < a_n$ at every stage of the "
                "Schur-Cohn recursion $p_{j+1} = (a_n p_j - a_0 p_j^*)/z$ (Jury's "
                "conditions): these factors must stay positive:",
                tuple(sp.Gt(c, 0) for c in conditions),
            ),
        )
        results["conditions"] = conditions
        threshold = _first_crossing_k1(poly_s, pairs, conditions, crossing, steps)
        results["threshold"] = threshold
        results["threshold_no_decay"] = _readable(expr(threshold.subs(lam, 0)), inside_point)
    else:
        checked = [((b,) * k, decay) for b, decay in _SHARED_FACTORS]
        checked += list(_MIXED_FACTORS_K2) if k == 2 else []
        found = []
        for factors, decay in checked:
            values = {b: sp.nsimplify(f) for b, f in zip(b1s, factors, strict=True)}
            values.update({eta: 1, lam: sp.nsimplify(decay)})
            found.append((factors, decay, first_instability(poly_s.subs(values), s, z)))
        first = tuple(found)
        by_kind = {
            kind: "; ".join(
                f"$\\beta_1 = {f}$, $\\eta\\lambda = {d:g}$: $\\eta s = {inst.s:.4g}$"
                + (f" against {inst.crossing:.4g} at $z = -1$" if kind != "z=-1" else "")
                for f, d, inst in found
                if inst.kind == kind
            )
            for kind in ("complex", "z=-1", "z=1", "none")
        }
        found_text = " ".join(
            f"{label} {by_kind[kind]}."
            for kind, label in (
                ("complex", "A complex pair $e^{\\pm i\\omega}$ leaves first at"),
                ("z=-1", "The root $z = -1$ leaves first at"),
                ("z=1", "The root $z = 1$ leaves first at"),
                ("none", "Nothing leaves at"),
            )
            if by_kind[kind]
        )
        steps.append(
            Step(
                "At given factor values the Schur-Cohn conditions (all roots inside the unit "
                "circle iff $|a_0| < a_n$ at every stage of $p_{j+1} = (a_n p_j - a_0 "
                "p_j^*)/z$) are polynomials in $\\eta s$; the smallest positive root past "
                "which one is violated is the first instability, and the root of $p$ on the "
                "unit circle there says how it leaves. " + found_text,
            )
        )
    title = "The threshold of Adam and AdamW" if k == 1 else f"The threshold of {k}-Adam"
    results = plain(results)
    if k >= 2:  # numbers only: kept out of `plain`, which would rebuild the NamedTuples
        results["first_instability"] = first
    return Derivation(f"eos_k{k}", title, tuple(steps), results)


def _first_crossing_k1(
    poly_s: sp.Expr,
    pairs: list[tuple[sp.Expr, sp.Expr]],
    conditions: tuple[sp.Expr, ...],
    crossing: sp.Expr,
    steps: list[Step],
) -> sp.Expr:
    """Prove for ``k = 1`` that the z = -1 crossing is the first instability; add the steps
    and return the threshold."""
    eta, lam, s, z = pos("eta"), pos("lambda"), real("s"), sp.Symbol("z")
    (b1,) = _levels(1)[1]
    # Parametrize 0 < b1 < 1 by q > 0 and 0 <= eta*lambda < 2 by x >= 0, so that sympy's
    # sign rules can decide positivity.
    q, x = pos("q"), sp.Symbol("x", nonnegative=True)
    inside: Rule = {b1: 1 / (1 + q), lam: 2 * x / ((1 + x) * eta)}
    (lead0, const0), _ = pairs
    if sp.diff(const0, s) != 0 or sp.diff(lead0, s) != 0:
        raise RuntimeError("the product of the roots depends on s")
    free = [c for c in conditions if not c.has(s)]
    for c in free:
        if not sp.factor(sp.together(c.subs(inside))).is_positive:
            raise RuntimeError(f"the s-free condition {c} > 0 is not proven")
    moving = [c for c in conditions if c.has(s)]
    boundaries = [sp.factor(root) for c in moving for root in sp.solve(c, s)]
    positive = [b for b in boundaries if sp.factor(sp.together(b.subs(inside))).is_positive]
    others = [b for b in boundaries if b not in positive]
    if len(positive) != 1 or sp.simplify(positive[0] - crossing) != 0:
        raise RuntimeError(f"expected the z = -1 crossing as the one positive boundary: {positive}")
    if not all(sp.factor(sp.together(b.subs(inside))).is_nonpositive for b in others):
        raise RuntimeError(f"a boundary {others} could not be shown non-positive")
    threshold = _readable(expr(positive[0]), _inside_point(1))
    at_threshold = sp.factor(poly_s.subs(s, threshold))
    roots = sp.roots(sp.Poly(at_threshold, z))
    if -1 not in roots:
        raise RuntimeError("z = -1 is not a root at the threshold")
    (other,) = [r for r in roots if r != -1]  # |other| < 1 by the first stage's conditions
    steps += [
        Step(
            "The first stage's factors do not depend on $s$ and are positive for "
            "$0 < \\beta_1 < 1$, $0 \\le \\eta\\lambda < 2$: $|a_0| < 1$ always, and since a "
            "complex pair on the unit circle has product $|z|^2 = a_0 = 1$, no complex pair "
            "can leave. The others vanish at (solved for $s$):",
            tuple(eq(sp.Symbol("s"), b) for b in boundaries),
        ),
        Step(
            "Only the $z = -1$ crossing is positive; the other boundary ($z = 1$) is "
            "$\\le 0$. At the threshold the polynomial factors as below, its second root "
            "$|z_2| = |a_0| < 1$ inside the circle: a real root leaves through $z = -1$.",
            (eq(_P_OF_Z, at_threshold), eq(sp.Symbol("z_2"), other)),
        ),
        Step(
            "So the step is stable iff $s < s^*$, the edge-of-stability threshold "
            "(with $\\lambda = 0$ for Adam):",
            (
                eq(sp.Symbol("s^*"), threshold),
                lhs_eq("s^*|_{\\lambda = 0}", _readable(threshold.subs(lam, 0), _inside_point(1))),
            ),
        ),
    ]
    return threshold


def _inside_point(k: int) -> Rule:
    """A point inside the parameter range (0 < beta_1,i < 1, 0 < eta*lambda < 2, z = 1)."""
    point: Rule = {pos("eta"): sp.Integer(1), pos("lambda"): sp.Rational(1, 2)}
    point.update({b1: sp.Rational(1, 2) for b1 in _levels(k)[1]})
    point[sp.Symbol("z")] = sp.Integer(1)
    return point


def _readable(value: sp.Expr, inside: Rule) -> sp.Expr:
    """``value`` with each factor of its numerator and denominator written with the sign it
    has at a point ``inside`` the parameter range (``1 - beta_1`` rather than ``beta_1 - 1``);
    checked equal to ``value``."""
    numerator, denominator = sp.fraction(sp.factor(value))

    def signed(product: sp.Expr) -> tuple[list[sp.Expr], int]:
        factors, sign = [], 1
        for factor in sp.Mul.make_args(product):
            if factor.free_symbols and expr(factor.subs(inside)) < 0:
                factor, sign = expr(-factor), -sign
            factors.append(factor)
        return factors, sign

    top, top_sign = signed(expr(numerator))
    bottom, bottom_sign = signed(expr(denominator))
    result = expr(top_sign * bottom_sign * sp.Mul(*top) / sp.Mul(*bottom))
    if sp.simplify(result - value) != 0:
        raise RuntimeError(f"rewriting {value} changed it")
    return result


def first_instability(poly: sp.Expr, s: sp.Symbol, z: sp.Symbol) -> Instability:
    r"""The first instability of a characteristic polynomial with numeric coefficients,
    linear in ``s`` (theory/eos.md §3): the smallest :math:`s > 0` past which a Schur-Cohn
    condition is violated, and which root of ``poly`` lies on the unit circle there."""
    conditions = [
        sp.Poly(sp.expand(lead + sign * const), s)
        for lead, const in schur_cohn(sp.Poly(poly, z))
        for sign in (-1, 1)
    ]
    roots_of = [expr(r) for c in conditions if c.degree() >= 1 for r in sp.real_roots(c)]
    candidates = sorted({float(r) for r in roots_of if r.is_positive})
    crossing_roots = sp.solve(poly.subs(z, -1), s)
    crossing = float(crossing_roots[0]) if crossing_roots else float("inf")

    def stable(value: float) -> bool:
        return all(float(expr(c.as_expr().subs(s, sp.Float(value, 30)))) > 0 for c in conditions)

    # Stable just above s = 0; the first boundary past which it is not is the instability
    # (a condition that only touches zero is skipped).
    if candidates and not stable(candidates[0] / 2):
        raise RuntimeError("the step is not stable at small s")
    for first in candidates:
        if stable(first * (1 + 1e-9)):
            continue
        roots = sp.Poly(poly.subs(s, sp.Float(first, 30)), z).nroots(n=30)
        leaving = complex(min(roots, key=lambda r: abs(abs(complex(r)) - 1)))
        kind = (
            "z=-1" if abs(leaving + 1) < 1e-8 else "z=1" if abs(leaving - 1) < 1e-8 else "complex"
        )
        return Instability(kind, first, abs(cmath.phase(leaving)), crossing)
    return Instability("none", float("inf"), float("nan"), crossing)


def eos_threshold_expr() -> sp.Expr:
    r"""Adam's/AdamW's edge-of-stability threshold on the preconditioned sharpness
    :math:`s = \lambda_{\max}(P^{-1/2} H P^{-1/2})`, derived by `eos` (theory/eos.md §2):

    .. math:: s^* = \frac{(2 - \eta\lambda)(1 + \beta_1)}{\eta (1 - \beta_1)}

    in the symbols ``eta`` (lr), ``beta_1`` (b1) and ``lambda`` (weight_decay); the
    frozen-preconditioner step is stable iff :math:`s < s^*`, and at :math:`s^*` a real root
    leaves through :math:`z = -1`.

    Returns
    -------
    sympy.Expr
        :math:`s^*`, ``eos(1).results["threshold"]``.

    Raises
    ------
    RuntimeError
        A check of `eos` fails.

    Examples
    --------
    >>> import sympy as sp
    >>> from adamflow.symbolic._eos import eos_threshold_expr
    >>> eos_threshold_expr()
    (beta_1 + 1)*(-eta*lambda + 2)/(eta*(1 - beta_1))
    >>> eos_threshold_expr().subs({sp.Symbol("eta"): sp.Rational(1, 100),
    ...     sp.Symbol("beta_1"): sp.Rational(9, 10), sp.Symbol("lambda"): 0})
    3800
    """
    return eos(1).results["threshold"]


def eos_first_instability(k: int, b1s: Sequence[float], lr_weight_decay: float) -> Instability:
    r"""Which root of k-Adam's frozen-preconditioner step leaves the unit circle first, and at
    which :math:`\eta s` (theory/eos.md §3), at the given momentum factors (level 1 first) and
    :math:`\eta\lambda`; from `eos` ``(k)``'s characteristic polynomial.

    Parameters
    ----------
    k : int
        The number of levels (>= 1).
    b1s : Sequence[float]
        The momentum factors :math:`\beta_{1,i}`, level 1 first, ``k`` of them.
    lr_weight_decay : float
        :math:`\eta\lambda` (0 for Adam).

    Returns
    -------
    Instability
        Which root leaves first and where; ``kind="none"`` if nothing leaves.

    Raises
    ------
    ValueError
        ``k`` not an integer >= 1, or ``b1s`` not of length ``k``.
    RuntimeError
        A check of `eos` fails, or the step is not stable at small :math:`s`.

    Examples
    --------
    >>> from adamflow.symbolic._eos import eos_first_instability
    >>> found = eos_first_instability(2, (0.9, 0.9), 0.0)
    >>> found.kind, round(found.s, 4), round(found.crossing, 4)
    ('complex', 0.2346, 722.0)
    """
    k = check_k(k)
    if len(b1s) != k:
        raise ValueError(f"b1s must have length k={k}, got {len(b1s)}")
    poly = eos(k).results["charpoly"]
    names = [level_names(k, i).b1 for i in range(1, k + 1)]
    values: Rule = {sp.Symbol(nm): sp.nsimplify(b) for nm, b in zip(names, b1s, strict=True)}
    values.update(
        {sp.Symbol("eta"): sp.Integer(1), sp.Symbol("lambda"): sp.nsimplify(lr_weight_decay)}
    )
    return first_instability(poly.xreplace(values), sp.Symbol("s"), sp.Symbol("z"))
