r"""Bounded updates and the stable region (theory/stability.md, theory/kadam.md §3).

`stability` derives the Cauchy-Schwarz bound on :math:`|m_n|/\sqrt{v_n}` from the EMA rule
and with it the stable region :math:`\beta_2 > \beta_1^2` (`stability_condition`,
`level_conditions`), the bound itself (`update_bound`) and the growth outside
(`growth_factor`); `amplification` derives how far the :math:`\varepsilon` of the update caps
that growth (`eps_capped_amplification`).
"""

from __future__ import annotations

import functools

import sympy as sp
from sympy.functions.elementary.piecewise import ExprCondPair

from .. import rules
from ._derivation import Derivation, Step, eq, iff, latex, lhs_eq
from ._rates import moment_rate
from ._symbols import (
    B1,
    B2,
    SYMPY_OPS,
    Rule,
    check_k,
    expr,
    level_names,
    plain,
    pos,
    relational,
    sqrt_positive,
)


def _pieces(piecewise: sp.Basic) -> list[ExprCondPair]:
    """The (expression, condition) pairs of a `sympy.Piecewise`."""
    if not isinstance(piecewise, sp.Piecewise):
        raise TypeError(f"expected a Piecewise, got {piecewise}")
    pairs = [p for p in piecewise.args if isinstance(p, ExprCondPair)]
    assert len(pairs) == len(piecewise.args), "a Piecewise holds only ExprCondPairs"
    return pairs


@functools.cache
def stability() -> Derivation:
    r"""The Cauchy-Schwarz bound :math:`|m_n|/\sqrt{v_n} \le \sqrt{\sum_{j<n} w_j^2/c_j}`
    and its consequences (theory/stability.md §1): the condition :math:`\beta_2 > \beta_1^2`,
    the closed form :math:`C = (1-\beta_1)/\sqrt{(1-\beta_2)(1-\beta_1^2/\beta_2)}`, the
    finite-n bound, the growth factor :math:`\beta_1/\sqrt{\beta_2}` outside, the continuous
    form :math:`b < 2a`, :math:`C = a/\sqrt{b(2a-b)}`, and the Euler-convention condition.

    Returns
    -------
    Derivation
        Its steps and results ``condition``, ``bound``, ``finite_bound``,
        ``boundary_bound``, ``growth_factor``, ``continuous_condition``,
        ``continuous_bound``, ``continuous_growth_rate``, ``euler_condition``,
        ``paper_condition``, ``paper_criterion`` and ``<convention>_growth_per_step``
        (in ``beta_1``, ``beta_2``, ``a``, ``b``, ``eta``, ``n``). Cached.

    Raises
    ------
    RuntimeError
        A check of the derivation fails (sympy found another result than the one derived
        from `adamflow.rules`).

    Examples
    --------
    >>> from adamflow.symbolic import stability
    >>> results = stability().results
    >>> results["condition"], results["growth_factor"]
    (beta_2 > beta_1**2, beta_1/sqrt(beta_2))
    """
    b1, b2 = pos(B1), pos(B2)
    j = sp.Symbol("j", integer=True, nonnegative=True)
    n = sp.Symbol("n", integer=True, positive=True)
    # Unroll the shared EMA rule three steps from zero with arbitrary inputs g_1..g_3.
    inputs = sp.symbols("g_1:4", real=True)
    m_n, v_n = sp.Integer(0), sp.Integer(0)
    for x in inputs:
        m_n = m_n + rules.ema_increment(m_n, x, 1 - b1)
        v_n = v_n + rules.ema_increment(v_n, x**2, 1 - b2)
    w = (1 - b1) * b1**j
    c = (1 - b2) * b2**j
    unrolled_m = sp.Add(*(w.subs(j, jj) * inputs[2 - jj] for jj in range(3)))
    unrolled_v = sp.Add(*(c.subs(j, jj) * inputs[2 - jj] ** 2 for jj in range(3)))
    if sp.expand(m_n - unrolled_m) != 0 or sp.expand(v_n - unrolled_v) != 0:
        raise RuntimeError("the unrolled EMA differs from the recurrence")
    # Equality case of Cauchy-Schwarz: g_{n-j} = w_j / c_j gives m_n / sqrt(v_n) = sqrt(S).
    worst = [(w / c).subs(j, jj) for jj in range(3)]
    worst_inputs: Rule = {inputs[2 - jj]: worst[jj] for jj in range(3)}
    worst_m = unrolled_m.subs(worst_inputs)
    worst_v = unrolled_v.subs(worst_inputs)
    partial_3 = sp.Add(*((w**2 / c).subs(j, jj) for jj in range(3)))
    if sp.simplify(worst_m - partial_3) != 0 or sp.simplify(worst_v - partial_3) != 0:
        raise RuntimeError("the Cauchy-Schwarz equality case failed")
    term = w**2 / c
    coefficient, geometric = term.as_independent(j, as_Mul=True)
    geometric = sp.powsimp(geometric, force=True)
    ratio = sp.simplify(geometric.subs(j, j + 1) / geometric)
    infinite = sp.summation(geometric, (j, 0, sp.oo))
    piece = infinite if isinstance(infinite, sp.Piecewise) else infinite.atoms(sp.Piecewise).pop()
    converging = _pieces(piece)[0]
    limit_value, convergence = expr(converging.expr), converging.cond
    reduced = sp.reduce_inequalities(convergence, b2)
    condition = relational(sp.Gt(b2, b1**2))
    if reduced != sp.Lt(b1**2, b2) and reduced != condition:
        raise RuntimeError(f"unexpected convergence condition {reduced}")
    # Inside the region 1 - b1, 1 - b2 and 1 - b1^2/b2 are positive.
    one_minus_ratio = sp.Integer(1) / limit_value
    bound = sqrt_positive(coefficient * limit_value, [1 - b1, 1 - b2, one_minus_ratio])
    finite = sp.summation(geometric, (j, 0, n - 1))
    finite_bound = sqrt_positive(coefficient * finite, [1 - b1, 1 - b2])
    boundary_pieces = [p.expr for p in _pieces(finite) if p.cond != sp.true]
    boundary_bound = sqrt_positive(coefficient * boundary_pieces[0], [1 - b1, 1 - b2])
    generic = expr(next(p.expr for p in _pieces(finite) if p.cond == sp.true))
    # Outside: the finite bound grows by sqrt(r) per step, r = b1^2/b2 = 1 + s > 1.
    s = pos("s")
    r_sym = pos("r")
    generic_r = expr(generic.subs(ratio, r_sym))
    step_ratio = sp.limit(
        sp.simplify(expr(generic_r.subs(n, n + 1)) / generic_r).subs(r_sym, 1 + s), n, sp.oo
    )
    factor_sq = sp.simplify(step_ratio.subs(s, ratio - 1))
    growth = sp.sqrt(factor_sq)
    # Continuous form: b1 = e^{-a eta}, b2 = e^{-b eta}.
    a, b, eta = pos("a"), pos("b"), pos("eta")
    decays: Rule = {b1: sp.exp(-a * eta), b2: sp.exp(-b * eta)}
    log_condition = sp.Gt(
        sp.expand_log(sp.log(condition.lhs.subs(decays)), force=True),
        sp.expand_log(sp.log(condition.rhs.subs(decays)), force=True),
    )
    continuous_condition = relational(sp.reduce_inequalities(log_condition, b))
    bound_continuous = sp.limit(bound.subs(decays), eta, 0)
    tau, c_pos = pos("tau"), pos("c")
    kernel_sq = (a * sp.exp(-a * tau)) ** 2 / (b * sp.exp(-b * tau))
    # The integral converges for c = 2a - b > 0 (and diverges otherwise).
    integrand = sp.simplify(kernel_sq.subs(b, 2 * a - c_pos))
    integral = sp.integrate(integrand, (tau, 0, sp.oo))
    integral_b = sp.factor(integral.subs(c_pos, 2 * a - b))
    if sp.simplify(integral_b - bound_continuous**2) != 0:
        raise RuntimeError("continuous bound: the limit and the kernel integral disagree")
    growth_continuous = sp.simplify(sp.expand_log(sp.log(growth.subs(decays)), force=True) / eta)

    def rates_of(convention: str) -> Rule:
        # The convention's rates from `moment_rates`, on this derivation's positive symbols.
        names = {sp.Symbol(B1): b1, sp.Symbol(B2): b2, sp.Symbol("eta"): eta}
        return {
            a: moment_rate(convention, "first").xreplace(names),
            b: moment_rate(convention, "second").xreplace(names),
        }

    euler, paper = rates_of("euler"), rates_of("paper")
    euler_condition = relational(sp.reduce_inequalities(continuous_condition.subs(euler), b2))
    # Cleared of its positive denominators (b1 b2 eta > 0) the paper's form is linear in
    # b2 with slope b1 - 2 < 0, which reduce_inequalities cannot use by itself.
    paper_form = continuous_condition.subs(paper)
    assert isinstance(paper_form, sp.StrictLessThan), "b < 2a"
    cleared = sp.expand((expr(paper_form.lhs) - expr(paper_form.rhs)) * b1 * b2 * eta)
    slope = sp.diff(cleared, b2)
    if sp.diff(cleared, b2, 2) != 0 or slope.subs(b1, 1) >= 0 or sp.diff(slope, b1) != 1:
        raise RuntimeError(f"expected a decreasing linear form in beta_2, got {cleared}")
    paper_condition = relational(sp.Gt(b2, sp.solve(cleared, b2)[0]))
    # Outside the region |u| grows like e^{(b/2 - a) t}: (b/2 - a)·eta per step.
    per_step = (b / 2 - a) * eta
    paper_criterion = expr(sp.factor(sp.simplify(-2 * expr(per_step.subs(paper)))))
    growth_per_step = {
        name: expr(sp.simplify(per_step.subs(rule)))
        for name, rule in (("exact", rates_of("exact")), ("euler", euler), ("paper", paper))
    }
    C, S = sp.Symbol("C"), sp.Symbol("S_n")
    steps = (
        Step(
            "Unrolling the EMA rule from $m_0 = v_0 = 0$ (checked by sympy over three steps "
            "with arbitrary inputs) gives weighted sums with weights $w_j$, $c_j$:",
            (
                eq(
                    sp.Symbol("m_n"), sp.Sum(sp.Symbol("w_j") * sp.Symbol("g_{n-j}"), (j, 0, n - 1))
                ),
                eq(
                    sp.Symbol("v_n"),
                    sp.Sum(sp.Symbol("c_j") * sp.Symbol("g_{n-j}") ** 2, (j, 0, n - 1)),
                ),
                (eq(sp.Symbol("w_j"), w), eq(sp.Symbol("c_j"), c)),
            ),
        ),
        Step(
            "Cauchy-Schwarz on $\\sum (w_j/\\sqrt{c_j})(\\sqrt{c_j} g_{n-j})$, with equality for "
            "$g_{n-j} \\propto w_j/c_j$ (checked by sympy for $n = 3$), bounds the ratio for "
            "every gradient sequence ($\\varepsilon = 0$):",
            (
                r"\frac{|m_n|}{\sqrt{v_n}} \le \sqrt{S_n},\qquad "
                + latex(eq(S, sp.Sum(term, (j, 0, n - 1)))),
            ),
        ),
        Step(
            "The terms form a geometric series; the ratio of successive terms is:",
            (lhs_eq("w_j^2/c_j", coefficient * geometric), eq(sp.Symbol("r"), ratio)),
        ),
        Step(
            "`sympy.summation` to $n = \\infty$ converges only under the condition it "
            "returns, which `reduce_inequalities` turns into the stable region:",
            (lhs_eq("S_\\infty", infinite), iff(convergence, condition)),
        ),
        Step(
            "Inside it, the bound on the update is the square root of the sum (simplified "
            "with $0 < \\beta_1, \\beta_2 < 1$):",
            (eq(C, bound),),
        ),
        Step(
            "For finite $n$ the partial sum gives the bound at step $n$; on the boundary "
            "$\\beta_2 = \\beta_1^2$ it grows like $\\sqrt n$:",
            (eq(sp.Symbol("C_n"), finite_bound), lhs_eq("C_n|_{r=1}", boundary_bound)),
        ),
        Step(
            "Outside ($r > 1$), the ratio of successive bounds tends to $\\sqrt r$: the growth "
            "factor per step and its rate in time $t = n\\eta$ (exact-decay rates):",
            (
                lhs_eq("\\lim_{n\\to\\infty} C_{n+1}/C_n", growth),
                lhs_eq("\\ln(\\beta_1/\\sqrt{\\beta_2})/\\eta", growth_continuous),
            ),
        ),
        Step(
            "Continuous form: with $\\beta_1 = e^{-a\\eta}$, $\\beta_2 = e^{-b\\eta}$ the "
            "condition becomes (taking logarithms):",
            (iff(condition.subs(decays), log_condition, continuous_condition),),
        ),
        Step(
            "and the bound's $\\eta \\to 0$ limit, equal to the Cauchy-Schwarz bound of the "
            "kernels $a e^{-a\\tau}$, $b e^{-b\\tau}$ (integral converges iff $b < 2a$):",
            (
                eq(C, bound_continuous),
                eq(sp.Integral(kernel_sq, (tau, 0, sp.oo)), integral_b),
            ),
        ),
        Step(
            "With the Euler rates $a = (1-\\beta_1)/\\eta$, $b = (1-\\beta_2)/\\eta$ the "
            "continuous condition reads differently in $(\\beta_1, \\beta_2)$:",
            (iff(continuous_condition.subs(euler), euler_condition),),
        ),
        Step(
            "With the paper's backward rates $a = (1-\\beta_1)/(\\beta_1\\eta)$, "
            "$b = (1-\\beta_2)/(\\beta_2\\eta)$ it is the paper's criterion $C > 0$; outside, "
            "the bound grows by $(b/2 - a)\\eta = -C/2$ per step, the paper's $|C|/2$:",
            (
                iff(continuous_condition.subs(paper), paper_condition),
                eq(C, paper_criterion),
                lhs_eq("(b/2 - a)\\eta", growth_per_step["paper"]),
            ),
        ),
    )
    results = {
        "condition": condition,
        "bound": bound,
        "finite_bound": finite_bound,
        "boundary_bound": boundary_bound,
        "growth_factor": growth,
        "continuous_condition": continuous_condition,
        "continuous_bound": bound_continuous,
        "continuous_growth_rate": growth_continuous,
        "euler_condition": euler_condition,
        "paper_condition": paper_condition,
        "paper_criterion": paper_criterion,
        "exact_growth_per_step": growth_per_step["exact"],
        "euler_growth_per_step": growth_per_step["euler"],
        "paper_growth_per_step": growth_per_step["paper"],
    }
    return Derivation(
        "stability", "The Cauchy-Schwarz bound and the stable region", steps, plain(results)
    )


def stability_condition(form: str = "discrete", *, convention: str | None = None) -> sp.Rel:
    r"""The bounded-update condition derived by `stability` (theory/stability.md §1).

    ``form``: ``"discrete"``: :math:`\beta_2 > \beta_1^2`; ``"continuous"``: :math:`b < 2a`;
    ``"euler"``: the continuous one under Euler rates, :math:`\beta_2 > 2\beta_1 - 1`.
    ``convention`` (overrides ``form``): the continuous condition under that convention's
    rates: ``"exact"`` gives the discrete one, ``"euler"`` as above, ``"paper"`` (backward
    rates) :math:`\beta_2 > \beta_1/(2-\beta_1)`, i.e. the paper's :math:`C > 0`.

    Parameters
    ----------
    form : str, optional
        ``"discrete"`` (default), ``"continuous"`` or ``"euler"`` (``"paper"`` is
        accepted too: the same as ``convention="paper"``).
    convention : str | None, optional
        ``"exact"``, ``"euler"`` or ``"paper"``; overrides ``form`` (default ``None``).

    Returns
    -------
    sympy.Rel
        The condition, in ``beta_1``, ``beta_2`` (or ``a``, ``b`` for ``"continuous"``).

    Raises
    ------
    ValueError
        An unknown ``form`` or ``convention``.
    RuntimeError
        A check of `stability` fails.

    Examples
    --------
    >>> import sympy as sp
    >>> from adamflow.symbolic import stability_condition
    >>> stability_condition(), stability_condition("continuous"), stability_condition("euler")
    (beta_2 > beta_1**2, b < 2*a, beta_2 > 2*beta_1 - 1)
    >>> b1 = sp.Symbol("beta_1")
    >>> sp.simplify(stability_condition(convention="paper").rhs - b1 / (2 - b1)) == 0
    True
    """
    if convention is not None:
        form = {"exact": "discrete", "euler": "euler", "paper": "paper"}.get(convention, "")
        if not form:
            raise ValueError(f"convention must be 'exact', 'euler' or 'paper', got {convention!r}")
    key = {
        "discrete": "condition",
        "continuous": "continuous_condition",
        "euler": "euler_condition",
        "paper": "paper_condition",
    }.get(form)
    if key is None:
        raise ValueError(f"form must be 'discrete', 'continuous', 'euler' or 'paper', got {form!r}")
    return stability().results[key]


def growth_per_step(convention: str = "exact") -> sp.Expr:
    r"""Per-step log growth of the update bound outside the stable region,
    :math:`(b/2 - a)\eta` with the convention's rates: :math:`\ln(\beta_1/\sqrt{\beta_2})`
    (``"exact"``), :math:`((1-\beta_2) - 2(1-\beta_1))/2` (``"euler"``), :math:`-C/2`
    (``"paper"``) (theory/stability.md §1).

    Parameters
    ----------
    convention : str, optional
        ``"exact"`` (default), ``"euler"`` or ``"paper"``.

    Returns
    -------
    sympy.Expr
        The per-step log growth, in ``beta_1``, ``beta_2``.

    Raises
    ------
    ValueError
        An unknown ``convention``.
    RuntimeError
        A check of `stability` fails.

    Examples
    --------
    >>> import sympy as sp
    >>> from adamflow.symbolic import growth_per_step
    >>> b1, b2 = sp.symbols("beta_1 beta_2")
    >>> round(float(growth_per_step().subs({b1: 0.9, b2: 0.5})), 6)  # ln(0.9/sqrt(0.5))
    0.241213
    >>> sp.expand(growth_per_step("euler") - ((1 - b2) - 2 * (1 - b1)) / 2) == 0
    True
    """
    if convention not in ("exact", "euler", "paper"):
        raise ValueError(f"convention must be 'exact', 'euler' or 'paper', got {convention!r}")
    return stability().results[f"{convention}_growth_per_step"]


def paper_criterion() -> sp.Expr:
    r"""The paper's stability quantity :math:`C = 2(1-\beta_1)/\beta_1 - (1-\beta_2)/\beta_2`,
    derived as :math:`-2(b/2 - a)\eta` under its backward rates (theory/stability.md §1).

    Returns
    -------
    sympy.Expr
        :math:`C`, in ``beta_1``, ``beta_2``.

    Raises
    ------
    RuntimeError
        A check of `stability` fails.

    Examples
    --------
    >>> import sympy as sp
    >>> from adamflow.symbolic import paper_criterion
    >>> b1, b2 = sp.symbols("beta_1 beta_2")
    >>> sp.simplify(paper_criterion() - (2 * (1 - b1) / b1 - (1 - b2) / b2)) == 0
    True
    """
    return stability().results["paper_criterion"]


def level_conditions(k: int) -> tuple[sp.Rel, ...]:
    r"""k-Adam: level i is bounded iff :math:`\beta_{2,i} > \beta_{1,i}^2` (symbols
    ``beta_1,i``, ``beta_2,i``; for ``k = 1`` the plain ``beta_1``, ``beta_2``)
    (theory/kadam.md §3).

    Parameters
    ----------
    k : int
        The number of levels (>= 1).

    Returns
    -------
    tuple[sympy.Rel, ...]
        One condition per level, level 1 first.

    Raises
    ------
    ValueError
        ``k`` not an integer >= 1.
    RuntimeError
        A check of `stability` fails.

    Examples
    --------
    >>> from adamflow.symbolic import level_conditions
    >>> level_conditions(2)
    (beta_2,1 > beta_1,1**2, beta_2,2 > beta_1,2**2)
    """
    k = check_k(k)
    condition = stability_condition()
    conditions = []
    for i in range(1, k + 1):
        names = level_names(k, i)
        renamed = {sp.Symbol(B1): sp.Symbol(names.b1), sp.Symbol(B2): sp.Symbol(names.b2)}
        conditions.append(relational(condition.xreplace(renamed)))
    return tuple(conditions)


def update_bound(n: int | sp.Symbol | None = None, form: str = "discrete") -> sp.Expr:
    r"""The bound :math:`C(\beta_1,\beta_2) = (1-\beta_1)/\sqrt{(1-\beta_2)(1-\beta_1^2/\beta_2)}`
    on :math:`|m_n|/\sqrt{v_n}` (``n=None``), or the finite-n bound
    :math:`\sqrt{\sum_{j<n} w_j^2/c_j}` (``n`` an integer or Symbol; a Piecewise with the
    boundary case). ``form="continuous"``: :math:`a/\sqrt{b(2a-b)}` (theory/stability.md §1).

    Parameters
    ----------
    n : int | sympy.Symbol | None, optional
        ``None`` (default): the bound for every n; else the step n (an integer >= 1 or a
        Symbol).
    form : str, optional
        ``"discrete"`` (default, in ``beta_1``, ``beta_2``) or ``"continuous"`` (in ``a``,
        ``b``).

    Returns
    -------
    sympy.Expr
        The bound.

    Raises
    ------
    ValueError
        An unknown ``form``; ``n`` given with ``form="continuous"``; an integer ``n`` < 1.
    RuntimeError
        A check of `stability` fails.

    Examples
    --------
    >>> import sympy as sp
    >>> from adamflow.symbolic import update_bound
    >>> b1, b2 = sp.symbols("beta_1 beta_2")
    >>> at = {b1: 0.9, b2: 0.999}  # Adam's defaults
    >>> round(float(update_bound().subs(at)), 4), round(float(update_bound(1).subs(at)), 4)
    (7.2703, 3.1623)
    >>> update_bound(form="continuous")
    a/(sqrt(b)*sqrt(2*a - b))
    """
    results = stability().results
    if form == "continuous":
        if n is not None:
            raise ValueError("the continuous form has no finite-n bound; pass n=None")
        return results["continuous_bound"]
    if form != "discrete":
        raise ValueError(f"form must be 'discrete' or 'continuous', got {form!r}")
    if n is None:
        return results["bound"]
    if isinstance(n, int) and n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return expr(results["finite_bound"].xreplace({sp.Symbol("n"): n}))


def growth_factor() -> sp.Expr:
    r"""Per-step growth factor of the bound outside the stable region:
    :math:`\beta_1/\sqrt{\beta_2}` (theory/stability.md §1).

    Returns
    -------
    sympy.Expr
        The factor, in ``beta_1``, ``beta_2``.

    Raises
    ------
    RuntimeError
        A check of `stability` fails.

    Examples
    --------
    >>> from adamflow.symbolic import growth_factor
    >>> growth_factor()
    beta_1/sqrt(beta_2)
    """
    return stability().results["growth_factor"]


@functools.cache
def amplification() -> Derivation:
    r"""The :math:`\varepsilon`-capped amplification of a coordinate whose gradient of size
    :math:`G` switches off (theory/stability.md §2): :math:`(G/\varepsilon)^{1-p}`,
    :math:`p = 2\ln(1/\beta_1)/\ln(1/\beta_2)` (leading), and its exact maximum
    :math:`p^p (1-p)^{1-p} (G/\varepsilon)^{1-p}`.

    Returns
    -------
    Derivation
        Its steps and results ``leading``, ``exact`` (in ``G``, ``epsilon`` and ``p``),
        ``p`` (in ``beta_1``, ``beta_2``) and ``y_star``. Cached.

    Raises
    ------
    RuntimeError
        A check of the derivation fails (sympy found another result than the one derived
        from `adamflow.rules`).

    Examples
    --------
    >>> from adamflow.symbolic import amplification
    >>> results = amplification().results
    >>> results["p"]
    2*log(beta_1)/log(beta_2)
    """
    b1, b2, G, eps = pos(B1), pos(B2), pos("G"), pos("epsilon")
    nu = pos("nu")
    k = sp.Symbol("n", integer=True, nonnegative=True)
    m_seq, v_seq = sp.Function("m"), sp.Function("v")
    # Gradient off from step 0, moments in equilibrium m = G, v = G^2 (bias correction ~ 1).
    m_n = expr(
        sp.rsolve(
            m_seq(k) - (m_seq(k - 1) + rules.ema_increment(m_seq(k - 1), 0, 1 - b1)),
            m_seq(k),
            {m_seq(0): G},
        )
    )
    v_n = expr(
        sp.rsolve(
            v_seq(k) - (v_seq(k - 1) + rules.ema_increment(v_seq(k - 1), 0, 1 - b2)),
            v_seq(k),
            {v_seq(0): G**2},
        )
    )
    update = rules.normalized_update(m_n, v_n, eps, SYMPY_OPS).subs(k, nu)
    update = sp.powdenest(update, force=True)
    # Leading order: growth stops when sqrt(v) reaches eps; there u ~ m / eps.
    n_cap = sp.solve(sp.Eq(sp.sqrt(v_n.subs(k, nu)), eps), nu)[0]
    n_cap_shown = sp.simplify(sp.expand_log(n_cap, force=True))
    capped = sp.powsimp((m_n.subs(k, nu) / eps).subs(nu, n_cap), force=True)
    log_capped = sp.factor(sp.expand_log(sp.log(capped), force=True))
    exponent = sp.simplify(log_capped / (sp.log(G) - sp.log(eps)))
    leading = (G / eps) ** exponent
    if sp.simplify(sp.expand_log(sp.log(leading) - sp.log(capped), force=True)) != 0:
        raise RuntimeError("leading amplification: exponent extraction failed")
    # Exact maximum over continuous n: with b1 = b2^(p/2) and y = b2^(n/2) in (0, 1].
    p, y = pos("p"), pos("y")
    exact_p = sp.solve(sp.Eq(b2 ** (p / 2), b1), p)[0]
    in_y = G * y**p / (G * y + eps)
    y_star = sp.solve(sp.diff(in_y, y), y)[0]
    q = pos("q")  # q = 1 - p > 0 inside the unstable region
    peak = sp.simplify(sp.powsimp(in_y.subs(y, y_star).subs(p, 1 - q), force=True))
    peak = sp.powsimp(sp.powdenest(peak, force=True), force=True).subs(q, 1 - p)
    steps = (
        Step(
            "A coordinate's gradient of size $G$ switches off at $n = 0$ after a long run "
            "($m = G$, $v = G^2$, bias corrections $\\approx 1$); `rsolve` of the EMA rule "
            "with zero drive gives the update at step $\\nu$:",
            (eq(sp.Symbol("u_nu"), update),),
        ),
        Step(
            "It grows by $\\beta_1/\\sqrt{\\beta_2}$ per step while $\\sqrt{v}$ is above "
            "$\\varepsilon$; $\\sqrt{v}$ reaches $\\varepsilon$ at",
            (eq(sp.Symbol("nu_*"), n_cap_shown),),
        ),
        Step(
            "where $u \\approx m/\\varepsilon$, which sympy rewrites as a power of "
            "$G/\\varepsilon$ (the leading estimate, an exponent $< 1$ exactly when "
            "$\\beta_2 < \\beta_1^2$):",
            (eq(sp.Symbol("u_max"), leading),),
        ),
        Step(
            "Exactly: write $\\beta_1 = \\beta_2^{p/2}$ and $y = \\beta_2^{\\nu/2} \\in (0, 1]$; "
            "the update is a function of $y$ whose maximum sits where its derivative vanishes:",
            (
                eq(p, exact_p),
                eq(sp.Symbol("u(y)"), in_y),
                eq(sp.Symbol("y_*"), y_star),
            ),
        ),
        Step(
            "so the largest update is the leading estimate times a factor between 1/2 and 1 "
            "(for $0<p<1$, when $y_* < 1$ is reached; otherwise the largest is the first, "
            "$G/(G+\\varepsilon)$):",
            (eq(sp.Symbol("u_max"), peak),),
        ),
    )
    results = {"leading": leading, "exact": peak, "p": exact_p, "y_star": y_star}
    return Derivation(
        "amplification", "The $\\varepsilon$-capped amplification", steps, plain(results)
    )


def eps_capped_amplification(sharp: bool = False) -> sp.Expr:
    r"""Largest update of a coordinate whose gradient of size ``G`` switches off, in the
    unstable region: :math:`(G/\varepsilon)^{1 - 2\ln(1/\beta_1)/\ln(1/\beta_2)}`
    (theory/stability.md §2), or with ``sharp=True`` the exact maximum
    :math:`p^p(1-p)^{1-p}(G/\varepsilon)^{1-p}` (symbol ``p``, see
    ``amplification().results["p"]``).

    Parameters
    ----------
    sharp : bool, optional
        ``False`` (default): the leading estimate; ``True``: the exact maximum.

    Returns
    -------
    sympy.Expr
        The largest update, in ``G``, ``epsilon`` and ``beta_1``, ``beta_2`` (or ``p``).

    Raises
    ------
    RuntimeError
        A check of `amplification` fails.

    Examples
    --------
    :math:`G/\varepsilon = 10^8` at (0.9, 0.5): about :math:`10^{5.3}` (compare
    `adamflow.phase.predicted_peak`):

    >>> import sympy as sp
    >>> from adamflow.symbolic import amplification, eps_capped_amplification
    >>> at = dict(zip(sp.symbols("beta_1 beta_2 G epsilon"), (0.9, 0.5, 1.0, 1e-8)))
    >>> at[sp.Symbol("p")] = amplification().results["p"].subs(at)
    >>> [round(float(sp.log(eps_capped_amplification(s).subs(at), 10)), 3) for s in (False, True)]
    [5.568, 5.301]
    """
    results = amplification().results
    return results["exact"] if sharp else results["leading"]


@functools.cache
def kadam_levels() -> Derivation:
    r"""k-Adam's stable region level by level, and the top level's bound on the final update
    (theory/kadam.md §3); shown for ``k = 2``.

    Returns
    -------
    Derivation
        Its steps and results ``conditions`` (`level_conditions` ``(2)``) and ``top_bound``
        (`update_bound` in level 2's factors). Cached.

    Raises
    ------
    RuntimeError
        A check of `stability` fails.

    Examples
    --------
    >>> from adamflow.symbolic import kadam_levels
    >>> kadam_levels().results["conditions"]
    (beta_2,1 > beta_1,1**2, beta_2,2 > beta_1,2**2)
    """
    conditions = level_conditions(2)
    top_names = level_names(2, 2)
    top = update_bound().xreplace(
        {sp.Symbol(B1): sp.Symbol(top_names.b1), sp.Symbol(B2): sp.Symbol(top_names.b2)}
    )
    steps = (
        Step(
            "Each level is an Adam normaliser of its own input sequence, so the bound of "
            "stability.md §1 applies level by level: level $i$ is bounded iff",
            (conditions,),
        ),
        Step(
            "and the final update obeys the top level's bound whatever the lower levels do "
            "(a stable top level absorbs an unstable lower one):",
            (r"|u^{(2)}| \le " + latex(top),),
        ),
    )
    return Derivation(
        "kadam_levels",
        "Stability level by level",
        steps,
        {"conditions": conditions, "top_bound": top},
    )
