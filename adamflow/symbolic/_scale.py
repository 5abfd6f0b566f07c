r"""Scale invariance and the meta-adaptive effect of normalization (theory/kadam.md §4).

`scale_invariance` derives, from :math:`L(c\theta) = L(\theta)` and the `adamflow.rules`
step, that :math:`\theta\cdot g = 0` and :math:`g(c\theta) = g(\theta)/c`, that Adam's update
ignores the scale of the gradient, the exact step of :math:`|\theta|^2`, its first-order
flow, the equilibrium :math:`|\theta|^2 = \eta\,E|u|^2/(2\lambda)` and the angular step
:math:`\sqrt{2\eta\lambda}\,|u|/\sqrt{E|u|^2}`: the effective update is divided by the root of
a running average of :math:`|u|^2`, a second adaptive normalization (2-Adam).
"""

from __future__ import annotations

import functools

import sympy as sp

from .. import rules
from ._derivation import Derivation, Step, eq, lhs_eq
from ._symbols import SYMPY_OPS, Rule, expr, plain, pos, real


@functools.cache
def scale_invariance() -> Derivation:
    r"""The meta-adaptive effect of a normalization layer (theory/kadam.md §4).

    Results: ``orthogonality`` (:math:`\theta\cdot g`, zero), ``gradient_scaling``
    (:math:`g(c\theta)\,c/g(\theta)`, one), ``norm_step`` (:math:`|\theta_n|^2` in
    ``N = |theta|^2``, ``P = theta.u``, ``U = |u|^2``, ``eta``, ``lambda``), ``norm_rate``
    (:math:`d|\theta|^2/dt` to first order), ``equilibrium`` (:math:`|\theta|^2` at rest, in
    ``E``, the mean of ``|u|^2``) and ``angular_step`` (per iteration, for an update of size
    ``|u|``).

    Returns
    -------
    Derivation
        Its steps and the results above. Cached: derived once per process.

    Raises
    ------
    RuntimeError
        A check of the derivation fails (scale invariance, the invariance of Adam's
        update, the linearity of the step or the memory-kernel form).

    Examples
    --------
    >>> import sympy as sp
    >>> from adamflow.symbolic import scale_invariance
    >>> results = scale_invariance().results
    >>> results["orthogonality"], results["gradient_scaling"]
    (0, 1)
    >>> E, eta, lam = sp.symbols("E eta lambda")
    >>> sp.simplify(results["equilibrium"] - eta * E / (2 * lam)) == 0
    True
    """
    c, eta, lam = pos("c"), pos("eta"), pos("lambda")
    th1, th2 = real("theta_1"), real("theta_2")
    loss = sp.Function("L")
    # L(c theta) = L(theta) for every c > 0: its c-derivative at c = 1 is theta . grad L.
    scaled = loss(c * th1, c * th2)
    euler_identity = sp.diff(scaled, c).subs(c, 1).doit()
    # Concretely: a loss that depends on theta only through its direction.
    shape = sp.Function("F")
    radius = sp.sqrt(th1**2 + th2**2)
    invariant = shape(th1 / radius, th2 / radius)
    grad = [sp.diff(invariant, th) for th in (th1, th2)]
    at_scaled: Rule = {th1: c * th1, th2: c * th2}
    if sp.simplify(invariant.subs(at_scaled, simultaneous=True) - invariant) != 0:
        raise RuntimeError("F(theta/|theta|) is not scale invariant")
    orthogonality = sp.simplify(th1 * grad[0] + th2 * grad[1])
    scaling = sp.simplify(grad[0].subs(at_scaled, simultaneous=True) * c / grad[0])
    if orthogonality != 0 or scaling != 1:
        raise RuntimeError("scale invariance: theta . g = 0 or g(c theta) = g(theta)/c fails")
    # Adam's update does not see the scale of g: m scales by c, v by c^2 (epsilon = 0).
    mhat, vhat = real("mhat"), pos("vhat")
    update = rules.normalized_update(mhat, vhat, 0, SYMPY_OPS)
    rescaled = rules.normalized_update(c * mhat, c**2 * vhat, 0, SYMPY_OPS)
    if sp.simplify(rescaled - update) != 0:
        raise RuntimeError("Adam's update is not invariant to a rescaling of the gradient")
    # The step theta_n = A theta + B u (from rules), so |theta_n|^2 by bilinearity.
    theta, u = real("theta"), real("u")
    step = sp.expand(theta + eta * rules.parameter_velocity(u, theta, lam))
    factor_theta, factor_u = step.coeff(theta), step.coeff(u)
    if sp.expand(step - factor_theta * theta - factor_u * u) != 0:
        raise RuntimeError("the parameter step is not linear in (theta, u)")
    norm, dot, usq = pos("N"), real("P"), pos("U")
    norm_step = expr(
        sp.factor(factor_theta**2) * norm + 2 * factor_theta * factor_u * dot + factor_u**2 * usq
    )
    per_time = sp.expand((norm_step - norm) / eta)
    # First order: the O(1) terms and, of the O(eta) ones, eta |u|^2 (the others carry lambda).
    leading = per_time.coeff(eta, 0)
    rest = sp.expand(per_time - leading)
    kept = rest.coeff(eta, 1).coeff(usq) * eta * usq
    norm_rate = leading + kept
    # With theta . u = 0: |theta|^2 is an average of eta |u|^2 with rate 2 lambda.
    t, s = pos("t"), pos("s")
    n_fun, u_sq = sp.Function("N"), sp.Function("U")
    rate_of_n = norm_rate.subs({dot: 0, norm: n_fun(t), usq: u_sq(t)})
    ode = eq(n_fun(t).diff(t), rate_of_n)
    kernel_form = sp.Integral(eta * sp.exp(-2 * lam * (t - s)) * u_sq(s), (s, 0, t))
    if sp.simplify(sp.diff(kernel_form, t) - rate_of_n.subs(n_fun(t), kernel_form)) != 0:
        raise RuntimeError("the memory-kernel form of |theta|^2 does not solve its ODE")
    mean_usq = pos("E")
    equilibrium = expr(sp.solve(norm_rate.subs({dot: 0, usq: mean_usq}), norm)[0])
    size = pos("|u|")
    angular_step = sp.simplify(eta * size / sp.sqrt(equilibrium))
    steps = (
        Step(
            "A weight followed by a normalization layer gives a scale-invariant loss, "
            "$L(c\\theta) = L(\\theta)$ for all $c > 0$. Its derivative in $c$ at $c = 1$ "
            "(chain rule) must vanish:",
            (eq(sp.Derivative(scaled, c).subs(c, 1), euler_identity),),
        ),
        Step(
            "so $\\theta\\cdot g = 0$; and differentiating $L(c\\theta) = L(\\theta)$ in "
            "$\\theta$ gives $c\\,g(c\\theta) = g(\\theta)$. Both checked by sympy on a loss "
            "$F(\\theta/|\\theta|)$ that depends only on the direction:",
            (
                lhs_eq("\\theta\\cdot g", orthogonality),
                lhs_eq("c\\,g(c\\theta)/g(\\theta)", scaling),
            ),
        ),
        Step(
            "Adam's update does not see the scale of the gradient: $m$ scales by $c$ and $v$ "
            "by $c^2$ (`rules.normalized_update`, $\\varepsilon = 0$):",
            (lhs_eq("u(c\\,g)", rescaled), lhs_eq("u(g)", update)),
        ),
        Step(
            "The parameter step (`rules.parameter_velocity`) is "
            "$\\theta_n = A\\theta + Bu_n$; by bilinearity its squared norm, with "
            "$N = |\\theta|^2$, $P = \\theta\\cdot u$, $U = |u|^2$, is exactly:",
            (
                (eq(sp.Symbol("A"), factor_theta), eq(sp.Symbol("B"), factor_u)),
                eq(sp.Symbol("N_n"), norm_step),
            ),
        ),
        Step(
            "Per unit time $t = n\\eta$, keeping the leading terms and, of the $O(\\eta)$ "
            "ones, $\\eta|u|^2$ (the others carry a factor $\\lambda$ and are small beside the "
            "leading $-2\\lambda N$, $-2P$):",
            (
                lhs_eq("(N_n - N)/\\eta", per_time),
                lhs_eq("\\frac{d|\\theta|^2}{dt}", norm_rate),
            ),
        ),
        Step(
            "When $\\theta\\cdot u \\approx 0$ (exact for SGD, approximate for Adam) the norm "
            "is an exponential moving average of $\\eta|u|^2$ with rate $2\\lambda$ "
            "(the memory-kernel form below solves the equation, checked by sympy, and starts "
            "at $N(0) = 0$; a nonzero start adds $N(0)e^{-2\\lambda t}$):",
            (ode, eq(n_fun(t), kernel_form)),
        ),
        Step(
            "In equilibrium, with $E$ the mean of $|u|^2$, the norm and the angular step per "
            "iteration $\\eta|u|/|\\theta|$ are:",
            (
                lhs_eq("|\\theta|^2", equilibrium),
                lhs_eq("\\eta|u|/|\\theta|", angular_step),
            ),
        ),
        Step(
            "The direction $\\omega = \\theta/|\\theta|$ moves as "
            "$\\dot\\omega = -(I - \\omega\\omega^T)\\,u/|\\theta|$: the effective update is "
            "$u$ divided by the root of a running second moment of $u$, a second adaptive "
            "normalization on top of Adam's. Making it explicit and per coordinate gives "
            "2-Adam with no momentum at level 2 ($\\beta_{1,2} = 0$); repeating it gives "
            "k-Adam. How well $\\theta\\cdot u \\approx 0$ holds is measured, not assumed.",
        ),
    )
    results = {
        "orthogonality": orthogonality,
        "gradient_scaling": scaling,
        "norm_step": norm_step,
        "norm_rate": norm_rate,
        "equilibrium": equilibrium,
        "angular_step": angular_step,
    }
    return Derivation(
        "scale_invariance",
        "Scale invariance and the meta-adaptive effect",
        steps,
        plain(results),
    )
