r"""From the discrete moments to continuous ones (theory/adam.md §1, §2, §5, §6).

The moment rates (`moment_rates`, `moment_rate`), the bias correction (`bias_correction`),
the bias-corrected form of a moment's equation (`bias_corrected_form`) and its memory-kernel
form (`memory_kernel`), each derived by sympy from the `adamflow.rules` formulas.
"""

from __future__ import annotations

import functools

import sympy as sp

from .. import rules
from ._derivation import Derivation, Step, eq, iff
from ._symbols import B1, B2, SYMPY_OPS, expr, plain, pos, real


@functools.cache
def moment_rates() -> Derivation:
    r"""Derive the moment rates: :math:`a = \ln(1/\beta_1)/\eta` (exact decay) and
    :math:`a = (1-\beta_1)/\eta` (Euler), likewise :math:`b` from :math:`\beta_2`
    (theory/adam.md §1).

    Returns
    -------
    Derivation
        Its steps, and results ``a_exact``, ``a_euler``, ``a_paper`` (in ``beta_1``,
        ``eta``) and ``b_exact``, ``b_euler``, ``b_paper`` (in ``beta_2``, ``eta``).
        Cached: derived once per process.

    Raises
    ------
    RuntimeError
        A check of the derivation fails (sympy found another result than the one derived
        from `adamflow.rules`).

    Examples
    --------
    >>> from adamflow.symbolic import moment_rates
    >>> rates = moment_rates().results
    >>> rates["a_exact"], rates["b_euler"]
    (-log(beta_1)/eta, (1 - beta_2)/eta)
    """
    b1, b2, eta, g = pos(B1), pos(B2), pos("eta"), real("g")
    a_real = real("a")
    n = sp.Symbol("n", integer=True, nonnegative=True)
    t = sp.Symbol("t", nonnegative=True)
    m_seq, m_fun = sp.Function("m"), sp.Function("m")
    # Discrete EMA from the shared rule, constant drive g, m_0 = 0.
    discrete = m_seq(n - 1) + rules.ema_increment(m_seq(n - 1), g, 1 - b1)
    m_n = sp.rsolve(m_seq(n) - discrete, m_seq(n), {m_seq(0): 0})
    # Continuous relaxation with rate a, m(0) = 0.
    ode = eq(m_fun(t).diff(t), rules.ema_increment(m_fun(t), g, a_real))
    solution = sp.dsolve(ode, m_fun(t), ics={m_fun(0): 0})
    assert isinstance(solution, sp.Equality), "one first-order ODE has one solution"
    m_t = sp.expand(solution.rhs)
    at_grid = m_t.subs(t, n * eta)
    # Equal for every n iff e^{-a eta} = b1.
    decay_per_step = sp.exp(-a_real * eta)
    exact = sp.solve(sp.Eq(decay_per_step, b1), a_real)
    if len(exact) != 1:
        raise RuntimeError(f"expected one real rate, sympy found {exact}")
    a_exact = expr(exact[0])
    if sp.simplify(at_grid.subs(a_real, a_exact) - m_n) != 0:
        raise RuntimeError("the exact rate does not reproduce the discrete moment")
    if sp.simplify(a_exact - rules.decay_per_step(b1, SYMPY_OPS) / eta) != 0:
        raise RuntimeError("exact rate disagrees with rules.decay_per_step")
    first_order = sp.series(decay_per_step, eta, 0, 2).removeO()
    a_euler = expr(sp.solve(sp.Eq(first_order, b1), a_real)[0])
    log_series = sp.series(rules.decay_per_step(b1, SYMPY_OPS), b1, 1, 3)
    # The paper's (backward) rate: m_{n-1} = m(t - eta) ~ m - eta*mdot in the EMA with
    # m_n = m(t), solved for mdot = a (g - m).
    m, mdot = real("m"), real("mdot")
    backward = eq(m, b1 * (m - eta * mdot) + (1 - b1) * g)
    mdot_backward = expr(sp.solve(backward, mdot)[0])
    a_paper = expr(sp.factor(sp.cancel(mdot_backward / (g - m))))
    if sp.simplify(mdot_backward - rules.ema_increment(m, g, a_paper)) != 0:
        raise RuntimeError("the backward expansion is not a relaxation towards g")
    b_exact, b_euler, b_paper = a_exact.subs(b1, b2), a_euler.subs(b1, b2), a_paper.subs(b1, b2)
    steps = (
        Step(
            "The discrete moment is an exponential moving average (`rules.ema_increment`). "
            "With a constant drive $g$ and $m_0 = 0$, `sympy.rsolve` gives:",
            (eq(m_seq(n), discrete), eq(m_seq(n), m_n)),
        ),
        Step(
            "The continuous moment relaxes at a rate $a$; `sympy.dsolve` with $m(0) = 0$ gives:",
            (ode, eq(m_fun(t), m_t)),
        ),
        Step(
            "At the grid times $t = n\\eta$ the two agree for every $n$ iff the per-step decay "
            "factors agree:",
            (iff(eq(at_grid, m_n), eq(decay_per_step, b1)),),
        ),
        Step(
            "Solving for $a$ gives the exact-decay rate (the default convention), and "
            "likewise $b$ from $\\beta_2$:",
            (eq(sp.Symbol("a"), a_exact), eq(sp.Symbol("b"), b_exact)),
        ),
        Step(
            "The Euler convention keeps the first order of $e^{-a\\eta}$ in $\\eta$:",
            (
                eq(first_order, b1),
                (eq(sp.Symbol("a"), a_euler), eq(sp.Symbol("b"), b_euler)),
            ),
        ),
        Step(
            "The two conventions agree to first order in $1-\\beta_1$; the exact rate is larger:",
            (eq(rules.decay_per_step(b1, SYMPY_OPS), log_series),),
        ),
        Step(
            "The paper's convention (its reconstructed rates) expands the previous moment "
            "backwards, $m_{n-1} = m(t-\\eta) \\approx m - \\eta\\dot m$, in the EMA and "
            "solves for $\\dot m$; the rate is $a$ of $\\dot m = a(g - m)$:",
            (backward, (eq(sp.Symbol("a"), a_paper), eq(sp.Symbol("b"), b_paper))),
        ),
    )
    results = {
        "a_exact": a_exact,
        "a_euler": a_euler,
        "a_paper": a_paper,
        "b_exact": b_exact,
        "b_euler": b_euler,
        "b_paper": b_paper,
    }
    return Derivation(
        "moment_rates", "Moment rates from the decay condition", steps, plain(results)
    )


def moment_rate(convention: str = "exact", moment: str = "first") -> sp.Expr:
    r"""The rate as an expression in ``beta_1`` (``moment="first"``: :math:`a`) or ``beta_2``
    (``"second"``: :math:`b`) and ``eta``: :math:`\ln(1/\beta_1)/\eta` (``"exact"``),
    :math:`(1-\beta_1)/\eta` (``"euler"``) or the paper's backward rate
    :math:`(1-\beta_1)/(\beta_1\eta)` (``"paper"``) (theory/adam.md §1).

    Parameters
    ----------
    convention : str, optional
        ``"exact"`` (default), ``"euler"`` or ``"paper"``.
    moment : str, optional
        ``"first"`` (default; :math:`a`) or ``"second"`` (:math:`b`).

    Returns
    -------
    sympy.Expr
        The rate, from `moment_rates`.

    Raises
    ------
    ValueError
        ``convention`` or ``moment`` not one of the names above.
    RuntimeError
        A check of `moment_rates` fails.

    Examples
    --------
    >>> import sympy as sp
    >>> from adamflow.symbolic import moment_rate
    >>> moment_rate()
    -log(beta_1)/eta
    >>> b2, eta = sp.symbols("beta_2 eta")
    >>> sp.simplify(moment_rate("paper", "second") - (1 - b2) / (b2 * eta)) == 0
    True
    """
    if convention not in ("exact", "euler", "paper"):
        raise ValueError(f"convention must be 'exact', 'euler' or 'paper', got {convention!r}")
    if moment not in ("first", "second"):
        raise ValueError(f"moment must be 'first' or 'second', got {moment!r}")
    letter = "a" if moment == "first" else "b"
    return moment_rates().results[f"{letter}_{convention}"]


@functools.cache
def bias_correction() -> Derivation:
    r"""Derive the bias corrections :math:`1-\beta_1^n` and :math:`1-e^{-a t}`, their equality
    at :math:`t = n\eta` in the exact convention, and :math:`\hat m \to g` as :math:`t \to 0`
    (theory/adam.md §2).

    Returns
    -------
    Derivation
        Its steps, and results ``discrete`` (:math:`1-\beta_1^n`), ``continuous``
        (:math:`1-e^{-at}`) and ``limit_t0`` (``g``, the limit of :math:`\hat m`).
        Cached: derived once per process.

    Raises
    ------
    RuntimeError
        A check of the derivation fails (sympy found another result than the one derived
        from `adamflow.rules`).

    Examples
    --------
    >>> from adamflow.symbolic import bias_correction
    >>> results = bias_correction().results
    >>> results["discrete"], results["continuous"], results["limit_t0"]
    (1 - beta_1**n, 1 - exp(-a*t), g)
    """
    b1, eta, a, g = pos(B1), pos("eta"), pos("a"), real("g")
    n = sp.Symbol("n", integer=True, nonnegative=True)
    t = sp.Symbol("t", nonnegative=True)
    discrete = rules.bias_correction(n * rules.decay_per_step(b1, SYMPY_OPS), SYMPY_OPS)
    discrete_power = discrete.rewrite(sp.Pow)
    continuous = rules.bias_correction(a * t, SYMPY_OPS)
    a_exact = moment_rates().results["a_exact"].subs({sp.Symbol(B1): b1, sp.Symbol("eta"): eta})
    at_grid = sp.simplify(continuous.subs({a: a_exact, t: n * eta}))
    if sp.simplify(at_grid - discrete) != 0:
        raise RuntimeError("continuous bias correction at t = n eta differs from 1 - beta_1^n")
    # Small-t limit: m(t) = a t g + O(t^2) and 1 - e^{-at} = a t + O(t^2).
    m_small = g * (1 - sp.exp(-a * t))  # the constant-drive moment of `moment_rates`
    m_series = sp.series(m_small, t, 0, 2).removeO()
    bc_series = sp.series(continuous, t, 0, 2).removeO()
    limit = sp.limit(m_series / bc_series, t, 0)
    mhat, m = sp.Symbol("mhat"), sp.Symbol("m")
    steps = (
        Step(
            "The rule `rules.bias_correction(x) = -expm1(-x)` with the discrete exponent "
            "$x = n\\ln(1/\\beta_1)$ is the familiar $1-\\beta_1^n$; the constant-drive "
            "solution $m_n = g(1-\\beta_1^n)$ makes $\\hat m_n = m_n/(1-\\beta_1^n) = g$ "
            "unbiased:",
            (eq(sp.Symbol("B_n"), discrete), eq(sp.Symbol("B_n"), discrete_power)),
        ),
        Step(
            "With the continuous exponent $x = a t$, the same rule gives the flow's divisor; "
            "$\\hat m = m/(1-e^{-at})$:",
            (eq(sp.Symbol("B(t)"), continuous),),
        ),
        Step(
            "At $t = n\\eta$ with the exact-decay rate the two divisors are identical (with the "
            "Euler rate they are not):",
            (eq(continuous.subs(t, n * eta), at_grid),),
        ),
        Step(
            "Near $t = 0$ both $m$ and the divisor vanish linearly; the bias-corrected moment "
            "tends to the drive, so the flow starts at $\\hat m(0) = g(0)$ (use `expm1` for "
            "the divisor):",
            (
                (eq(m, m_series), eq(sp.Symbol("B(t)"), bc_series)),
                eq(sp.Limit(mhat, t, 0), limit),
            ),
        ),
    )
    results = {"discrete": discrete_power, "continuous": continuous, "limit_t0": limit}
    return Derivation("bias_correction", "Bias correction", steps, plain(results))


@functools.cache
def bias_corrected_form() -> Derivation:
    r"""Derive :math:`d\hat m/dt = a/(1-e^{-a t})\,(x - \hat m)` from :math:`\dot m = a(x - m)`
    and :math:`\hat m = m/(1-e^{-a t})` (theory/adam.md §5).

    Returns
    -------
    Derivation
        Its steps, and the result ``mhat_dot`` (in ``a``, ``t``, ``x``, ``mhat``).
        Cached: derived once per process.

    Raises
    ------
    RuntimeError
        A check of the derivation fails (sympy found another result than the one derived
        from `adamflow.rules`).

    Examples
    --------
    >>> import sympy as sp
    >>> from adamflow.symbolic import bias_corrected_form
    >>> a, t, x, mhat = sp.symbols("a t x mhat")
    >>> rhs = bias_corrected_form().results["mhat_dot"]
    >>> sp.simplify(rhs - a / (1 - sp.exp(-a * t)) * (x - mhat)) == 0
    True
    """
    a, t = pos("a"), pos("t")
    x, mhat = real("x"), real("mhat")
    m = sp.Function("m")(t)
    divisor = rules.bias_correction(a * t, SYMPY_OPS)
    mhat_of_m = m / divisor
    dmhat = sp.diff(mhat_of_m, t)
    dm = rules.ema_increment(m, x, a)
    substituted = dmhat.subs(sp.Derivative(m, t), dm).subs(m, mhat * divisor)
    field_mhat = sp.factor(sp.simplify(substituted))
    target_shape = sp.Symbol("a") / divisor * (x - mhat)
    if sp.simplify(field_mhat - target_shape.subs(sp.Symbol("a"), a)) != 0:
        raise RuntimeError("bias-corrected form did not reduce to a/(1-e^{-at}) (x - mhat)")
    steps = (
        Step(
            "Differentiate $\\hat m = m/(1-e^{-at})$ along the flow:",
            (eq(sp.Symbol("mhatdot"), dmhat),),
        ),
        Step(
            "Substitute $\\dot m = a(x - m)$ (`rules.ema_increment`, drive $x$) and "
            "$m = \\hat m\\,(1-e^{-at})$, then simplify:",
            (eq(sp.Symbol("mhatdot"), field_mhat),),
        ),
        Step(
            "So the bias-corrected moment relaxes towards the drive at the time-dependent rate "
            "$a/(1-e^{-at})$ (infinite at $t=0$, where $\\hat m(0)$ equals the drive):",
            (eq(sp.Symbol("mhatdot"), target_shape),),
        ),
    )
    return Derivation(
        "bias_corrected_form",
        "The bias-corrected (m̂, v̂) form",
        steps,
        plain({"mhat_dot": field_mhat}),
    )


@functools.cache
def memory_kernel() -> Derivation:
    r"""Check the memory-kernel form :math:`m(t) = \int_0^t a e^{-a(t-s)} g(s)\,ds` solves
    :math:`\dot m = a(g - m)`, :math:`m(0) = 0` (theory/adam.md §6).

    Returns
    -------
    Derivation
        Its steps, and the result ``m`` (the integral, in ``a``, ``t``, ``s`` and the
        function ``g``). Cached: derived once per process.

    Raises
    ------
    RuntimeError
        The integral form does not solve the moment's equation (a failed check).

    Examples
    --------
    >>> import sympy as sp
    >>> from adamflow.symbolic import memory_kernel
    >>> m = memory_kernel().results["m"]
    >>> a, t, g = sp.Symbol("a"), sp.Symbol("t"), sp.Function("g")
    >>> sp.simplify(sp.diff(m, t) - a * (g(t) - m)) == 0
    True
    """
    a, t, s = pos("a"), pos("t"), pos("s")
    g = sp.Function("g")
    kernel_form = sp.Integral(a * sp.exp(-a * (t - s)) * g(s), (s, 0, t))
    derivative = sp.diff(kernel_form, t)
    residual = sp.simplify(derivative - rules.ema_increment(kernel_form, g(t), a))
    if residual != 0:
        raise RuntimeError(f"memory-kernel form does not solve the moment ODE: {residual}")
    steps = (
        Step("The integral form of the moment:", (eq(sp.Function("m")(t), kernel_form),)),
        Step(
            "Differentiating under the integral (Leibniz) gives $a(g - m)$ exactly, and "
            "$m(0) = 0$; the weight $a$ and the decay $a$ must be the same rate:",
            (eq(sp.Derivative(sp.Function("m")(t), t), derivative),),
        ),
    )
    return Derivation("memory_kernel", "Memory-kernel form", steps, plain({"m": kernel_form}))
