r"""The corrected flows (theory/corrected_flow.md §2): discrete k-Adam followed to
:math:`O(\eta^{p+1})` per unit time, ``order="corrected"`` (p = 1) and
``order="corrected2"`` (p = 2).

The discrete optimizer averages gradients read at step starts (level 1) or the level
below's output at step ends (levels ≥ 2), and sums updates at step ends. Matching these
one-step maps on exponential sequences (`adamflow.symbolic.modified_coefficients`; the
numbers from `drive_coefficients` and `parameter_coefficients`, without sympy) gives
operators in :math:`\eta\,d/dt` whose truncation at order p is the order-p flow, in the
bias-corrected state :math:`(\theta, \hat m_i, \hat v_i)`::

    drive of a first moment:   x̃ = Σ_{j≤P} c_j η^j x⁽ʲ⁾          (x = g at level 1, u⁽ⁱ⁻¹⁾ above)
    drive of a second moment:  (Σ_j c'_j η^j x⁽ʲ⁾)² + the terms that make it Σ_j c'_j η^j (x²)⁽ʲ⁾
                               to order P (the square keeps it ≥ 0 at order 1)
    dm̂_i/dt = a_i/(1-e^{-a_i t}) (x̃ - m̂_i),   likewise v̂_i
    dθ/dt   = -Σ_{j≤p} η^j (q^R_j u⁽ʲ⁾ + λ q^L_j θ⁽ʲ⁾)               (Euler–Maclaurin)

Every derivative is a total time derivative along the flow itself. They are computed as a
fixed point of Taylor jets: starting from zero jets, each pass differentiates the gradient
along the current θ-jet (nested JVPs), then level by level the moments' jets from their
equations and the next level's input from them, and last the θ-jet; each pass gains one
order in η, and p + 2 passes (`corrected_jets`) are used (measured at lr = 0.01 on a 5-d
quadratic: one more pass changes the moment rates by ~2e-9 relative at order 1 and the
whole field by ~1e-12 at order 2, far below each order's own error).

Drive order P: p for Adam/AdamW; at least 2 for a cascade (k ≥ 2), whose upper levels
average the level below's output, whose bias-correction transient a first-order drive
misses by O(η) (measured: 2-Adam's first-order flow then converges at order 1.1; with
second-order drives at 2.0–2.3).

The start: the flow begins after the first discrete step, at t = η, from that step's
exact state (`cascade_step`): there the bias-corrected moments are averages over one
step, and their window :math:`a/(1-e^{-at})` is no longer singular. Saved times in
[0, η) lie on the first step's straight segment from θ₀ to θ₁.

Where it holds (theory/corrected_validity.md): every drive should change little per step
against its running RMS. Per coordinate, `coordinate_validity` is the largest
:math:`\eta|\dot x_i|/(\sqrt{\hat v_i}+\varepsilon)` over the levels; its root mean square
over the coordinates, ``rms``, predicts the corrected flow's gain over the leading one
(`predicted_gain`, calibrated by `adamflow.experiments.validity_calibration`), and
`check_start` refuses a start where that gain is below 1 (or where corrected2's series in
lr diverges). A few coordinates above 1 (a gradient that starts near zero) do not: their
error stays bounded, and the calibration (figures/validity_calibration.json) measured
several-fold gains where the largest coordinate is far above 1. ``validity`` on the
`Trajectory` is the largest coordinate over the saved points; a path whose ``rms`` passes
`rms_limit` warns.

A known limit (measured): the bias-correction transients are modes :math:`e^{-\ell t/\eta}`,
:math:`\ell = \ln(1/\beta_1)`, for which ηd/dt is not small; the truncated operators miss
them by :math:`O(\eta^2\ell^2)` with a small constant, the same at every order p ≥ 2. On
`adamflow.experiments.convergence.far_quadratic` (β₁ = 0.85) it is visible: corrected2's
fitted order for Adam over lr 0.02..0.0025 is 2.67, and the same construction at order 3
reaches only 2.06 (largest error along the path).
"""

from __future__ import annotations

import decimal
import fractions
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from . import rules
from ._flows import FlowModel, FlowParams, FlowState, state_theta
from ._optimizers import KAdam, cascade_step, init_state, parameter_step
from ._trajectory import PyTree, StartValidity, TrainingState

tree_map = jax.tree_util.tree_map
tree_leaves = jax.tree_util.tree_leaves

#: The corrected orders `adamflow.integrate` offers, by name.
ORDERS = {"corrected": 1, "corrected2": 2}

#: Drive order of a cascade (k ≥ 2): at least this (see the module docstring).
CASCADE_DRIVE_ORDER = 2

#: The deepest cascade the corrected flows support; see `CASCADE_FINDINGS`.
MAX_LEVELS = 2

#: What was measured for k = 3 (quoted by the refusal): β₁ = 0.85, β₂ = 0.98, T = 0.5,
#: lr 0.02..0.0025, order of the final / largest error.
CASCADE_FINDINGS = (
    "for k = 3 the construction holds only where no gradient coordinate crosses zero: "
    "'corrected' converges at order 2.90 (final error) on the quadratic-plus-log-cosh loss "
    "and 2.80 / 1.97 (final / largest) on a coupled quadratic, both far from their minimum, "
    "but at 1.05 / 0.84 when one coordinate's gradient crosses zero within the run, while "
    "its validity stays near 0.1 and does not flag it (2-Adam keeps order 2.28 / 2.01 "
    "there)"
)


class CorrectedConstants(NamedTuple):
    """The corrected flow's constants, as arrays (a new lr or β does not recompile; the
    orders are the arrays' lengths): ``lr``; per level the drive coefficients of the first
    and second moments, shape ``(k, P + 1)``; the parameter equation's ``right`` (updates)
    and ``left`` (weight decay) coefficients, shape ``(p + 1,)``."""

    lr: Any
    drive_m: Any
    drive_v: Any
    right: Any
    left: Any


def drive_order(opt: KAdam, order: int) -> int:
    """The order P of the drives: ``order`` for k = 1, at least `CASCADE_DRIVE_ORDER` for a
    cascade."""
    return order if opt.k == 1 else max(order, CASCADE_DRIVE_ORDER)


def corrected_constants(opt: KAdam, order: int) -> CorrectedConstants:
    """The coefficients of `drive_coefficients` for ``opt``'s factors (level 1 reads its
    drive at step starts, levels ≥ 2 at step ends) and `parameter_coefficients`."""
    drives = drive_order(opt, order)

    def table(factors: tuple[float, ...]) -> Any:
        rows = [
            drive_coefficients(float(f), 1 if i == 0 else 0, drives) for i, f in enumerate(factors)
        ]
        return jnp.asarray(np.array(rows))

    right, left = parameter_coefficients(order)
    return CorrectedConstants(
        jnp.asarray(opt.lr), table(opt.b1s), table(opt.b2s), jnp.asarray(right), jnp.asarray(left)
    )


# 50 significant digits: a drive's coefficient c_j sums terms of size (β/(1-β))^j that
# cancel to O(1) (e.g. c_1 = 1/ℓ - β/(1-β)), so doubles would lose j·log10(1/(1-β)) digits.
_DIGITS = 50


def _series_reciprocal(series: list[Any]) -> list[Any]:
    """The power series 1/f from f's coefficients (f₀ ≠ 0), to the same length."""
    inverse = [1 / series[0]]
    for n in range(1, len(series)):
        inverse.append(-sum(series[k] * inverse[n - k] for k in range(1, n + 1)) / series[0])
    return inverse


def _series_product(a: list[Any], b: list[Any]) -> list[Any]:
    return [sum(a[k] * b[n - k] for k in range(n + 1)) for n in range(len(a))]


@functools.cache
def drive_coefficients(factor: float, offset: int, order: int) -> tuple[float, ...]:
    r"""The Taylor coefficients :math:`c_0..c_{order}` of a moment's drive operator
    (theory/corrected_flow.md §2)

    .. math:: P(z) = \frac{(1-\beta)\,e^{-z\,o}}{1-\beta e^{-z}}\cdot
              \frac{\ell+z}{\ell}, \qquad \ell = \ln(1/\beta),

    at :math:`\beta` = ``factor`` (offset o = 1 for level 1, which reads its input at step
    starts; 0 above), in 50-digit decimal arithmetic. The series `adamflow.symbolic.
    modified_coefficients` derives from the one-step maps, without sympy at run time."""
    if not 0.0 < factor < 1.0:
        raise ValueError(f"an EMA factor must lie in (0, 1), got {factor}")
    with decimal.localcontext() as context:
        context.prec = _DIGITS
        beta = decimal.Decimal(repr(float(factor)))
        ell = -beta.ln()
        ratio = beta / (1 - beta)
        exp_minus = [decimal.Decimal((-1) ** k) / math.factorial(k) for k in range(order + 1)]
        # (1-β)/(1-βe^{-z}) = 1/(1 + r(1-e^{-z})), r = β/(1-β): no 1/(1-β) to cancel.
        denominator = [1 + ratio * (1 - exp_minus[0])] + [-ratio * c for c in exp_minus[1:]]
        drive = _series_reciprocal(denominator)
        if offset == 1:
            drive = _series_product(drive, exp_minus)
        lag = [decimal.Decimal(1), 1 / ell] + [decimal.Decimal(0)] * (order - 1)
        return tuple(float(c) for c in _series_product(drive, lag[: order + 1]))


@functools.cache
def parameter_coefficients(order: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    r"""The Euler–Maclaurin weights to :math:`z^{order}` (theory/corrected_flow.md §2):
    :math:`Q_R(z) = z/(1-e^{-z})` for the updates, summed at step ends, and
    :math:`Q_L(z) = z/(e^z-1)` for the weight decay, applied at step starts; exact
    rationals, returned as floats."""
    # (1 - e^{-z})/z = Σ_k (-1)^k z^k/(k+1)!, and (e^z - 1)/z = Σ_k z^k/(k+1)!.
    right = _series_reciprocal(
        [fractions.Fraction((-1) ** k, math.factorial(k + 1)) for k in range(order + 1)]
    )
    left = _series_reciprocal(
        [fractions.Fraction(1, math.factorial(k + 1)) for k in range(order + 1)]
    )
    return tuple(float(c) for c in right), tuple(float(c) for c in left)


def _taylor(function: Callable[[Any], Any], curve: list[Any], n: int) -> list[Any]:
    r"""The derivatives :math:`d^l/ds^l\,f(c(s))` at s = 0, l = 0..n, of ``function`` along
    the polynomial curve :math:`c(s) = \sum_k c_k s^k/k!` (``curve`` = [c_0, c_1, ...],
    PyTrees), by nested JVPs in the scalar s."""
    return _derivatives(lambda s: function(_polynomial(curve, 0, s)), n)


def _derivatives(function: Callable[[Any], Any], n: int) -> list[Any]:
    """``[f(0), f'(0), ..., f⁽ⁿ⁾(0)]`` of a function of one scalar, by nested JVPs."""
    values, current = [], function
    for _ in range(n + 1):
        values.append(current(0.0))
        current = _differentiated(current)
    return values


def _differentiated(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda s: jax.jvp(function, (s,), (jnp.ones_like(s),))[1]


def _polynomial(jet: list[Any], derivative: int, s: Any) -> Any:
    r"""The ``derivative``-th derivative at ``s`` of :math:`\sum_k J_k s^k/k!` (PyTrees)."""
    terms = [
        (s ** (k - derivative) / math.factorial(k - derivative), coefficient)
        for k, coefficient in enumerate(jet)
        if k >= derivative
    ]
    return tree_map(
        lambda *leaves: sum(w * leaf for (w, _), leaf in zip(terms, leaves)), *[c for _, c in terms]
    )


def _level_update(moments: tuple[PyTree, PyTree], eps: Any) -> PyTree:
    r"""A level's output :math:`\hat m/(\sqrt{\hat v}+\varepsilon)` from its bias-corrected
    ``moments = (m̂, v̂)``."""
    return tree_map(lambda m, v: rules.normalized_update(m, v, eps), *moments)


def _window_rate(rate: Any, t: Any) -> Any:
    r"""The bias-corrected moment's rate :math:`a/(1-e^{-at})`."""
    return rate / rules.bias_correction(rate * t)


def _second_moment_drive(coefficients: Any, lr: Any, inputs: list[Any]) -> Any:
    r"""The second moment's drive from the input's derivatives ``inputs`` = [x, ẋ, ...]:
    :math:`(\sum_j c_j\eta^j x^{(j)})^2` plus, for orders o ≥ 2, the terms that make it
    :math:`\sum_j c_j \eta^j (x^2)^{(j)}` to :math:`\eta^{P}` (Leibniz)."""
    order = len(inputs) - 1
    linear = [coefficients[j] * lr**j * inputs[j] for j in range(order + 1)]
    drive = sum(linear) ** 2
    for o in range(2, order + 1):
        square = sum(math.comb(o, q) * inputs[q] * inputs[o - q] for q in range(o + 1))
        drive = drive + coefficients[o] * lr**o * square
        drive = drive - sum(linear[q] * linear[o - q] for q in range(o + 1))
    return drive


class _Jets(NamedTuple):
    theta: list[PyTree]  # θ, θ̇, θ̈, ...
    m: list[list[PyTree]]  # per level: m̂_i and its derivatives
    v: list[list[PyTree]]
    inputs: list[list[PyTree]]  # per level: its input x_i and derivatives; [k] is u⁽ᵏ⁾


def corrected_jets(
    consts: CorrectedConstants,
    t: Any,
    y: FlowState,
    params: FlowParams,
    grad_fn: Callable[[PyTree], PyTree],
) -> _Jets:
    r"""The Taylor jets of the corrected flow through ``(t, y)``: the fixed point of the
    module docstring's relations, by ``p + 2`` passes."""
    order = consts.right.shape[0] - 1
    size = max(order, consts.drive_m.shape[1] - 1)  # jets hold derivatives 0..size
    lr, eps, wd = consts.lr, params.eps, params.weight_decay
    zeros = lambda tree: tree_map(jnp.zeros_like, tree)  # noqa: E731
    theta = [y.theta] + [zeros(y.theta)] * size
    ms = [[m] + [zeros(m)] * size for m in y.m]
    vs = [[v] + [zeros(v)] * size for v in y.v]
    inputs: list[list[PyTree]] = []
    for _ in range(order + 2):
        x = _taylor(grad_fn, theta, size)
        inputs = [x]
        for i in range(len(y.m)):
            drive_m, drive_v = consts.drive_m[i], consts.drive_v[i]
            width = drive_m.shape[0] - 1

            def m_rate(s: Any, i: int = i, x: list[Any] = x, c: Any = drive_m) -> Any:
                drive = tree_map(
                    lambda *d: sum(c[j] * lr**j * d[j] for j in range(width + 1)),
                    *[_polynomial(x, j, s) for j in range(width + 1)],
                )
                rate = _window_rate(params.a[i], t + s)
                return tree_map(lambda d, m: rate * (d - m), drive, _polynomial(ms[i], 0, s))

            def v_rate(s: Any, i: int = i, x: list[Any] = x, c: Any = drive_v) -> Any:
                drive = tree_map(
                    lambda *d: _second_moment_drive(c, lr, list(d)),
                    *[_polynomial(x, j, s) for j in range(width + 1)],
                )
                rate = _window_rate(params.b[i], t + s)
                return tree_map(lambda d, v: rate * (d - v), drive, _polynomial(vs[i], 0, s))

            ms[i] = [y.m[i]] + _derivatives(m_rate, size - 1)
            vs[i] = [y.v[i]] + _derivatives(v_rate, size - 1)
            x = _taylor(
                functools.partial(_level_update, eps=eps),
                [(ms[i][j], vs[i][j]) for j in range(size + 1)],
                size,
            )
            inputs.append(x)

        def theta_rate(s: Any, u: list[Any] = x, th: list[Any] = theta) -> Any:
            updates = [_polynomial(u, j, s) for j in range(order + 1)]
            thetas = [_polynomial(th, j, s) for j in range(order + 1)]
            return tree_map(
                lambda *leaves: (
                    -sum(
                        lr**j
                        * (
                            consts.right[j] * leaves[j]
                            + wd * consts.left[j] * leaves[order + 1 + j]
                        )
                        for j in range(order + 1)
                    )
                ),
                *updates,
                *thetas,
            )

        theta = [y.theta] + _derivatives(theta_rate, size - 1)
    return _Jets(theta, ms, vs, inputs)


def corrected_field(
    consts: CorrectedConstants,
    t: Any,
    y: FlowState,
    params: FlowParams,
    grad_fn: Callable[[PyTree], PyTree],
    xp: Any,
) -> FlowState:
    r"""The corrected flow's vector field (theory/corrected_flow.md §2):
    :math:`\dot\theta = -\sum_{j\le p}\eta^j(q^R_j u^{(j)} + \lambda q^L_j\theta^{(j)})`,
    :math:`\dot{\hat m}_i = \frac{a_i}{1-e^{-a_i t}}(\tilde x_i - \hat m_i)`, likewise
    :math:`\hat v_i`, with the drives of the module docstring."""
    _require_jax(xp)
    jets = corrected_jets(consts, t, y, params, grad_fn)
    return FlowState(jets.theta[1], tuple(m[1] for m in jets.m), tuple(v[1] for v in jets.v))


def corrected_update(
    consts: CorrectedConstants,
    t: Any,
    y: FlowState,
    params: FlowParams,
    grad_fn: Callable[[PyTree], PyTree],
    xp: Any,
) -> PyTree:
    r"""The update :math:`u^{(k)} = \hat m_k/(\sqrt{\hat v_k}+\varepsilon)` of the state
    (comparable with the discrete :math:`u_n` at :math:`t = n\eta`)."""
    _require_jax(xp)
    return _level_update((y.m[-1], y.v[-1]), params.eps)


def _require_jax(xp: Any) -> None:
    if xp is not rules.JAX_OPS:
        raise TypeError(
            "the corrected orders need a JAX-traceable gradient: their field differentiates "
            "the gradient along the flow (nested JVPs). Pass a JAX loss or a JAX grad= "
            "function, or use order='leading' with a NumPy gradient."
        )


def start_time(opt: KAdam) -> float:
    """The corrected flows start after the first discrete step, at t = lr."""
    return float(opt.lr)


#: The calibration of the start's indicator (theory/corrected_validity.md §2, measured by
#: `adamflow.experiments.validity_calibration` into figures/validity_calibration.json): over
#: four models and four lrs, the leading flow's largest error along the path over the
#: corrected flow's is GAIN_SCALE * rms**-GAIN_POWER within a factor of about 2 (rms the
#: `StartValidity.rms` at step 1). Where that is below 1 the corrected flow was measured to
#: lose, and it is refused (rms above `rms_limit`).
GAIN_SCALE = 10.9
GAIN_POWER = 0.684


def predicted_gain(rms: float) -> float:
    r"""The calibrated gain :math:`C\,\mathrm{rms}^{-p}` of the corrected flow over the
    leading one (`GAIN_SCALE`, `GAIN_POWER`); ``inf`` at rms = 0."""
    return math.inf if rms == 0 else GAIN_SCALE * rms**-GAIN_POWER


def rms_limit() -> float:
    """The indicator above which the predicted gain is below 1: the refusal's limit."""
    return GAIN_SCALE ** (1 / GAIN_POWER)


def first_step_state(
    consts: CorrectedConstants,
    opt: KAdam,
    params: FlowParams,
    theta0: PyTree,
    grad_fn: Callable[[PyTree], PyTree],
    xp: Any = rules.JAX_OPS,
) -> FlowState:
    r"""The state at t = η: one exact discrete step (`cascade_step`, `parameter_step`), with
    the bias-corrected moments :math:`\hat m_i = m_i/(1-\beta_{1,i})` (one gradient, or one
    output of the level below, averaged). `check_start` says whether the flow may begin
    there."""
    _require_jax(xp)
    state, update = cascade_step(opt, init_state(opt.k, theta0), grad_fn(theta0))
    theta1 = parameter_step(opt, theta0, update)
    return resume(
        consts, opt, params, TrainingState(theta1, state.m, state.v, 1), opt.lr, grad_fn, xp
    )


def resume(
    consts: CorrectedConstants,
    opt: KAdam,
    params: FlowParams,
    state: TrainingState,
    t: Any,
    grad_fn: Callable[[PyTree], PyTree],
    xp: Any = rules.JAX_OPS,
) -> FlowState:
    r"""The state at :math:`t = K\eta` from the discrete state after K ≥ 1 steps: θ_K and
    the bias-corrected moments :math:`\hat m_i = m_i/(1-\beta_{1,i}^K)`,
    :math:`\hat v_i = v_i/(1-\beta_{2,i}^K)`. `check_start` says whether the flow may
    begin there."""
    _require_jax(xp)
    step = state.step

    def corrected(levels: tuple[PyTree, ...], factors: tuple[float, ...]) -> tuple[PyTree, ...]:
        divisors = [rules.bias_correction(step * rules.decay_per_step(b)) for b in factors]
        return tuple(tree_map(lambda x, d=d: x / d, level) for level, d in zip(levels, divisors))

    return FlowState(state.theta, corrected(state.m, opt.b1s), corrected(state.v, opt.b2s))


def before_start(ts: np.ndarray, theta0: PyTree, y_start: FlowState, t_start: float) -> FlowState:
    r"""States at the saved times ``ts`` < η: the first discrete step's straight segment
    :math:`\theta_0 + (t/\eta)(\theta_1 - \theta_0)`, with the moments of that step."""
    fraction = np.asarray(ts, dtype=float) / t_start

    def segment(start: Any, end: Any) -> Any:
        start, end = np.asarray(start), np.asarray(end)
        shape = (-1,) + (1,) * start.ndim
        return start[None] + fraction.reshape(shape) * (end - start)[None]

    theta = tree_map(segment, theta0, y_start.theta)
    stack = lambda tree: tree_map(  # noqa: E731
        lambda leaf: np.broadcast_to(np.asarray(leaf), (len(fraction),) + np.shape(leaf)).copy(),
        tree,
    )
    return FlowState(theta, tuple(stack(m) for m in y_start.m), tuple(stack(v) for v in y_start.v))


def _raw_moments(
    t: Any, y: FlowState, params: FlowParams, grad_fn: Callable[[PyTree], PyTree], xp: Any
) -> Any:
    r"""Raw moments :math:`m_i = \hat m_i (1 - e^{-a_i t})`, :math:`v_i = \hat v_i (1 -
    e^{-b_i t})` at the times ``t`` (shape ``(S,)``; state leaves have a leading axis S)."""
    t = np.asarray(t, dtype=float)

    def raw(moment: Any, rate: Any) -> Any:
        arr = np.asarray(moment)
        divisor = rules.bias_correction(float(rate) * t, rules.NUMPY_OPS)
        with np.errstate(invalid="ignore"):  # a failed solve leaves inf states: keep nan
            return arr * divisor.reshape((-1,) + (1,) * (arr.ndim - 1))

    ms = tuple(tree_map(lambda m: raw(m, params.a[i]), y.m[i]) for i in range(len(y.m)))
    vs = tuple(tree_map(lambda v: raw(v, params.b[i]), y.v[i]) for i in range(len(y.v)))
    return ms, vs


def corrected_model(opt: KAdam, convention: str, order: int = 1) -> FlowModel:
    r"""The order-``order`` corrected flow of ``opt`` as a `FlowModel`
    (``order="corrected"``/``"corrected2"`` of `adamflow.integrate`).

    Raises ``ValueError`` for a convention other than ``"exact"`` (the matching uses the
    discrete decay :math:`\beta^n = e^{-at}`, :math:`a = \ln(1/\beta)/\eta`), for
    k > `MAX_LEVELS` (`CASCADE_FINDINGS`) and for β₁_i = 0 or β₂_i = 0 (a memoryless level
    has no exact-decay rate).
    """
    name = next(key for key, value in ORDERS.items() if value == order)
    if convention != "exact":
        raise ValueError(
            f"order={name!r} needs convention='exact': it matches the discrete decay "
            "b^n = exp(-a t) with a = ln(1/b)/lr"
        )
    if opt.k > MAX_LEVELS:
        raise ValueError(
            f"order={name!r} supports k <= {MAX_LEVELS}, got k={opt.k}: {CASCADE_FINDINGS}. "
            "Use order='leading' for deeper cascades."
        )
    for label, values in (("b1", opt.b1s), ("b2", opt.b2s)):
        if any(value == 0.0 for value in values):
            raise ValueError(
                f"order={name!r} needs every {label} in (0, 1), got {label}={values}: a "
                f"memoryless level has no exact-decay rate ln(1/{label})/lr to match"
            )
    consts = corrected_constants(opt, order)
    return FlowModel(
        start=Partial(first_step_state, consts),
        field=Partial(corrected_field, consts),
        update=Partial(corrected_update, consts),
        theta=state_theta,
        moments=_raw_moments,
        validity=Partial(path_validity, consts),
        resume=Partial(resume, consts),
        check_start=Partial(check_start, consts),
        start_time=start_time,
        before_start=before_start,
    )


def _leading_velocity(y: FlowState, params: FlowParams) -> PyTree:
    r"""The leading-order parameter velocity :math:`-(u^{(k)} + \lambda\theta)` at the
    bias-corrected state ``y``, :math:`u^{(k)} = \hat m_k/(\sqrt{\hat v_k}+\varepsilon)`."""
    update = _level_update((y.m[-1], y.v[-1]), params.eps)
    return tree_map(
        lambda u, p: rules.parameter_velocity(u, p, params.weight_decay), update, y.theta
    )


def coordinate_validity(
    lr: Any, t: Any, y: FlowState, params: FlowParams, grad_fn: Callable[[PyTree], PyTree]
) -> PyTree:
    r"""Per coordinate, :math:`\max_i \eta|\dot x_i|/(\sqrt{\hat v_i}+\varepsilon)` at
    ``(t, y)`` over the levels i, a PyTree like θ, with the leading-order rates:
    :math:`\dot x_1 = H\dot\theta_0`, :math:`\dot\theta_0 = -(u^{(k)} + \lambda\theta)`, and
    :math:`\dot x_{i+1}` the JVP of :math:`u^{(i)}` along
    :math:`\frac{a_i}{1-e^{-a_i t}}(x_i - \hat m_i)` and its second-moment twin (theory/
    corrected_validity.md §1). (Not from the corrected jets: their fixed-point passes need not
    converge exactly where this is large.)"""
    eps = params.eps
    g, hessian_times = jax.linearize(grad_fn, y.theta)
    x, x_dot = g, hessian_times(_leading_velocity(y, params))
    worst = tree_map(jnp.zeros_like, y.theta)
    for i, (m, v) in enumerate(zip(y.m, y.v)):
        worst = tree_map(
            lambda w, xd, vv: jnp.maximum(
                w, lr * jnp.abs(xd) / (jnp.sqrt(jnp.maximum(vv, 0.0)) + eps)
            ),
            worst,
            x_dot,
            v,
        )
        dm = tree_map(lambda xx, mm: _window_rate(params.a[i], t) * (xx - mm), x, m)
        dv = tree_map(lambda xx, vv: _window_rate(params.b[i], t) * (xx * xx - vv), x, v)
        x, x_dot = jax.jvp(functools.partial(_level_update, eps=eps), ((m, v),), ((dm, dv),))
    return worst


def _leaf_summaries(
    grad_fn: Callable[[PyTree], PyTree],
    consts: CorrectedConstants,
    params: FlowParams,
    t: Any,
    y: FlowState,
) -> Any:
    """Per leaf of `coordinate_validity` at ``(t, y)``: its sum of squares, largest value and
    count above 1."""
    leaves = jax.tree_util.tree_leaves(coordinate_validity(consts.lr, t, y, params, grad_fn))
    return (
        [jnp.sum(leaf**2) for leaf in leaves],
        [jnp.max(leaf) for leaf in leaves],
        [jnp.sum(leaf > 1.0) for leaf in leaves],
    )


_validity_sums = jax.jit(_leaf_summaries, static_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def _validity_at(
    grad_fn: Callable[[PyTree], PyTree],
    consts: CorrectedConstants,
    params: FlowParams,
    ts: Any,
    ys: FlowState,
) -> Any:
    """Per saved point: the largest `coordinate_validity` and its root mean square."""
    size = sum(leaf[0].size for leaf in tree_leaves(ys.theta))

    def summary(t: Any, y: FlowState) -> Any:
        squares, largest, _ = _leaf_summaries(grad_fn, consts, params, t, y)
        return functools.reduce(jnp.maximum, largest), jnp.sqrt(sum(squares) / size)

    return jax.vmap(summary)(ts, ys)


def path_validity(
    consts: CorrectedConstants,
    opt: KAdam,
    params: FlowParams,
    ts: np.ndarray,
    ys: FlowState,
    grad_fn: Callable[[PyTree], PyTree],
) -> tuple[float, str | None]:
    r"""``(validity, warning)`` of a corrected path over the saved points ``ts`` ≥ η (states
    ``ys``, leading time axis): the largest `coordinate_validity` over them (``nan`` if no
    saved state there is finite), and, where the indicator (its root mean square over the
    coordinates) passes `rms_limit` at some point, why the flow no longer holds there."""
    params = jax.tree_util.tree_map(jnp.asarray, params)
    ts = np.asarray(ts, dtype=float)
    keep = np.flatnonzero(ts >= start_time(opt) * (1 - 1e-12))
    if keep.size == 0:
        return math.nan, None
    # Pad to a power of two (repeating the last point) so few lengths get compiled.
    size = max(8, 1 << (len(keep) - 1).bit_length())
    index = keep[np.minimum(np.arange(size), len(keep) - 1)]
    padded = tree_map(lambda x: jnp.asarray(x)[index], ys)
    largest, rms = (
        np.asarray(x) for x in _validity_at(grad_fn, consts, params, jnp.asarray(ts[index]), padded)
    )
    finite = np.isfinite(largest) & np.isfinite(rms)
    if not finite.any():
        return math.nan, None
    worst = int(np.argmax(np.where(finite, rms, -np.inf)))
    warning = None
    if rms[worst] > rms_limit():
        warning = (
            f"its indicator rms(lr*|dx/dt|/(sqrt(v_hat)+eps)) reaches {rms[worst]:.3g} at step "
            f"{ts[index[worst]] / float(consts.lr):g}, above {rms_limit():.3g} where the "
            "calibration predicts the leading flow closer to the discrete steps: no expansion "
            "in lr holds there"
        )
    return float(largest[finite].max()), warning


@functools.partial(jax.jit, static_argnums=0)
def _series_norms(
    grad_fn: Callable[[PyTree], PyTree],
    first: CorrectedConstants,
    second: CorrectedConstants,
    params: FlowParams,
    t: Any,
    y: FlowState,
) -> Any:
    r""":math:`\|\dot\theta_1-\dot\theta_0\|` and :math:`\|\dot\theta_2-\dot\theta_1\|`: the
    leading, corrected and corrected2 parameter velocities at ``(t, y)``."""
    leading = _leading_velocity(y, params)
    one = corrected_jets(first, t, y, params, grad_fn).theta[1]
    two = corrected_jets(second, t, y, params, grad_fn).theta[1]

    def distance(a: PyTree, b: PyTree) -> Any:
        return jnp.sqrt(sum(jnp.sum((x - z) ** 2) for x, z in zip(tree_leaves(a), tree_leaves(b))))

    return distance(one, leading), distance(two, one)


def start_validity(
    consts: CorrectedConstants,
    opt: KAdam,
    params: FlowParams,
    t: Any,
    y: FlowState,
    grad_fn: Callable[[PyTree], PyTree],
) -> StartValidity:
    """The `StartValidity` of the corrected flow (its order from ``consts``) begun at ``(t,
    y)``: `coordinate_validity` summarized, `predicted_gain`, the leaves that limit it and,
    for order 2, the ratio of its series' two corrections."""
    params = tree_map(jnp.asarray, params)
    t = jnp.asarray(float(t))
    squares, largest, above = (
        [float(x) for x in part] for part in _validity_sums(grad_fn, consts, params, t, y)
    )
    paths = [
        "theta" + jax.tree_util.keystr(path)
        for path, _ in jax.tree_util.tree_flatten_with_path(y.theta)[0]
    ]
    size = sum(int(np.size(leaf)) for leaf in tree_leaves(y.theta))
    total = sum(squares)
    rms = math.sqrt(total / size)
    shares = sorted(
        ((name, square / total if total > 0 else 0.0) for name, square in zip(paths, squares)),
        key=lambda pair: -pair[1],
    )
    series_ratio = None
    if consts.right.shape[0] - 1 == 2:
        first = corrected_constants(opt, 1)
        one, two = (float(x) for x in _series_norms(grad_fn, first, consts, params, t, y))
        if not (math.isfinite(one) and math.isfinite(two)):
            series_ratio = math.nan  # a jet is not finite: no series to speak of
        else:
            series_ratio = two / one if one > 0 else (0.0 if two == 0 else math.inf)
    return StartValidity(
        step=float(t) / float(consts.lr),
        rms=rms,
        max=max(largest),
        fraction_above_one=sum(above) / size,
        predicted_gain=predicted_gain(rms),
        limiting_leaves=tuple(shares[:3]),
        series_ratio=series_ratio,
    )


def check_start(
    consts: CorrectedConstants,
    opt: KAdam,
    params: FlowParams,
    t: Any,
    y: FlowState,
    grad_fn: Callable[[PyTree], PyTree],
) -> tuple[StartValidity, str | None, str | None]:
    r"""Whether the corrected flow may begin at ``(t, y)`` (theory/corrected_validity.md §1):
    ``(report, not_everywhere, refusal)`` with ``report`` its `start_validity`.

    ``refusal`` (``None`` when it may start) says why not: the calibration predicts that
    the corrected flow loses to the leading one (`predicted_gain` < 1, i.e. rms above
    `rms_limit`) or, for order 2, its series diverges (``series_ratio`` ≥ 1 or nan: its
    field is not finite there). ``not_everywhere`` (``None`` where the expansion holds at
    every coordinate: each validity ≤ 1, and no refusal) says why ``start="auto"`` looks
    further."""
    report = start_validity(consts, opt, params, t, y, grad_fn)
    name = next(key for key, value in ORDERS.items() if value == consts.right.shape[0] - 1)
    leaves = ", ".join(f"{leaf} {share:.0%}" for leaf, share in report.limiting_leaves)
    where = (
        f"order={name!r} of {opt!r} at step {report.step:g}: its indicator "
        f"rms(lr*|dx/dt|/(sqrt(v_hat)+eps)) is {report.rms:.3g} (largest {report.max:.3g}, "
        f"{report.fraction_above_one:.1%} of coordinates above 1; limited by {leaves})"
    )
    reasons = []
    if not report.predicted_gain >= 1.0:
        reasons.append(
            f"the calibration predicts it {1 / report.predicted_gain:.2g}x farther from the "
            f"discrete steps than the leading flow (rms above {rms_limit():.3g})"
        )
    if report.series_ratio is not None and not report.series_ratio < 1.0:
        size = (
            f"{report.series_ratio:.3g}x the first"
            if math.isfinite(report.series_ratio)
            else "not finite"
        )
        reasons.append(f"its series in lr diverges there (the second correction is {size})")
    refusal = f"{where}: " + "; ".join(reasons) if reasons else None
    if refusal is None and report.max <= 1.0:
        return report, None, None
    not_everywhere = refusal or f"{where}: some coordinate changes by O(1) within a step"
    return report, not_everywhere, refusal
