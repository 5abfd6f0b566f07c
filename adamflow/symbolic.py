r"""The symbolic layer: sympy derives the flows, the bounded-update condition and the corrected
flow from the discrete optimizers (THEORY.md §1-4).

Nothing here is copied from THEORY.md: the discrete recurrences are built by calling the same
`adamflow._rules` functions the numerical code calls, with a sympy namespace
(`SYMPY_OPS`), and every result is obtained from them by a sympy operation (``rsolve``,
``dsolve``, ``solve``, ``summation``, ``limit``, ``integrate``, order-by-order matching in
the learning rate). Each derivation is a `Derivation`: the steps, each with its equations,
and a dict of results, exported as LaTeX (`Derivation.latex`) or Markdown
(`Derivation.markdown`; the ``theory/`` documents are written from them by
``python scripts/make_theory.py``).

Public expressions use assumption-free Symbols named ``beta``, ``gamma``, ``eta``, ``a``,
``b``, ``t``, ``n``, ``epsilon``, ``lambda``, ``g`` (per level ``beta_1``, ``m_1``, …), so
``sympy.Symbol("beta")`` addresses them. Derivations run once per process (cached).

This module imports sympy; ``import adamflow`` does not import it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np
import sympy as sp

from . import _rules

#: The `adamflow._rules` array namespace for symbols: ``expm1(x) = e^x - 1``; ``v >= 0`` is
#: known for the symbolic second moment, so ``clip_nonneg`` is the identity.
SYMPY_OPS = SimpleNamespace(
    sqrt=sp.sqrt,
    expm1=lambda x: sp.exp(x) - 1,
    log=sp.log,
    clip_nonneg=lambda x: x,
)

__all__ = [
    "SYMPY_OPS",
    "Derivation",
    "DiscreteStep",
    "FieldValue",
    "Lags",
    "Step",
    "amplification",
    "bias_corrected_form",
    "bias_correction",
    "corrected_flow",
    "decoupled_decay",
    "derivations",
    "discrete_map",
    "discrete_step_function",
    "eps_capped_amplification",
    "growth_factor",
    "lag_functions",
    "leading_field_function",
    "leading_flow",
    "level_conditions",
    "memory_kernel",
    "moment_rate",
    "moment_rates",
    "stability",
    "stability_condition",
    "theory_documents",
    "update_bound",
]


# --------------------------------------------------------------------------- derivations


@dataclass(frozen=True)
class Step:
    """One step of a derivation: a sentence (Markdown/LaTeX with ``$...$`` inline maths) and
    its display equations (sympy objects, or raw LaTeX strings)."""

    text: str
    math: tuple[Any, ...] = ()


@dataclass(frozen=True, eq=False)
class Derivation:
    """A derivation: title, steps, and its results (sympy expressions by name)."""

    key: str
    title: str
    steps: tuple[Step, ...]
    results: Mapping[str, Any] = field(default_factory=dict)

    def latex(self) -> str:
        r"""The derivation as a LaTeX fragment (``\subsection*`` + text + ``\[...\]``)."""
        lines = [rf"\subsection*{{{_text_to_latex(self.title)}}}", ""]
        for step in self.steps:
            lines += [_text_to_latex(step.text), ""]
            lines += [rf"\[ {_render(item)} \]" for item in step.math]
            if step.math:
                lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    def markdown(self, heading: str = "##") -> str:
        """The derivation as Markdown, equations in ``$$...$$`` blocks."""
        lines = [f"{heading} {self.title}", ""]
        for number, step in enumerate(self.steps, start=1):
            lines += [f"{number}. {step.text}", ""]
            for item in step.math:
                lines += ["$$", _render(item), "$$", ""]
        return "\n".join(lines).rstrip() + "\n"

    def results_latex(self) -> dict[str, str]:
        """Each result as LaTeX."""
        return {name: _render(value) for name, value in self.results.items()}


def _text_to_latex(text: str) -> str:
    """Markdown prose to LaTeX prose: backquoted code to texttt, starred words to emph."""

    def code(match: re.Match[str]) -> str:
        return r"\texttt{" + match.group(1).replace("_", r"\_") + "}"

    text = re.sub(r"`([^`]*)`", code, text)
    return re.sub(r"\*([^*$]+)\*", r"\\emph{\1}", text)


def _render(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, (tuple, list)):
        return r",\qquad ".join(_render(x) for x in item)
    return sp.latex(item)


def _eq(lhs: Any, rhs: Any) -> sp.Eq:
    """An unevaluated equation, for display."""
    return sp.Eq(lhs, rhs, evaluate=False)


def _lhs(latex_text: str, rhs: Any) -> str:
    """An equation with a left-hand side written in LaTeX, for display."""
    return f"{latex_text} = {sp.latex(rhs)}"


def _iff(*items: Any) -> str:
    return r" \;\Longleftrightarrow\; ".join(_render(x) for x in items)


# --------------------------------------------------------------------------- symbols


def _pos(name: str) -> sp.Symbol:
    return sp.Symbol(name, positive=True)


def _real(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def _plain(obj: Any) -> Any:
    """Replace every Symbol by the assumption-free Symbol of the same name."""
    if isinstance(obj, dict):
        return {key: _plain(value) for key, value in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_plain(value) for value in obj)
    if isinstance(obj, sp.Basic):
        return obj.xreplace(
            {s: sp.Symbol(s.name) for s in obj.free_symbols if isinstance(s, sp.Symbol)}
        )
    return obj


def _suffix(k: int, i: int) -> str:
    """Per-level symbol suffix: none for a single level, ``_i`` otherwise."""
    return "" if k == 1 else f"_{i}"


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return k


def _sqrt_positive(expr: sp.Expr, positives: Sequence[sp.Expr]) -> sp.Expr:
    """``sqrt(expr)`` knowing that each sub-expression in ``positives`` is > 0 (sympy cannot
    be told ``beta < 1``; positive placeholders let it split the root)."""
    placeholders = {p: sp.Dummy(positive=True) for p in positives}
    root = sp.sqrt(expr.xreplace(placeholders))
    return root.xreplace({v: k for k, v in placeholders.items()})


# --------------------------------------------------------------------------- §2 rates


@functools.cache
def moment_rates() -> Derivation:
    r"""Derive the moment rates: :math:`a = \ln(1/\beta)/\eta` (exact decay) and
    :math:`a = (1-\beta)/\eta` (Euler), likewise :math:`b` from :math:`\gamma`."""
    beta, gamma, eta, g = _pos("beta"), _pos("gamma"), _pos("eta"), _real("g")
    a_real = _real("a")
    n = sp.Symbol("n", integer=True, nonnegative=True)
    t = sp.Symbol("t", nonnegative=True)
    m_seq, m_fun = sp.Function("m"), sp.Function("m")
    # Discrete EMA from the shared rule, constant drive g, m_0 = 0.
    discrete = m_seq(n - 1) + _rules.ema_increment(m_seq(n - 1), g, 1 - beta)
    m_n = sp.rsolve(m_seq(n) - discrete, m_seq(n), {m_seq(0): 0})
    # Continuous relaxation with rate a, m(0) = 0.
    ode = _eq(m_fun(t).diff(t), _rules.ema_increment(m_fun(t), g, a_real))
    m_t = sp.expand(sp.dsolve(ode, m_fun(t), ics={m_fun(0): 0}).rhs)
    at_grid = m_t.subs(t, n * eta)
    # Equal for every n iff e^{-a eta} = beta.
    decay_per_step = sp.exp(-a_real * eta)
    exact = sp.solve(sp.Eq(decay_per_step, beta), a_real)
    if len(exact) != 1:
        raise RuntimeError(f"expected one real rate, sympy found {exact}")
    a_exact = exact[0]
    if sp.simplify(at_grid.subs(a_real, a_exact) - m_n) != 0:
        raise RuntimeError("the exact rate does not reproduce the discrete moment")
    if sp.simplify(a_exact - _rules.decay_per_step(beta, SYMPY_OPS) / eta) != 0:
        raise RuntimeError("exact rate disagrees with _rules.decay_per_step")
    first_order = sp.series(decay_per_step, eta, 0, 2).removeO()
    a_euler = sp.solve(sp.Eq(first_order, beta), a_real)[0]
    log_series = sp.series(_rules.decay_per_step(beta, SYMPY_OPS), beta, 1, 3)
    b_exact, b_euler = a_exact.subs(beta, gamma), a_euler.subs(beta, gamma)
    steps = (
        Step(
            "The discrete moment is an exponential moving average (`_rules.ema_increment`). "
            "With a constant drive $g$ and $m_0 = 0$, `sympy.rsolve` gives:",
            (_eq(m_seq(n), discrete), _eq(m_seq(n), m_n)),
        ),
        Step(
            "The continuous moment relaxes at a rate $a$; `sympy.dsolve` with $m(0) = 0$ gives:",
            (ode, _eq(m_fun(t), m_t)),
        ),
        Step(
            "At the grid times $t = n\\eta$ the two agree for every $n$ iff the per-step decay "
            "factors agree:",
            (_iff(_eq(at_grid, m_n), _eq(decay_per_step, beta)),),
        ),
        Step(
            "Solving for $a$ gives the exact-decay rate (the default convention), and "
            "likewise $b$ from $\\gamma$:",
            (_eq(sp.Symbol("a"), a_exact), _eq(sp.Symbol("b"), b_exact)),
        ),
        Step(
            "The Euler convention keeps the first order of $e^{-a\\eta}$ in $\\eta$:",
            (
                _eq(first_order, beta),
                (_eq(sp.Symbol("a"), a_euler), _eq(sp.Symbol("b"), b_euler)),
            ),
        ),
        Step(
            "The two conventions agree to first order in $1-\\beta$; the exact rate is larger:",
            (_eq(_rules.decay_per_step(beta, SYMPY_OPS), log_series),),
        ),
    )
    results = {"a_exact": a_exact, "a_euler": a_euler, "b_exact": b_exact, "b_euler": b_euler}
    return Derivation(
        "moment_rates", "Moment rates from the decay condition", steps, _plain(results)
    )


def moment_rate(convention: str = "exact", moment: str = "first") -> sp.Expr:
    r"""The rate as an expression in ``beta`` (``moment="first"``: :math:`a`) or ``gamma``
    (``"second"``: :math:`b`) and ``eta``: :math:`\ln(1/\beta)/\eta` (``"exact"``) or
    :math:`(1-\beta)/\eta` (``"euler"``)."""
    if convention not in ("exact", "euler"):
        raise ValueError(f"convention must be 'exact' or 'euler', got {convention!r}")
    if moment not in ("first", "second"):
        raise ValueError(f"moment must be 'first' or 'second', got {moment!r}")
    letter = "a" if moment == "first" else "b"
    return moment_rates().results[f"{letter}_{convention}"]


@functools.cache
def bias_correction() -> Derivation:
    r"""Derive the bias corrections :math:`1-\beta^n` and :math:`1-e^{-a t}`, their equality
    at :math:`t = n\eta` in the exact convention, and :math:`\hat m \to g` as :math:`t \to 0`."""
    beta, eta, a, g = _pos("beta"), _pos("eta"), _pos("a"), _real("g")
    n = sp.Symbol("n", integer=True, nonnegative=True)
    t = sp.Symbol("t", nonnegative=True)
    discrete = _rules.bias_correction(n * _rules.decay_per_step(beta, SYMPY_OPS), SYMPY_OPS)
    discrete_power = discrete.rewrite(sp.Pow)
    continuous = _rules.bias_correction(a * t, SYMPY_OPS)
    a_exact = (
        moment_rates().results["a_exact"].subs({sp.Symbol("beta"): beta, sp.Symbol("eta"): eta})
    )
    at_grid = sp.simplify(continuous.subs({a: a_exact, t: n * eta}))
    if sp.simplify(at_grid - discrete) != 0:
        raise RuntimeError("continuous bias correction at t = n eta differs from 1 - beta^n")
    # Small-t limit: m(t) = a t g + O(t^2) and 1 - e^{-at} = a t + O(t^2).
    m_small = g * (1 - sp.exp(-a * t))  # the constant-drive moment of `moment_rates`
    m_series = sp.series(m_small, t, 0, 2).removeO()
    bc_series = sp.series(continuous, t, 0, 2).removeO()
    limit = sp.limit(m_series / bc_series, t, 0)
    mhat, m = sp.Symbol("mhat"), sp.Symbol("m")
    steps = (
        Step(
            "The rule `_rules.bias_correction(x) = -expm1(-x)` with the discrete exponent "
            "$x = n\\ln(1/\\beta)$ is the familiar $1-\\beta^n$; the constant-drive solution "
            "$m_n = g(1-\\beta^n)$ makes $\\hat m_n = m_n/(1-\\beta^n) = g$ unbiased:",
            (_eq(sp.Symbol("B_n"), discrete), _eq(sp.Symbol("B_n"), discrete_power)),
        ),
        Step(
            "With the continuous exponent $x = a t$, the same rule gives the flow's divisor; "
            "$\\hat m = m/(1-e^{-at})$:",
            (_eq(sp.Symbol("B(t)"), continuous),),
        ),
        Step(
            "At $t = n\\eta$ with the exact-decay rate the two divisors are identical (with the "
            "Euler rate they are not):",
            (_eq(continuous.subs(t, n * eta), at_grid),),
        ),
        Step(
            "Near $t = 0$ both $m$ and the divisor vanish linearly; the bias-corrected moment "
            "tends to the drive, so the flow starts at $\\hat m(0) = g(0)$ (use `expm1` for "
            "the divisor):",
            (
                (_eq(m, m_series), _eq(sp.Symbol("B(t)"), bc_series)),
                _eq(sp.Limit(mhat, t, 0), limit),
            ),
        ),
    )
    results = {"discrete": discrete_power, "continuous": continuous, "limit_t0": limit}
    return Derivation("bias_correction", "Bias correction", steps, _plain(results))


@functools.cache
def bias_corrected_form() -> Derivation:
    r"""Derive :math:`d\hat m/dt = a/(1-e^{-a t})\,(x - \hat m)` from :math:`\dot m = a(x - m)`
    and :math:`\hat m = m/(1-e^{-a t})`."""
    a, t = _pos("a"), _pos("t")
    x, mhat = _real("x"), _real("mhat")
    m = sp.Function("m")(t)
    divisor = _rules.bias_correction(a * t, SYMPY_OPS)
    mhat_of_m = m / divisor
    dmhat = sp.diff(mhat_of_m, t)
    dm = _rules.ema_increment(m, x, a)
    substituted = dmhat.subs(sp.Derivative(m, t), dm).subs(m, mhat * divisor)
    field_mhat = sp.factor(sp.simplify(substituted))
    target_shape = sp.Symbol("a") / divisor * (x - mhat)
    if sp.simplify(field_mhat - target_shape.subs(sp.Symbol("a"), a)) != 0:
        raise RuntimeError("bias-corrected form did not reduce to a/(1-e^{-at}) (x - mhat)")
    steps = (
        Step(
            "Differentiate $\\hat m = m/(1-e^{-at})$ along the flow:",
            (_eq(sp.Symbol("mhatdot"), dmhat),),
        ),
        Step(
            "Substitute $\\dot m = a(x - m)$ (`_rules.ema_increment`, drive $x$) and "
            "$m = \\hat m\\,(1-e^{-at})$, then simplify:",
            (_eq(sp.Symbol("mhatdot"), field_mhat),),
        ),
        Step(
            "So the bias-corrected moment relaxes towards the drive at the time-dependent rate "
            "$a/(1-e^{-at})$ (infinite at $t=0$, where $\\hat m(0)$ equals the drive):",
            (_eq(sp.Symbol("mhatdot"), target_shape),),
        ),
    )
    return Derivation(
        "bias_corrected_form",
        "The bias-corrected (m̂, v̂) form",
        steps,
        _plain({"mhat_dot": field_mhat}),
    )


@functools.cache
def memory_kernel() -> Derivation:
    r"""Check the memory-kernel form :math:`m(t) = \int_0^t a e^{-a(t-s)} g(s)\,ds` solves
    :math:`\dot m = a(g - m)`, :math:`m(0) = 0`."""
    a, t, s = _pos("a"), _pos("t"), _pos("s")
    g = sp.Function("g")
    kernel_form = sp.Integral(a * sp.exp(-a * (t - s)) * g(s), (s, 0, t))
    derivative = sp.diff(kernel_form, t)
    residual = sp.simplify(derivative - _rules.ema_increment(kernel_form, g(t), a))
    if residual != 0:
        raise RuntimeError(f"memory-kernel form does not solve the moment ODE: {residual}")
    steps = (
        Step("The integral form of the moment:", (_eq(sp.Function("m")(t), kernel_form),)),
        Step(
            "Differentiating under the integral (Leibniz) gives $a(g - m)$ exactly, and "
            "$m(0) = 0$; the weight $a$ and the decay $a$ must be the same rate:",
            (_eq(sp.Derivative(sp.Function("m")(t), t), derivative),),
        ),
    )
    return Derivation("memory_kernel", "Memory-kernel form", steps, _plain({"m": kernel_form}))


# --------------------------------------------------------------------------- §1 discrete


class _Level(NamedTuple):
    m: sp.Symbol
    v: sp.Symbol
    beta: sp.Symbol
    gamma: sp.Symbol
    a: sp.Symbol
    b: sp.Symbol


def _levels(k: int) -> tuple[_Level, ...]:
    out = []
    for i in range(1, k + 1):
        s = _suffix(k, i)
        out.append(
            _Level(
                _real(f"m{s}"),
                _pos(f"v{s}"),
                _pos(f"beta{s}"),
                _pos(f"gamma{s}"),
                _pos(f"a{s}"),
                _pos(f"b{s}"),
            )
        )
    return tuple(out)


def _update_symbol(k: int, i: int) -> sp.Symbol:
    return sp.Symbol("g" if i == 0 else ("u" if k == 1 else f"u^({i})"))


@functools.cache
def discrete_map(k: int = 1, weight_decay: bool = True) -> Derivation:
    r"""The one-step map of the k-level cascade (THEORY.md §1), built from `_rules`.

    With :math:`u^{(0)}_n = g`: :math:`m^{(i)}_n = m^{(i)} + (1-\beta_i)(u^{(i-1)}_n - m^{(i)})`,
    :math:`v^{(i)}_n` likewise with the square, :math:`u^{(i)}_n = [m^{(i)}_n/(1-\beta_i^n)]/
    (\sqrt{v^{(i)}_n/(1-\gamma_i^n)}+\varepsilon)`, and
    :math:`\theta_n = \theta + \eta\,(-(u^{(k)}_n + \lambda\theta))`. Results: ``theta``,
    ``m_i``, ``v_i``, ``u_i`` (``i`` from 1) as expressions of the previous state.
    """
    k = _check_k(k)
    levels = _levels(k)
    n, eta, eps = sp.Symbol("n", positive=True, integer=True), _pos("eta"), _pos("epsilon")
    theta, g = _real("theta"), _real("g")
    lam = _pos("lambda") if weight_decay else sp.Integer(0)
    drive: sp.Expr = g
    results: dict[str, Any] = {}
    steps = []
    for i, lv in enumerate(levels, start=1):
        m_new = lv.m + _rules.ema_increment(lv.m, drive, 1 - lv.beta)
        v_new = lv.v + _rules.ema_increment(lv.v, drive**2, 1 - lv.gamma)
        bc_m = _rules.bias_correction(n * _rules.decay_per_step(lv.beta, SYMPY_OPS), SYMPY_OPS)
        bc_v = _rules.bias_correction(n * _rules.decay_per_step(lv.gamma, SYMPY_OPS), SYMPY_OPS)
        update = _rules.normalized_update(m_new / bc_m, v_new / bc_v, eps, SYMPY_OPS)
        x_sym, u_sym = _update_symbol(k, i - 1), _update_symbol(k, i)
        shown_m = lv.m + _rules.ema_increment(lv.m, x_sym, 1 - lv.beta)
        shown_v = lv.v + _rules.ema_increment(lv.v, x_sym**2, 1 - lv.gamma)
        level_mark = "" if k == 1 else f"^({i})"
        mn, vn = sp.Symbol(f"m{level_mark}_n"), sp.Symbol(f"v{level_mark}_n")
        shown_u = _rules.normalized_update(
            mn / bc_m.rewrite(sp.Pow),
            vn / bc_v.rewrite(sp.Pow),
            eps,
            SYMPY_OPS,
        )
        level = "The moments" if k == 1 else f"Level {i}: the moments"
        steps.append(
            Step(
                f"{level} are updated by `_rules.ema_increment`, bias-corrected by "
                "`_rules.bias_correction` and normalised by `_rules.normalized_update` "
                f"(drive ${sp.latex(x_sym)}$, step $n$):",
                (
                    (_eq(mn, shown_m), _eq(vn, shown_v)),
                    _eq(sp.Symbol(f"{u_sym.name}_n"), shown_u),
                ),
            )
        )
        results[f"m_{i}"], results[f"v_{i}"], results[f"u_{i}"] = m_new, v_new, update
        drive = update
    theta_new = theta + eta * _rules.parameter_velocity(drive, theta, lam)
    u_top = sp.Symbol(f"{_update_symbol(k, k).name}_n")
    steps.append(
        Step(
            "The parameters move by the learning rate times `_rules.parameter_velocity`"
            + (" (decoupled weight decay $\\lambda$):" if weight_decay else " ($\\lambda = 0$):"),
            (
                _eq(
                    sp.Symbol("theta_n"), theta + eta * _rules.parameter_velocity(u_top, theta, lam)
                ),
            ),
        )
    )
    results["theta"] = theta_new
    title = "The discrete step" if k == 1 else f"The discrete step of {k}-Adam"
    return Derivation(f"discrete_map_k{k}", title, tuple(steps), _plain(results))


class DiscreteStep(NamedTuple):
    """Numbers from `discrete_step_function`: new ``theta``, moments per level, update."""

    theta: Any
    m: tuple[Any, ...]
    v: tuple[Any, ...]
    u: Any


def discrete_step_function(k: int = 1) -> Callable[..., DiscreteStep]:
    r"""`sympy.lambdify` of `discrete_map` (with weight decay) as a NumPy function
    ``f(n, theta, m, v, g, lr, betas, gammas, eps, weight_decay) -> DiscreteStep``, where
    ``m, v, betas, gammas`` are length-k sequences (level 1 first) and ``n`` is the new step
    count."""
    k = _check_k(k)
    return _discrete_step_function(k)


@functools.cache
def _discrete_step_function(k: int) -> Callable[..., DiscreteStep]:
    results = discrete_map(k, True).results
    S = sp.Symbol
    names = [_level_plain(k, i) for i in range(1, k + 1)]
    args = (
        [S("n"), S("theta")]
        + [S(nm["m"]) for nm in names]
        + [S(nm["v"]) for nm in names]
        + [S("g"), S("eta")]
        + [S(nm["beta"]) for nm in names]
        + [S(nm["gamma"]) for nm in names]
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
        betas: Sequence[Any],
        gammas: Sequence[Any],
        eps: Any,
        weight_decay: Any,
    ) -> DiscreteStep:
        out = numeric(n, theta, *m, *v, g, lr, *betas, *gammas, eps, weight_decay)
        return DiscreteStep(out[0], tuple(out[1 : 1 + k]), tuple(out[1 + k : 1 + 2 * k]), out[-1])

    return step


def _level_plain(k: int, i: int) -> dict[str, str]:
    s = _suffix(k, i)
    return {key: f"{key}{s}" for key in ("m", "v", "beta", "gamma", "a", "b")}


# --------------------------------------------------------------------------- §2 flows


@functools.cache
def leading_flow(k: int = 1, weight_decay: bool = True) -> Derivation:
    r"""The leading-order flow of the k-level cascade (THEORY.md §2), built from `_rules`:
    :math:`\dot m_i = a_i(u^{(i-1)} - m_i)`, :math:`\dot v_i = b_i((u^{(i-1)})^2 - v_i)`,
    :math:`u^{(i)} = \hat m_i/(\sqrt{\hat v_i}+\varepsilon)`,
    :math:`\hat m_i = m_i/(1-e^{-a_i t})`, :math:`\dot\theta = -(u^{(k)} + \lambda\theta)`.
    Results: ``theta``, ``m_i``, ``v_i`` (time derivatives) and ``u_i``."""
    k = _check_k(k)
    levels = _levels(k)
    t, eps = _pos("t"), _pos("epsilon")
    theta, g = _real("theta"), _real("g")
    lam = _pos("lambda") if weight_decay else sp.Integer(0)
    rates = moment_rates().results
    steps = [
        Step(
            "The parameter step $\\theta_n = \\theta_{n-1} + \\eta\\,v(u_n, \\theta_{n-1})$ "
            "with $t = n\\eta$ is the Euler step of $\\dot\\theta = v(u, \\theta)$ "
            "(`_rules.parameter_velocity`); the parameters move on the slow scale $O(1)$:",
            (
                _eq(
                    sp.Symbol("thetadot"),
                    _rules.parameter_velocity(_update_symbol(k, k), theta, lam),
                ),
            ),
        )
    ]
    drive: sp.Expr = g
    results: dict[str, Any] = {}
    for i, lv in enumerate(levels, start=1):
        dm = _rules.ema_increment(lv.m, drive, lv.a)
        dv = _rules.ema_increment(lv.v, drive**2, lv.b)
        mhat = lv.m / _rules.bias_correction(lv.a * t, SYMPY_OPS)
        vhat = lv.v / _rules.bias_correction(lv.b * t, SYMPY_OPS)
        update = _rules.normalized_update(mhat, vhat, eps, SYMPY_OPS)
        x_sym, u_sym = _update_symbol(k, i - 1), _update_symbol(k, i)
        suffix = _suffix(k, i)
        shown = (
            _eq(sp.Symbol(f"mdot{suffix}"), _rules.ema_increment(lv.m, x_sym, lv.a)),
            _eq(sp.Symbol(f"vdot{suffix}"), _rules.ema_increment(lv.v, x_sym**2, lv.b)),
        )
        rate_m = rates["a_exact"].subs(sp.Symbol("beta"), sp.Symbol(lv.beta.name))
        rate_v = rates["b_exact"].subs(sp.Symbol("gamma"), sp.Symbol(lv.gamma.name))
        level = "" if k == 1 else f"Level {i} (drive ${sp.latex(x_sym)}$): "
        steps.append(
            Step(
                f"{level}each moment relaxes towards its drive at the rate that reproduces "
                "the discrete decay (see *Moment rates*), "
                f"${sp.latex(_eq(sp.Symbol(lv.a.name), rate_m))}$, "
                f"${sp.latex(_eq(sp.Symbol(lv.b.name), rate_v))}$:",
                (shown,),
            )
        )
        steps.append(
            Step(
                "The update divides the bias-corrected moments (`_rules.bias_correction` with "
                "exponent $a t$, `_rules.normalized_update`):",
                (_eq(u_sym, update),),
            )
        )
        results[f"m_{i}"], results[f"v_{i}"], results[f"u_{i}"] = dm, dv, update
        drive = update
    results["theta"] = _rules.parameter_velocity(drive, theta, lam)
    name = {1: "AdamW" if weight_decay else "Adam"}.get(k, f"{k}-Adam")
    return Derivation(
        f"leading_flow_k{k}{'_wd' if weight_decay else ''}",
        f"The leading-order flow of {name}",
        tuple(steps),
        _plain(results),
    )


class FieldValue(NamedTuple):
    """Numbers from `leading_field_function`: ``dtheta`` and ``dm, dv`` per level."""

    theta: Any
    m: tuple[Any, ...]
    v: tuple[Any, ...]


def leading_field_function(k: int = 1, weight_decay: bool = True) -> Callable[..., FieldValue]:
    r"""`sympy.lambdify` of `leading_flow` as a NumPy function
    ``f(t, theta, m, v, g, a, b, eps, weight_decay=0) -> FieldValue`` (``m, v, a, b``:
    length-k sequences; ``g`` the gradient at ``theta``). Valid for ``t > 0``."""
    k = _check_k(k)
    return _leading_field_function(k, bool(weight_decay))


@functools.cache
def _leading_field_function(k: int, weight_decay: bool) -> Callable[..., FieldValue]:
    results = leading_flow(k, weight_decay).results
    S = sp.Symbol
    names = [_level_plain(k, i) for i in range(1, k + 1)]
    args = (
        [S("t"), S("theta")]
        + [S(nm["m"]) for nm in names]
        + [S(nm["v"]) for nm in names]
        + [S("g")]
        + [S(nm["a"]) for nm in names]
        + [S(nm["b"]) for nm in names]
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
    :math:`-\ln(1-\eta\lambda)/\eta = \lambda + \eta\lambda^2/2 + O(\eta^2)`."""
    eta, lam, rho = _pos("eta"), _pos("lambda"), _real("rho")
    theta = _real("theta")
    step_without_update = theta + eta * _rules.parameter_velocity(0, theta, lam)
    factor = sp.factor(step_without_update / theta)
    rate = sp.solve(sp.Eq(sp.exp(-rho * eta), factor), rho)[0]
    series = sp.series(rate, eta, 0, 2)
    steps = (
        Step(
            "Without an update ($u = 0$) AdamW's step multiplies $\\theta$ by a constant factor:",
            (_eq(sp.Symbol("theta_n"), factor * theta),),
        ),
        Step(
            "The decay rate that reproduces it exactly, solved from $e^{-\\rho\\eta}$ = factor, "
            "equals $\\lambda$ to leading order; the $O(\\eta)$ rest is what the corrected "
            "flow's $\\lambda(\\theta - (\\eta/2)\\dot\\theta_0)$ term restores:",
            (_eq(rho, rate), _eq(rho, series)),
        ),
    )
    return Derivation("decoupled_decay", "Decoupled weight decay", steps, _plain({"rate": rate}))


# --------------------------------------------------------------------------- §4 stability


@functools.cache
def stability() -> Derivation:
    r"""The Cauchy-Schwarz bound :math:`|m_n|/\sqrt{v_n} \le \sqrt{\sum_{j<n} w_j^2/c_j}`
    and its consequences: the condition :math:`\gamma > \beta^2`, the closed form
    :math:`C = (1-\beta)/\sqrt{(1-\gamma)(1-\beta^2/\gamma)}`, the finite-n bound, the growth
    factor :math:`\beta/\sqrt\gamma` outside, the continuous form :math:`b < 2a`,
    :math:`C = a/\sqrt{b(2a-b)}`, and the Euler-convention condition."""
    beta, gamma = _pos("beta"), _pos("gamma")
    j = sp.Symbol("j", integer=True, nonnegative=True)
    n = sp.Symbol("n", integer=True, positive=True)
    # Unroll the shared EMA rule three steps from zero with arbitrary inputs g_1..g_3.
    inputs = sp.symbols("g_1:4", real=True)
    m_n, v_n = sp.Integer(0), sp.Integer(0)
    for x in inputs:
        m_n = m_n + _rules.ema_increment(m_n, x, 1 - beta)
        v_n = v_n + _rules.ema_increment(v_n, x**2, 1 - gamma)
    w = (1 - beta) * beta**j
    c = (1 - gamma) * gamma**j
    unrolled_m = sum(w.subs(j, jj) * inputs[2 - jj] for jj in range(3))
    unrolled_v = sum(c.subs(j, jj) * inputs[2 - jj] ** 2 for jj in range(3))
    if sp.expand(m_n - unrolled_m) != 0 or sp.expand(v_n - unrolled_v) != 0:
        raise RuntimeError("the unrolled EMA differs from the recurrence")
    # Equality case of Cauchy-Schwarz: g_{n-j} = w_j / c_j gives m_n / sqrt(v_n) = sqrt(S).
    worst = [(w / c).subs(j, jj) for jj in range(3)]
    worst_m = unrolled_m.subs({inputs[2 - jj]: worst[jj] for jj in range(3)})
    worst_v = unrolled_v.subs({inputs[2 - jj]: worst[jj] for jj in range(3)})
    partial_3 = sum((w**2 / c).subs(j, jj) for jj in range(3))
    if sp.simplify(worst_m - partial_3) != 0 or sp.simplify(worst_v - partial_3) != 0:
        raise RuntimeError("the Cauchy-Schwarz equality case failed")
    term = w**2 / c
    coefficient, geometric = term.as_independent(j, as_Mul=True)
    geometric = sp.powsimp(geometric, force=True)
    ratio = sp.simplify(geometric.subs(j, j + 1) / geometric)
    infinite = sp.summation(geometric, (j, 0, sp.oo))
    piece = infinite if isinstance(infinite, sp.Piecewise) else infinite.atoms(sp.Piecewise).pop()
    limit_value, convergence = piece.args[0].expr, piece.args[0].cond
    reduced = sp.reduce_inequalities(convergence, gamma)
    condition = sp.Gt(gamma, beta**2)
    if reduced != sp.Lt(beta**2, gamma) and reduced != condition:
        raise RuntimeError(f"unexpected convergence condition {reduced}")
    # Inside the region 1 - beta, 1 - gamma and 1 - beta^2/gamma are positive.
    one_minus_ratio = sp.Integer(1) / limit_value
    bound = _sqrt_positive(coefficient * limit_value, [1 - beta, 1 - gamma, one_minus_ratio])
    finite = sp.summation(geometric, (j, 0, n - 1))
    finite_bound = _sqrt_positive(coefficient * finite, [1 - beta, 1 - gamma])
    boundary_pieces = [p.expr for p in finite.args if p.cond != sp.true]
    boundary_bound = _sqrt_positive(coefficient * boundary_pieces[0], [1 - beta, 1 - gamma])
    generic = next(p.expr for p in finite.args if p.cond == sp.true)
    # Outside: the finite bound grows by sqrt(r) per step, r = beta^2/gamma = 1 + s > 1.
    s = _pos("s")
    r_sym = _pos("r")
    generic_r = generic.subs(ratio, r_sym)
    step_ratio = sp.limit(
        sp.simplify(generic_r.subs(n, n + 1) / generic_r).subs(r_sym, 1 + s), n, sp.oo
    )
    factor_sq = sp.simplify(step_ratio.subs(s, ratio - 1))
    growth = sp.sqrt(factor_sq)
    # Continuous form: beta = e^{-a eta}, gamma = e^{-b eta}.
    a, b, eta = _pos("a"), _pos("b"), _pos("eta")
    decays = {beta: sp.exp(-a * eta), gamma: sp.exp(-b * eta)}
    log_condition = sp.Gt(
        sp.expand_log(sp.log(condition.lhs.subs(decays)), force=True),
        sp.expand_log(sp.log(condition.rhs.subs(decays)), force=True),
    )
    continuous_condition = sp.reduce_inequalities(log_condition, b)
    bound_continuous = sp.limit(bound.subs(decays), eta, 0)
    tau, c_pos = _pos("tau"), _pos("c")
    kernel_sq = (a * sp.exp(-a * tau)) ** 2 / (b * sp.exp(-b * tau))
    # The integral converges for c = 2a - b > 0 (and diverges otherwise).
    integrand = sp.simplify(kernel_sq.subs(b, 2 * a - c_pos))
    integral = sp.integrate(integrand, (tau, 0, sp.oo))
    integral_b = sp.factor(integral.subs(c_pos, 2 * a - b))
    if sp.simplify(integral_b - bound_continuous**2) != 0:
        raise RuntimeError("continuous bound: the limit and the kernel integral disagree")
    growth_continuous = sp.simplify(sp.expand_log(sp.log(growth.subs(decays)), force=True) / eta)
    euler = {a: (1 - beta) / eta, b: (1 - gamma) / eta}
    euler_condition = sp.reduce_inequalities(continuous_condition.subs(euler), gamma)
    C, S = sp.Symbol("C"), sp.Symbol("S_n")
    steps = (
        Step(
            "Unrolling the EMA rule from $m_0 = v_0 = 0$ (checked by sympy over three steps "
            "with arbitrary inputs) gives weighted sums with weights $w_j$, $c_j$:",
            (
                _eq(
                    sp.Symbol("m_n"), sp.Sum(sp.Symbol("w_j") * sp.Symbol("g_{n-j}"), (j, 0, n - 1))
                ),
                _eq(
                    sp.Symbol("v_n"),
                    sp.Sum(sp.Symbol("c_j") * sp.Symbol("g_{n-j}") ** 2, (j, 0, n - 1)),
                ),
                (_eq(sp.Symbol("w_j"), w), _eq(sp.Symbol("c_j"), c)),
            ),
        ),
        Step(
            "Cauchy-Schwarz on $\\sum (w_j/\\sqrt{c_j})(\\sqrt{c_j} g_{n-j})$, with equality for "
            "$g_{n-j} \\propto w_j/c_j$ (checked by sympy for $n = 3$), bounds the ratio for "
            "every gradient sequence ($\\varepsilon = 0$):",
            (
                r"\frac{|m_n|}{\sqrt{v_n}} \le \sqrt{S_n},\qquad "
                + sp.latex(_eq(S, sp.Sum(term, (j, 0, n - 1)))),
            ),
        ),
        Step(
            "The terms form a geometric series; the ratio of successive terms is:",
            (_lhs("w_j^2/c_j", coefficient * geometric), _eq(sp.Symbol("r"), ratio)),
        ),
        Step(
            "`sympy.summation` to $n = \\infty$ converges only under the condition it "
            "returns, which `reduce_inequalities` turns into the stable region:",
            (_lhs("S_\\infty", infinite), _iff(convergence, condition)),
        ),
        Step(
            "Inside it, the bound on the update is the square root of the sum (simplified "
            "with $0 < \\beta, \\gamma < 1$):",
            (_eq(C, bound),),
        ),
        Step(
            "For finite $n$ the partial sum gives the bound at step $n$; on the boundary "
            "$\\gamma = \\beta^2$ it grows like $\\sqrt n$:",
            (_eq(sp.Symbol("C_n"), finite_bound), _lhs("C_n|_{r=1}", boundary_bound)),
        ),
        Step(
            "Outside ($r > 1$), the ratio of successive bounds tends to $\\sqrt r$: the growth "
            "factor per step and its rate in time $t = n\\eta$ (exact-decay rates):",
            (
                _lhs("\\lim_{n\\to\\infty} C_{n+1}/C_n", growth),
                _lhs("\\ln(\\beta/\\sqrt{\\gamma})/\\eta", growth_continuous),
            ),
        ),
        Step(
            "Continuous form: with $\\beta = e^{-a\\eta}$, $\\gamma = e^{-b\\eta}$ the "
            "condition becomes (taking logarithms):",
            (_iff(condition.subs(decays), log_condition, continuous_condition),),
        ),
        Step(
            "and the bound's $\\eta \\to 0$ limit, equal to the Cauchy-Schwarz bound of the "
            "kernels $a e^{-a\\tau}$, $b e^{-b\\tau}$ (integral converges iff $b < 2a$):",
            (
                _eq(C, bound_continuous),
                _eq(sp.Integral(kernel_sq, (tau, 0, sp.oo)), integral_b),
            ),
        ),
        Step(
            "With the Euler rates $a = (1-\\beta)/\\eta$, $b = (1-\\gamma)/\\eta$ the continuous "
            "condition reads differently in $(\\beta, \\gamma)$:",
            (_iff(continuous_condition.subs(euler), euler_condition),),
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
    }
    return Derivation(
        "stability", "The Cauchy-Schwarz bound and the stable region", steps, _plain(results)
    )


def stability_condition(form: str = "discrete") -> sp.Rel:
    r"""The bounded-update condition derived by `stability`:
    ``"discrete"``: :math:`\gamma > \beta^2`; ``"continuous"``: :math:`b < 2a`;
    ``"euler"``: the continuous one under Euler rates, :math:`\gamma > 2\beta - 1`."""
    key = {
        "discrete": "condition",
        "continuous": "continuous_condition",
        "euler": "euler_condition",
    }.get(form)
    if key is None:
        raise ValueError(f"form must be 'discrete', 'continuous' or 'euler', got {form!r}")
    return stability().results[key]


def level_conditions(k: int) -> tuple[sp.Rel, ...]:
    r"""k-Adam: level i is bounded iff :math:`\gamma_i > \beta_i^2` (symbols ``beta_i``,
    ``gamma_i``; for ``k = 1`` the plain ``beta``, ``gamma``)."""
    k = _check_k(k)
    condition = stability_condition()
    return tuple(
        condition.xreplace(
            {
                sp.Symbol("beta"): sp.Symbol(f"beta{_suffix(k, i)}"),
                sp.Symbol("gamma"): sp.Symbol(f"gamma{_suffix(k, i)}"),
            }
        )
        for i in range(1, k + 1)
    )


def update_bound(n: int | sp.Symbol | None = None, form: str = "discrete") -> sp.Expr:
    r"""The bound :math:`C(\beta,\gamma) = (1-\beta)/\sqrt{(1-\gamma)(1-\beta^2/\gamma)}` on
    :math:`|m_n|/\sqrt{v_n}` (``n=None``), or the finite-n bound
    :math:`\sqrt{\sum_{j<n} w_j^2/c_j}` (``n`` an integer or Symbol; a Piecewise with the
    boundary case). ``form="continuous"``: :math:`a/\sqrt{b(2a-b)}`."""
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
    return results["finite_bound"].xreplace({sp.Symbol("n"): n})


def growth_factor() -> sp.Expr:
    r"""Per-step growth factor of the bound outside the stable region: :math:`\beta/\sqrt\gamma`."""
    return stability().results["growth_factor"]


@functools.cache
def amplification() -> Derivation:
    r"""The :math:`\varepsilon`-capped amplification of a coordinate whose gradient of size
    :math:`G` switches off: :math:`(G/\varepsilon)^{1-p}`, :math:`p = 2\ln(1/\beta)/\ln(1/\gamma)`
    (leading), and its exact maximum :math:`p^p (1-p)^{1-p} (G/\varepsilon)^{1-p}`."""
    beta, gamma, G, eps = _pos("beta"), _pos("gamma"), _pos("G"), _pos("epsilon")
    nu = _pos("nu")
    k = sp.Symbol("n", integer=True, nonnegative=True)
    m_seq, v_seq = sp.Function("m"), sp.Function("v")
    # Gradient off from step 0, moments in equilibrium m = G, v = G^2 (bias correction ~ 1).
    m_n = sp.rsolve(
        m_seq(k) - (m_seq(k - 1) + _rules.ema_increment(m_seq(k - 1), 0, 1 - beta)),
        m_seq(k),
        {m_seq(0): G},
    )
    v_n = sp.rsolve(
        v_seq(k) - (v_seq(k - 1) + _rules.ema_increment(v_seq(k - 1), 0, 1 - gamma)),
        v_seq(k),
        {v_seq(0): G**2},
    )
    update = _rules.normalized_update(m_n, v_n, eps, SYMPY_OPS).subs(k, nu)
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
    # Exact maximum over continuous n: with beta = gamma^(p/2) and y = gamma^(n/2) in (0, 1].
    p, y = _pos("p"), _pos("y")
    exact_p = sp.solve(sp.Eq(gamma ** (p / 2), beta), p)[0]
    in_y = G * y**p / (G * y + eps)
    y_star = sp.solve(sp.diff(in_y, y), y)[0]
    q = _pos("q")  # q = 1 - p > 0 inside the unstable region
    peak = sp.simplify(sp.powsimp(in_y.subs(y, y_star).subs(p, 1 - q), force=True))
    peak = sp.powsimp(sp.powdenest(peak, force=True), force=True).subs(q, 1 - p)
    steps = (
        Step(
            "A coordinate's gradient of size $G$ switches off at $n = 0$ after a long run "
            "($m = G$, $v = G^2$, bias corrections $\\approx 1$); `rsolve` of the EMA rule "
            "with zero drive gives the update at step $\\nu$:",
            (_eq(sp.Symbol("u_nu"), update),),
        ),
        Step(
            "It grows by $\\beta/\\sqrt\\gamma$ per step while $\\sqrt{v}$ is above "
            "$\\varepsilon$; $\\sqrt{v}$ reaches $\\varepsilon$ at",
            (_eq(sp.Symbol("nu_*"), n_cap_shown),),
        ),
        Step(
            "where $u \\approx m/\\varepsilon$, which sympy rewrites as a power of "
            "$G/\\varepsilon$ (the leading estimate, an exponent $< 1$ exactly when "
            "$\\gamma < \\beta^2$):",
            (_eq(sp.Symbol("u_max"), leading),),
        ),
        Step(
            "Exactly: write $\\beta = \\gamma^{p/2}$ and $y = \\gamma^{\\nu/2} \\in (0, 1]$; "
            "the update is a function of $y$ whose maximum sits where its derivative vanishes:",
            (
                _eq(p, exact_p),
                _eq(sp.Symbol("u(y)"), in_y),
                _eq(sp.Symbol("y_*"), y_star),
            ),
        ),
        Step(
            "so the largest update is the leading estimate times a factor between 1/2 and 1 "
            "(for $0<p<1$, when $y_* < 1$ is reached; otherwise the largest is the first, "
            "$G/(G+\\varepsilon)$):",
            (_eq(sp.Symbol("u_max"), peak),),
        ),
    )
    results = {"leading": leading, "exact": peak, "p": exact_p, "y_star": y_star}
    return Derivation(
        "amplification", "The $\\varepsilon$-capped amplification", steps, _plain(results)
    )


def eps_capped_amplification(sharp: bool = False) -> sp.Expr:
    r"""Largest update of a coordinate whose gradient of size ``G`` switches off, in the
    unstable region: :math:`(G/\varepsilon)^{1 - 2\ln(1/\beta)/\ln(1/\gamma)}` (THEORY.md §4),
    or with ``sharp=True`` the exact maximum :math:`p^p(1-p)^{1-p}(G/\varepsilon)^{1-p}`
    (symbol ``p``, see ``amplification().results["p"]``)."""
    results = amplification().results
    return results["exact"] if sharp else results["leading"]


# --------------------------------------------------------------------------- §3 corrected


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
    beta, eta, ell = _pos("beta"), _pos("eta"), _pos("ell")
    sigma = _pos("sigma")
    m, x, xdot, xddot = _real("m"), _real("x"), _real("xdot"), _real("xddot")
    d = _real("d")
    # The drive x(t + sigma) is smooth on the slow scale: Taylor to second order in sigma.
    # The flow's drive lags by delta = d * eta (d unknown).
    drive = x + sigma * xdot + sigma**2 / 2 * xddot
    flow_drive = drive - d * eta * sp.diff(drive, sigma)
    a = ell / eta  # the exact rate, beta = e^{-ell}, with ell = ln(1/beta) fixed as eta -> 0
    kernel = a * sp.exp(-a * (eta - sigma))
    # Exact solution of m' = a (drive - m) over one step (variation of constants).
    flow_map = sp.expand(sp.exp(-a * eta) * m + sp.integrate(kernel * flow_drive, (sigma, 0, eta)))
    beta_of_ell = sp.exp(-ell)

    def match(read_at: sp.Expr) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
        discrete = m + _rules.ema_increment(m, drive.subs(sigma, read_at), 1 - beta_of_ell)
        residual = sp.expand(flow_map - discrete)
        if residual.coeff(eta, 0) != 0:
            raise RuntimeError(f"zeroth order does not match: {residual.coeff(eta, 0)}")
        order1 = sp.factor(residual.coeff(eta, 1))
        d_value = sp.solve(order1, d)[0]
        order2 = sp.factor(sp.simplify(residual.coeff(eta, 2).subs(d, d_value)))
        lag = sp.simplify(eta * d_value.subs(ell, _rules.decay_per_step(beta, SYMPY_OPS)))
        return order1, lag, order2

    order1_start, lag_start, rest_start = match(sp.Integer(0))
    order1_end, lag_end, _ = match(eta)
    if sp.simplify(lag_end - (lag_start - eta)) != 0:
        raise RuntimeError("the upper-level lead is not delta_beta - eta")
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
    eta, lam = _pos("eta"), _pos("lambda")
    t, theta, moving = _real("t"), _real("theta"), _real("Theta")
    c1, c2, c3 = sp.symbols("c_1:4", real=True)
    u_t = sp.Function("u")(t)
    u_dot = sp.diff(u_t, t)
    field = _rules.parameter_velocity(u_t, moving, lam) + eta * (
        c1 * u_dot + c2 * u_t + c3 * moving
    )
    # Flow map to O(eta^3): theta + eta F + eta^2/2 dF/dt, with dF/dt = dF/dt + dF/dtheta F.
    total_dt = sp.diff(field, t) + sp.diff(field, moving) * field
    flow_map = (moving + eta * field + eta**2 / 2 * total_dt).subs(moving, theta)
    u_end = sum(sp.diff(u_t, t, order) * eta**order / sp.factorial(order) for order in range(3))
    discrete = theta + eta * _rules.parameter_velocity(u_end, theta, lam)
    residual = sp.expand(flow_map - discrete)
    if residual.coeff(eta, 1) != 0:
        raise RuntimeError("first order of the parameter map does not match")
    order2 = residual.coeff(eta, 2)
    u, udot = _real("u"), _real("udot")
    in_symbols = sp.expand(order2.subs(u_dot, udot).subs(u_t, u))
    equations = [in_symbols.coeff(udot), in_symbols.coeff(u), in_symbols.coeff(theta)]
    if sp.expand(in_symbols - sum(e * s for e, s in zip(equations, (udot, u, theta)))) != 0:
        raise RuntimeError("the O(eta^2) mismatch is not linear in (udot, u, theta)")
    coefficients = sp.solve(equations, [c1, c2, c3], dict=True)[0]
    leading = _rules.parameter_velocity(u, theta, lam)
    velocity = sp.expand((leading + eta * (c1 * udot + c2 * u + c3 * theta)).subs(coefficients))
    return _ParameterMatch(field.subs(moving, theta), order2, coefficients, velocity, leading)


@functools.cache
def corrected_flow() -> Derivation:
    r"""Derive the first-order corrected flow (THEORY.md §3) by matching, order by order in
    :math:`\eta`, the one-step discrete map with the flow map over one step:
    :math:`\delta_\beta = \eta(1/(1-\beta) - 1/\ln(1/\beta))` (drive at the start of the step),
    :math:`\delta'_\beta = \eta(\beta/(1-\beta) - 1/\ln(1/\beta))` (drive at its end), and
    :math:`\dot\theta = -(u + (\eta/2)\dot u + \lambda(\theta - (\eta/2)\dot\theta_0))`.
    Results: ``delta_beta``, ``delta_prime_beta`` (in ``beta``, ``eta``), ``theta_velocity``
    (in ``u``, ``udot``, ``theta``, ``lambda``, ``eta``)."""
    beta, eta = _pos("beta"), _pos("eta")
    mm = _match_moment()
    pm = _match_parameters()
    limits = {
        name: (sp.limit(lag / eta, beta, 1), sp.limit(lag / eta, beta, 0))
        for name, lag in (("start", mm.lag_start), ("end", mm.lag_end))
    }
    t = _real("t")
    gdot = sp.diff(sp.Function("g")(sp.Function("theta")(t)), t)
    # Second moment: drive g^2; the squared lagged drive agrees with the lagged square to O(eta).
    g, gdot_sym, lag_gamma = _real("g"), _real("gdot"), _real("delta_gamma")
    square_rest = sp.expand(
        (g - lag_gamma * gdot_sym) ** 2 - (g**2 - lag_gamma * sp.diff(g**2, g) * gdot_sym)
    )
    delta, delta_prime = sp.Symbol("delta_beta"), sp.Symbol("deltaprime_beta")
    steps = (
        Step(
            "Over one step $[t, t+\\eta]$ the drive $x$ of a moment varies on the slow scale; "
            "Taylor-expand it in the step time $\\sigma$. Let the flow's drive lag by "
            "$\\delta = d\\,\\eta$ ($d$ unknown), and keep $\\ell = \\ln(1/\\beta)$ fixed with "
            "the exact rate $a = \\ell/\\eta$:",
            (_lhs("x(t+\\sigma)", mm.drive), _lhs("\\tilde x(t+\\sigma)", mm.flow_drive)),
        ),
        Step(
            "The flow map of $\\dot m = a(\\tilde x - m)$ over the step is exact (variation of "
            "constants, `sympy.integrate`):",
            (_lhs("m(t+\\eta)", sp.collect(mm.flow_map, _pos("eta"))),),
        ),
        Step(
            "Level 1 reads its drive at the start of the step ($g_n = g(\\theta_{n-1})$): "
            "$m_n = m + (1-\\beta)(x(t) - m)$ (`_rules.ema_increment`). The $O(\\eta^0)$ terms "
            "agree; the $O(\\eta)$ coefficient of the difference must vanish:",
            (_lhs("[\\eta^1]", mm.order1_start), _eq(delta, mm.lag_start)),
        ),
        Step(
            "The mismatch left is $O(\\eta^2)$: a second-order local error.",
            (_lhs("[\\eta^2]", mm.rest_start),),
        ),
        Step(
            "Levels $i \\ge 2$ read the output of the level below at the end of the step, "
            "$m_n = m + (1-\\beta)(x(t+\\eta) - m)$; the same matching gives a lead, "
            "$\\delta'_\\beta = \\delta_\\beta - \\eta < 0$ (checked by sympy):",
            (_lhs("[\\eta^1]", mm.order1_end), _eq(delta_prime, mm.lag_end)),
        ),
        Step(
            "Limits as $\\beta \\to 1$ and $\\beta \\to 0$:",
            (
                (
                    _eq(sp.Limit(delta / eta, beta, 1), limits["start"][0]),
                    _eq(sp.Limit(delta / eta, beta, 0), limits["start"][1]),
                ),
                (
                    _eq(sp.Limit(delta_prime / eta, beta, 1), limits["end"][0]),
                    _eq(sp.Limit(delta_prime / eta, beta, 0), limits["end"][1]),
                ),
            ),
        ),
        Step(
            "Level 1's drive is $g(\\theta(t))$; its rate is the Jacobian-vector product of the "
            "gradient along the leading velocity, $\\dot g = H(\\theta)\\,\\dot\\theta_0$:",
            (_eq(sp.Symbol("gdot"), gdot),),
        ),
        Step(
            "The second moment is driven by $g^2$, with the lag $\\delta_\\gamma$ (the same "
            "formula in $\\gamma$). The lagged drive $g^2 - \\delta_\\gamma\\,d(g^2)/dt$ and the "
            "square $(g - \\delta_\\gamma\\dot g)^2$, which keeps $v \\ge 0$, differ at "
            "$O(\\delta^2) = O(\\eta^2)$:",
            (
                _lhs(
                    "(g - \\delta_\\gamma\\dot g)^2 - (g^2 - 2\\delta_\\gamma g\\dot g)",
                    square_rest,
                ),
            ),
        ),
        Step(
            "Parameters: the discrete step applies the update of the end of the step, "
            "$\\theta_n = \\theta + \\eta\\,v(u(t+\\eta), \\theta)$ "
            "(`_rules.parameter_velocity`). The flow map of $\\dot\\theta = F$ is "
            "$\\theta + \\eta F + (\\eta^2/2)\\,dF/dt + O(\\eta^3)$. With the ansatz $F$ below, "
            "the $O(\\eta)$ terms agree and the $O(\\eta^2)$ mismatch must vanish for all "
            "$u, \\dot u, \\theta$:",
            (
                _eq(sp.Symbol("F"), pm.ansatz),
                _lhs("[\\eta^2]", pm.order2),
                tuple(_eq(key, value) for key, value in pm.coefficients.items()),
            ),
        ),
        Step(
            "The corrected parameter velocity, with $\\dot\\theta_0$ the leading one:",
            (
                _eq(sp.Symbol("thetadot"), sp.collect(pm.velocity, _pos("eta"))),
                _eq(sp.Symbol("thetadot_0"), pm.leading),
            ),
        ),
        Step(
            "Together (THEORY.md §3): level 1 is driven by $g - \\delta_\\beta \\dot g$ and "
            "$(g - \\delta_\\gamma \\dot g)^2$, levels $i\\ge2$ by "
            "$u^{(i-1)} - \\delta'\\,\\dot u^{(i-1)}$; $u$ in the parameter equation is the "
            "bias-corrected update and $\\dot u$ its total derivative along the corrected flow.",
        ),
    )
    results = {
        "delta_beta": mm.lag_start,
        "delta_prime_beta": mm.lag_end,
        "theta_velocity": pm.velocity,
        "lag_remainder": mm.rest_start,
    }
    return Derivation("corrected_flow", "The first-order corrected flow", steps, _plain(results))


class Lags(NamedTuple):
    r"""NumPy functions ``f(beta, lr)`` of the corrected flow's lags: ``first_level`` is
    :math:`\delta_\beta` (use it with ``gamma`` for :math:`\delta_\gamma`), ``upper_levels``
    is :math:`\delta'_\beta` (levels ``i >= 2``)."""

    first_level: Callable[[Any, Any], Any]
    upper_levels: Callable[[Any, Any], Any]


@functools.cache
def lag_functions() -> Lags:
    r"""`sympy.lambdify` of the derived lags: :math:`\delta_\beta(\beta, \eta)` and
    :math:`\delta'_\beta(\beta, \eta)`, vectorised NumPy functions of ``(beta, lr)`` for
    ``0 < beta < 1``.

    The expressions are evaluated in :math:`x = 1-\beta` with ``log1p(-x)`` for
    :math:`\ln\beta`, which keeps the relative error near :math:`10^{-16}/(1-\beta)` (the
    two terms cancel as :math:`\beta \to 1`)."""
    from sympy.codegen.cfunctions import log1p

    results = corrected_flow().results
    beta, eta, x = sp.Symbol("beta"), sp.Symbol("eta"), sp.Symbol("x")

    def numeric(expr: sp.Expr) -> Callable[[Any, Any], Any]:
        in_x = expr.subs(beta, 1 - x).replace(sp.log, lambda arg: log1p(sp.expand(arg - 1)))
        function = sp.lambdify([x, eta], in_x, modules="numpy")
        return lambda beta_value, lr: function(1.0 - np.asarray(beta_value, dtype=float), lr)

    return Lags(numeric(results["delta_beta"]), numeric(results["delta_prime_beta"]))


# --------------------------------------------------------------------------- documents


@functools.cache
def derivations() -> dict[str, tuple[Derivation, ...]]:
    """Every derivation, grouped by the ``theory/`` document that shows it."""
    return {
        "adam.md": (
            moment_rates(),
            bias_correction(),
            discrete_map(1, False),
            leading_flow(1, False),
            bias_corrected_form(),
            memory_kernel(),
        ),
        "adamw.md": (discrete_map(1, True), leading_flow(1, True), decoupled_decay()),
        "kadam.md": (discrete_map(2, True), leading_flow(2, True), _kadam_levels()),
        "stability.md": (stability(), amplification()),
        "corrected_flow.md": (corrected_flow(),),
    }


@functools.cache
def _kadam_levels() -> Derivation:
    conditions = level_conditions(2)
    bound = update_bound()
    top = bound.xreplace(
        {sp.Symbol("beta"): sp.Symbol("beta_2"), sp.Symbol("gamma"): sp.Symbol("gamma_2")}
    )
    steps = (
        Step(
            "Each level is an Adam normaliser of its own input sequence, so the bound of "
            "*stability.md* applies level by level: level $i$ is bounded iff",
            (conditions,),
        ),
        Step(
            "and the final update obeys the top level's bound whatever the lower levels do "
            "(a stable top level absorbs an unstable lower one):",
            (r"|u^{(2)}| \le " + sp.latex(top),),
        ),
    )
    return Derivation(
        "kadam_levels",
        "Stability level by level",
        steps,
        {"conditions": conditions, "top_bound": top},
    )


_INTROS = {
    "adam.md": (
        "Adam",
        "From the discrete Adam step (THEORY.md §1) to its continuous-time flow (§2): the "
        "moment rates, the bias correction, the flow and its bias-corrected form.",
    ),
    "adamw.md": (
        "AdamW",
        "AdamW is Adam with decoupled weight decay $\\lambda$: the same moments, and the "
        "parameter velocity $-(u + \\lambda\\theta)$.",
    ),
    "kadam.md": (
        "k-Adam",
        "k-Adam applies the adaptive normalisation $k$ times in cascade; shown for $k = 2$ "
        "(the pattern repeats for every level).",
    ),
    "stability.md": (
        "Bounded updates and the stable region",
        "The paper's first claim (THEORY.md §4): Adam's update is bounded for every gradient "
        "sequence iff $\\gamma > \\beta^2$.",
    ),
    "corrected_flow.md": (
        "The first-order corrected flow",
        "Beyond the paper (THEORY.md §3): the flow whose one-step map matches the discrete "
        "optimizer's to second order in $\\eta$.",
    ),
}

_HEADER = (
    "<!-- Generated by `python scripts/make_theory.py` from `adamflow.symbolic`; "
    "do not edit by hand. -->\n\n"
)


def theory_documents() -> dict[str, str]:
    """The ``theory/`` Markdown documents (file name -> text), written from `derivations`."""
    docs: dict[str, str] = {}
    groups = derivations()
    for name, group in groups.items():
        title, intro = _INTROS[name]
        parts = [f"{_HEADER}# {title}\n\n{intro}\n"]
        parts += [derivation.markdown("##") for derivation in group]
        docs[name] = "\n".join(parts)
    index = [
        f"{_HEADER}# Theory: derivations generated by `adamflow.symbolic`\n",
        "Every equation below is derived by sympy from the discrete optimizers (the "
        "same `adamflow._rules` functions the numerical code runs); regenerate with "
        "`python scripts/make_theory.py`, check with `--check`.\n",
    ]
    for name, group in groups.items():
        title, intro = _INTROS[name]
        index.append(f"- [{title}]({name}): " + "; ".join(d.title for d in group) + ".")
    index.append("\n## Main results\n")
    for label, expr in (
        ("Stable region", stability_condition()),
        ("Update bound", _eq(sp.Symbol("C"), update_bound())),
        ("Continuous stable region", stability_condition("continuous")),
        ("Lag of level 1", _eq(sp.Symbol("delta_beta"), corrected_flow().results["delta_beta"])),
    ):
        index += [f"{label}:", "", "$$", sp.latex(expr), "$$", ""]
    docs["README.md"] = "\n".join(index).rstrip() + "\n"
    return docs
