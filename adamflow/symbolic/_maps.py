r"""The discrete step and the leading-order flow of the k-level cascade, built from `rules`.

`discrete_map` (theory/adam.md §3, theory/adamw.md §1, theory/kadam.md §1), `leading_flow`
(theory/adam.md §4, theory/adamw.md §2, theory/kadam.md §2), `decoupled_decay`
(theory/adamw.md §3), and their `sympy.lambdify` as NumPy functions
(`discrete_step_function`, `leading_field_function`), which the tests compare with the
numerical code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import sympy as sp

from .. import rules
from ._derivation import Derivation, Step, eq, latex
from ._rates import moment_rates
from ._symbols import B1, B2, SYMPY_OPS, check_k, expr, level_names, plain, pos, real


class _Level(NamedTuple):
    m: sp.Symbol
    v: sp.Symbol
    b1: sp.Symbol
    b2: sp.Symbol
    a: sp.Symbol
    b: sp.Symbol


def _levels(k: int) -> tuple[_Level, ...]:
    out = []
    for i in range(1, k + 1):
        names = level_names(k, i)
        out.append(
            _Level(
                real(names.m),
                pos(names.v),
                pos(names.b1),
                pos(names.b2),
                pos(names.a),
                pos(names.b),
            )
        )
    return tuple(out)


def _update_symbol(k: int, i: int) -> sp.Symbol:
    return sp.Symbol("g" if i == 0 else ("u" if k == 1 else f"u^({i})"))


@functools.cache
def discrete_map(k: int = 1, weight_decay: bool = True) -> Derivation:
    r"""The one-step map of the k-level cascade (theory/adam.md §3), built from `rules`.

    With :math:`u^{(0)}_n = g`:
    :math:`m^{(i)}_n = m^{(i)} + (1-\beta_{1,i})(u^{(i-1)}_n - m^{(i)})`,
    :math:`v^{(i)}_n` likewise with the square and :math:`\beta_{2,i}`,
    :math:`u^{(i)}_n = [m^{(i)}_n/(1-\beta_{1,i}^n)]/(\sqrt{v^{(i)}_n/(1-\beta_{2,i}^n)}
    +\varepsilon)`, and :math:`\theta_n = \theta + \eta\,(-(u^{(k)}_n + \lambda\theta))`.
    Results: ``theta``, ``m_i``, ``v_i``, ``u_i`` (``i`` from 1) as expressions of the
    previous state.

    Parameters
    ----------
    k : int, optional
        The number of levels (>= 1; default 1, Adam).
    weight_decay : bool, optional
        With AdamW's decoupled weight decay ``lambda`` (default) or without (0).

    Returns
    -------
    Derivation
        Its steps and results, in ``theta``, ``g``, ``eta``, ``epsilon``, ``lambda``,
        ``n`` and each level's ``m``, ``v``, ``beta_1``, ``beta_2`` (``m_i``, ``beta_1,i``,
        … for ``k >= 2``). Cached per ``(k, weight_decay)``.

    Raises
    ------
    ValueError
        ``k`` not an integer >= 1.

    Examples
    --------
    >>> import sympy as sp
    >>> from adamflow.symbolic import discrete_map
    >>> step = discrete_map(1, weight_decay=False).results
    >>> beta_1, g, m = sp.symbols("beta_1 g m")
    >>> sp.expand(step["m_1"] - (beta_1 * m + (1 - beta_1) * g)) == 0
    True
    >>> sorted(discrete_map(2).results)
    ['m_1', 'm_2', 'theta', 'u_1', 'u_2', 'v_1', 'v_2']
    """
    k = check_k(k)
    levels = _levels(k)
    n, eta, eps = sp.Symbol("n", positive=True, integer=True), pos("eta"), pos("epsilon")
    theta, g = real("theta"), real("g")
    lam = pos("lambda") if weight_decay else sp.Integer(0)
    drive: sp.Expr = g
    results: dict[str, Any] = {}
    steps = []
    for i, lv in enumerate(levels, start=1):
        m_new = lv.m + rules.ema_increment(lv.m, drive, 1 - lv.b1)
        v_new = lv.v + rules.ema_increment(lv.v, drive**2, 1 - lv.b2)
        bc_m = rules.bias_correction(n * rules.decay_per_step(lv.b1, SYMPY_OPS), SYMPY_OPS)
        bc_v = rules.bias_correction(n * rules.decay_per_step(lv.b2, SYMPY_OPS), SYMPY_OPS)
        update = expr(rules.normalized_update(m_new / bc_m, v_new / bc_v, eps, SYMPY_OPS))
        x_sym, u_sym = _update_symbol(k, i - 1), _update_symbol(k, i)
        shown_m = lv.m + rules.ema_increment(lv.m, x_sym, 1 - lv.b1)
        shown_v = lv.v + rules.ema_increment(lv.v, x_sym**2, 1 - lv.b2)
        level_mark = "" if k == 1 else f"^({i})"
        mn, vn = sp.Symbol(f"m{level_mark}_n"), sp.Symbol(f"v{level_mark}_n")
        shown_u = rules.normalized_update(
            mn / bc_m.rewrite(sp.Pow),
            vn / bc_v.rewrite(sp.Pow),
            eps,
            SYMPY_OPS,
        )
        level = "The moments" if k == 1 else f"Level {i}: the moments"
        steps.append(
            Step(
                f"{level} are updated by `rules.ema_increment`, bias-corrected by "
                "`rules.bias_correction` and normalised by `rules.normalized_update` "
                f"(drive ${latex(x_sym)}$, step $n$):",
                (
                    (eq(mn, shown_m), eq(vn, shown_v)),
                    eq(sp.Symbol(f"{u_sym.name}_n"), shown_u),
                ),
            )
        )
        results[f"m_{i}"], results[f"v_{i}"], results[f"u_{i}"] = m_new, v_new, update
        drive = update
    theta_new = theta + eta * rules.parameter_velocity(drive, theta, lam)
    u_top = sp.Symbol(f"{_update_symbol(k, k).name}_n")
    steps.append(
        Step(
            "The parameters move by the learning rate times `rules.parameter_velocity`"
            + (" (decoupled weight decay $\\lambda$):" if weight_decay else " ($\\lambda = 0$):"),
            (eq(sp.Symbol("theta_n"), theta + eta * rules.parameter_velocity(u_top, theta, lam)),),
        )
    )
    results["theta"] = theta_new
    title = "The discrete step" if k == 1 else f"The discrete step of {k}-Adam"
    return Derivation(f"discrete_map_k{k}", title, tuple(steps), plain(results))


class DiscreteStep(NamedTuple):
    r"""Numbers from `discrete_step_function`: new ``theta``, moments per level, update.

    Attributes
    ----------
    theta : Any
        The new parameters :math:`\theta_n`.
    m : tuple[Any, ...]
        The new first moments, level 1 first.
    v : tuple[Any, ...]
        The new second moments, level 1 first.
    u : Any
        The top level's update :math:`u_n`.

    Examples
    --------
    >>> from adamflow.symbolic import DiscreteStep
    >>> step = DiscreteStep(theta=0.9, m=(0.2,), v=(0.004,), u=1.0)
    >>> step.u, step.m[0]
    (1.0, 0.2)
    """

    theta: Any
    m: tuple[Any, ...]
    v: tuple[Any, ...]
    u: Any


def discrete_step_function(k: int = 1) -> Callable[..., DiscreteStep]:
    r"""`sympy.lambdify` of `discrete_map` (with weight decay) as a NumPy function
    ``f(n, theta, m, v, g, lr, b1, b2, eps, weight_decay) -> DiscreteStep``, where
    ``m, v, b1, b2`` are length-k sequences (level 1 first; ``b1``: the momentum factors
    :math:`\beta_{1,i}`, ``b2``: the second-moment factors :math:`\beta_{2,i}`) and ``n`` is
    the new step count.

    Parameters
    ----------
    k : int, optional
        The number of levels (>= 1; default 1, Adam).

    Returns
    -------
    Callable[..., DiscreteStep]
        The step, NumPy-vectorised in its arguments. Cached per ``k``.

    Raises
    ------
    ValueError
        ``k`` not an integer >= 1.

    Examples
    --------
    First step of Adam from zero moments, gradient 2: :math:`\hat m = 2`,
    :math:`\hat v = 4`, so :math:`u = 1`:

    >>> from adamflow.symbolic import discrete_step_function
    >>> step = discrete_step_function(1)
    >>> out = step(1, 1.0, [0.0], [0.0], 2.0, 0.1, [0.9], [0.999], 0.0, 0.0)
    >>> round(float(out.theta), 6), round(float(out.u), 6), round(float(out.m[0]), 6)
    (0.9, 1.0, 0.2)
    """
    k = check_k(k)
    return _discrete_step_function(k)


@functools.cache
def _discrete_step_function(k: int) -> Callable[..., DiscreteStep]:
    results = discrete_map(k, True).results
    S = sp.Symbol
    names = [level_names(k, i) for i in range(1, k + 1)]
    args = (
        [S("n"), S("theta")]
        + [S(nm.m) for nm in names]
        + [S(nm.v) for nm in names]
        + [S("g"), S("eta")]
        + [S(nm.b1) for nm in names]
        + [S(nm.b2) for nm in names]
        + [S("epsilon"), S("lambda")]
    )
    outputs = (
        [results["theta"]]
        + [results[f"m_{i}"] for i in range(1, k + 1)]
        + [results[f"v_{i}"] for i in range(1, k + 1)]
        + [results[f"u_{k}"]]
    )
    numeric = sp.lambdify(args, outputs, modules="numpy")

    def step(
        n: Any,
        theta: Any,
        m: Sequence[Any],
        v: Sequence[Any],
        g: Any,
        lr: Any,
        b1: Sequence[Any],
        b2: Sequence[Any],
        eps: Any,
        weight_decay: Any,
    ) -> DiscreteStep:
        out = numeric(n, theta, *m, *v, g, lr, *b1, *b2, eps, weight_decay)
        return DiscreteStep(out[0], tuple(out[1 : 1 + k]), tuple(out[1 + k : 1 + 2 * k]), out[-1])

    return step


@functools.cache
def leading_flow(k: int = 1, weight_decay: bool = True) -> Derivation:
    r"""The leading-order flow of the k-level cascade (theory/adam.md §4), built from
    `rules`: :math:`\dot m_i = a_i(u^{(i-1)} - m_i)`, :math:`\dot v_i = b_i((u^{(i-1)})^2 -
    v_i)`, :math:`u^{(i)} = \hat m_i/(\sqrt{\hat v_i}+\varepsilon)`,
    :math:`\hat m_i = m_i/(1-e^{-a_i t})`, :math:`\dot\theta = -(u^{(k)} + \lambda\theta)`.
    Results: ``theta``, ``m_i``, ``v_i`` (time derivatives) and ``u_i``.

    Parameters
    ----------
    k : int, optional
        The number of levels (>= 1; default 1, Adam).
    weight_decay : bool, optional
        With AdamW's decoupled weight decay ``lambda`` (default) or without (0).

    Returns
    -------
    Derivation
        Its steps and results, in ``t``, ``theta``, ``g``, ``epsilon``, ``lambda`` and each
        level's ``m``, ``v``, ``a``, ``b`` (``m_i``, ``a_i``, … for ``k >= 2``). Cached per
        ``(k, weight_decay)``.

    Raises
    ------
    ValueError
        ``k`` not an integer >= 1.
    RuntimeError
        A check of `moment_rates` (which gives the rates shown) fails.

    Examples
    --------
    >>> import sympy as sp
    >>> from adamflow.symbolic import leading_flow
    >>> flow = leading_flow(1).results
    >>> a, g, m = sp.symbols("a g m")
    >>> flow["m_1"] == a * (g - m)
    True
    """
    k = check_k(k)
    levels = _levels(k)
    t, eps = pos("t"), pos("epsilon")
    theta, g = real("theta"), real("g")
    lam = pos("lambda") if weight_decay else sp.Integer(0)
    rates = moment_rates().results
    steps = [
        Step(
            "The parameter step $\\theta_n = \\theta_{n-1} + \\eta\\,v(u_n, \\theta_{n-1})$ "
            "with $t = n\\eta$ is the Euler step of $\\dot\\theta = v(u, \\theta)$ "
            "(`rules.parameter_velocity`); the parameters move on the slow scale $O(1)$:",
            (
                eq(
                    sp.Symbol("thetadot"),
                    rules.parameter_velocity(_update_symbol(k, k), theta, lam),
                ),
            ),
        )
    ]
    drive: sp.Expr = g
    results: dict[str, Any] = {}
    for i, lv in enumerate(levels, start=1):
        dm = rules.ema_increment(lv.m, drive, lv.a)
        dv = rules.ema_increment(lv.v, drive**2, lv.b)
        mhat = lv.m / rules.bias_correction(lv.a * t, SYMPY_OPS)
        vhat = lv.v / rules.bias_correction(lv.b * t, SYMPY_OPS)
        update = expr(rules.normalized_update(mhat, vhat, eps, SYMPY_OPS))
        x_sym, u_sym = _update_symbol(k, i - 1), _update_symbol(k, i)
        suffix = "" if k == 1 else f"_{i}"
        shown = (
            eq(sp.Symbol(f"mdot{suffix}"), rules.ema_increment(lv.m, x_sym, lv.a)),
            eq(sp.Symbol(f"vdot{suffix}"), rules.ema_increment(lv.v, x_sym**2, lv.b)),
        )
        rate_m = rates["a_exact"].subs(sp.Symbol(B1), sp.Symbol(lv.b1.name))
        rate_v = rates["b_exact"].subs(sp.Symbol(B2), sp.Symbol(lv.b2.name))
        level = "" if k == 1 else f"Level {i} (drive ${latex(x_sym)}$): "
        steps.append(
            Step(
                f"{level}each moment relaxes towards its drive at the rate that reproduces "
                "the discrete decay (adam.md §1), "
                f"${latex(eq(sp.Symbol(lv.a.name), rate_m))}$, "
                f"${latex(eq(sp.Symbol(lv.b.name), rate_v))}$:",
                (shown,),
            )
        )
        steps.append(
            Step(
                "The update divides the bias-corrected moments (`rules.bias_correction` with "
                "exponent $a t$, `rules.normalized_update`):",
                (eq(u_sym, update),),
            )
        )
        results[f"m_{i}"], results[f"v_{i}"], results[f"u_{i}"] = dm, dv, update
        drive = update
    results["theta"] = rules.parameter_velocity(drive, theta, lam)
    name = {1: "AdamW" if weight_decay else "Adam"}.get(k, f"{k}-Adam")
    return Derivation(
        f"leading_flow_k{k}{'_wd' if weight_decay else ''}",
        f"The leading-order flow of {name}",
        tuple(steps),
        plain(results),
    )


class FieldValue(NamedTuple):
    r"""Numbers from `leading_field_function`: ``dtheta`` and ``dm, dv`` per level.

    Attributes
    ----------
    theta : Any
        :math:`\dot\theta`.
    m : tuple[Any, ...]
        :math:`\dot m_i`, level 1 first.
    v : tuple[Any, ...]
        :math:`\dot v_i`, level 1 first.

    Examples
    --------
    >>> from adamflow.symbolic import FieldValue
    >>> FieldValue(theta=-0.5, m=(1.0,), v=(0.0,)).theta
    -0.5
    """

    theta: Any
    m: tuple[Any, ...]
    v: tuple[Any, ...]


def leading_field_function(k: int = 1, weight_decay: bool = True) -> Callable[..., FieldValue]:
    r"""`sympy.lambdify` of `leading_flow` as a NumPy function
    ``f(t, theta, m, v, g, a, b, eps, weight_decay=0) -> FieldValue`` (``m, v, a, b``:
    length-k sequences; ``g`` the gradient at ``theta``). Valid for ``t > 0``.

    Parameters
    ----------
    k : int, optional
        The number of levels (>= 1; default 1, Adam).
    weight_decay : bool, optional
        Derive the field with ``lambda`` (default); without it the function's
        ``weight_decay`` argument is ignored.

    Returns
    -------
    Callable[..., FieldValue]
        The field, NumPy-vectorised in its arguments. Cached per ``(k, weight_decay)``.

    Raises
    ------
    ValueError
        ``k`` not an integer >= 1.
    RuntimeError
        A check of `moment_rates` (through `leading_flow`) fails.

    Examples
    --------
    Late in time (bias corrections 1): :math:`u = m/\sqrt v = 1/2`:

    >>> from adamflow.symbolic import leading_field_function
    >>> field = leading_field_function(1)
    >>> out = field(100.0, 0.0, [1.0], [4.0], 2.0, [1.0], [1.0], 0.0)
    >>> round(float(out.theta), 6), float(out.m[0]), float(out.v[0])
    (-0.5, 1.0, 0.0)
    """
    k = check_k(k)
    return _leading_field_function(k, bool(weight_decay))


@functools.cache
def _leading_field_function(k: int, weight_decay: bool) -> Callable[..., FieldValue]:
    results = leading_flow(k, weight_decay).results
    S = sp.Symbol
    names = [level_names(k, i) for i in range(1, k + 1)]
    args = (
        [S("t"), S("theta")]
        + [S(nm.m) for nm in names]
        + [S(nm.v) for nm in names]
        + [S("g")]
        + [S(nm.a) for nm in names]
        + [S(nm.b) for nm in names]
        + [S("epsilon"), S("lambda")]
    )
    outputs = (
        [results["theta"]]
        + [results[f"m_{i}"] for i in range(1, k + 1)]
        + [results[f"v_{i}"] for i in range(1, k + 1)]
    )
    numeric = sp.lambdify(args, outputs, modules="numpy")

    def field_value(
        t: Any,
        theta: Any,
        m: Sequence[Any],
        v: Sequence[Any],
        g: Any,
        a: Sequence[Any],
        b: Sequence[Any],
        eps: Any,
        weight_decay: Any = 0.0,
    ) -> FieldValue:
        out = numeric(t, theta, *m, *v, g, *a, *b, eps, weight_decay)
        return FieldValue(out[0], tuple(out[1 : 1 + k]), tuple(out[1 + k :]))

    return field_value


@functools.cache
def decoupled_decay() -> Derivation:
    r"""The decay factor :math:`1-\eta\lambda` of AdamW's step: exact rate
    :math:`-\ln(1-\eta\lambda)/\eta = \lambda + \eta\lambda^2/2 + O(\eta^2)`
    (theory/adamw.md §3).

    Returns
    -------
    Derivation
        Its steps and the result ``rate`` (in ``eta``, ``lambda``). Cached.

    Raises
    ------
    Nothing: it checks nothing of its own result; sympy's errors would propagate.

    Examples
    --------
    >>> import sympy as sp
    >>> from adamflow.symbolic import decoupled_decay
    >>> rate = decoupled_decay().results["rate"]
    >>> eta, lam = sp.symbols("eta lambda")
    >>> sp.expand(sp.series(rate, eta, 0, 2).removeO() - (lam + eta * lam**2 / 2)) == 0
    True
    """
    eta, lam, rho = pos("eta"), pos("lambda"), real("rho")
    theta = real("theta")
    step_without_update = theta + eta * rules.parameter_velocity(0, theta, lam)
    factor = sp.factor(step_without_update / theta)
    rate = sp.solve(sp.Eq(sp.exp(-rho * eta), factor), rho)[0]
    series = sp.series(rate, eta, 0, 2)
    steps = (
        Step(
            "Without an update ($u = 0$) AdamW's step multiplies $\\theta$ by a constant factor:",
            (eq(sp.Symbol("theta_n"), factor * theta),),
        ),
        Step(
            "The decay rate that reproduces it exactly, solved from $e^{-\\rho\\eta}$ = factor, "
            "equals $\\lambda$ to leading order; the $O(\\eta)$ rest is what the corrected "
            "flow's $\\lambda(\\theta - (\\eta/2)\\dot\\theta_0)$ term restores:",
            (eq(rho, rate), eq(rho, series)),
        ),
    )
    return Derivation("decoupled_decay", "Decoupled weight decay", steps, plain({"rate": rate}))
