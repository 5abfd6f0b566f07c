"""Continuous-time vector fields of the k-Adam cascade, leading order (theory/adam.md §4,
theory/kadam.md §2), and the `FlowModel` interface every order implements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from . import rules
from ._optimizers import KAdam
from ._trajectory import PyTree, TrainingState

tree_map = jax.tree_util.tree_map


class FlowState(NamedTuple):
    """State of the flow: parameters and raw moments ``m_i, v_i`` per level."""

    theta: PyTree
    m: tuple[PyTree, ...]
    v: tuple[PyTree, ...]


class FlowModel(NamedTuple):
    """How one flow (an ``order`` of `adamflow.integrate`) is integrated; the backends and
    `integrate` read only these hooks, so a new order needs no branch anywhere.

    ``start(opt, params, theta0, grad_fn, xp)`` the state at ``t = 0`` (it may need the
    gradient); ``field(t, y, params, grad_fn, xp)`` the time derivative of ``y``;
    ``update(t, y, params, grad_fn, xp)`` the update ``u⁽ᵏ⁾`` applied there; ``theta(y)``
    the parameters; ``moments(ts, ys, params, grad_fn, xp)`` the raw moments ``(m_i, v_i)``
    per level at the saved times; ``validity(opt, params, ts, ys, grad_fn)`` a diagnostic of where
    the model's expansion holds and a warning where it stops holding along the path (``(None,
    None)`` for flows that have none); ``start_time(opt)``
    the time at which ``start``'s state holds (0 unless the model begins after a discrete
    step) and ``before_start(ts, theta0, y_start, t_start)`` the states saved before it;
    ``resume(opt, params, state, t, grad_fn, xp)`` the state at time ``t`` from a discrete
    `TrainingState`; ``check_start(opt, params, t, y, grad_fn)`` whether the model may
    begin at ``(t, y)`` (``None`` for models that always may; the corrected flows:
    `adamflow._corrected.check_start`).
    Hooks are module-level functions (or `jax.tree_util.Partial`), so a jitted solve is not
    recompiled per call.
    ``xp`` is an `adamflow.rules` namespace (JAX, or NumPy for NumPy gradients).
    """

    start: Callable[..., Any]
    field: Callable[..., Any]
    update: Callable[..., PyTree]
    theta: Callable[[Any], PyTree]
    moments: Callable[..., tuple[tuple[PyTree, ...], tuple[PyTree, ...]]]
    validity: Callable[..., tuple[float | None, str | None]]
    resume: Callable[..., Any]
    start_time: Callable[[KAdam], float] = lambda opt: 0.0  # noqa: E731 (a constant hook)
    before_start: Callable[..., Any] | None = None
    check_start: Callable[..., Any] = lambda *args: None  # noqa: E731 (no check)


class FlowParams(NamedTuple):
    """What the field reads off a spec: rates ``a_i, b_i`` per level (``inf`` = no memory),
    ε and λ. Derived from the spec by `flow_params`, never built by hand."""

    a: Any  # shape (k,)
    b: Any  # shape (k,)
    eps: Any
    weight_decay: Any


def flow_params(opt: KAdam, convention: str = "exact") -> FlowParams:
    r"""Rates of the spec's flow (theory/adam.md §1): :math:`a_i = \ln(1/\beta_{1,i})/\eta`
    (``"exact"``) or :math:`(1-\beta_{1,i})/\eta` (``"euler"``), likewise :math:`b_i` from
    :math:`\beta_{2,i}`. Works on a traced or vmapped spec (the sweep's continuous mode)."""
    a = jnp.stack([rules.moment_rate(jnp.asarray(b1), opt.lr, convention) for b1 in opt.b1s])
    b = jnp.stack([rules.moment_rate(jnp.asarray(b2), opt.lr, convention) for b2 in opt.b2s])
    return FlowParams(a, b, opt.eps, opt.weight_decay)


def initial_state(k: int, theta0: PyTree, zeros_like: Callable[[Any], Any]) -> FlowState:
    """``θ(0) = θ0`` and ``m_i(0) = v_i(0) = 0``."""
    zeros = tree_map(zeros_like, theta0)
    return FlowState(theta0, (zeros,) * k, (zeros,) * k)


def flow_moments_from(
    opt: KAdam, params: FlowParams, state: TrainingState, t: Any, xp: Any
) -> tuple[tuple[PyTree, ...], tuple[PyTree, ...]]:
    r"""The flow's raw moments at time ``t`` that hold the discrete state's bias-corrected
    moments (theory/adam.md §4): :math:`m = \hat m\,(1 - e^{-a t})` with
    :math:`\hat m = m_K/(1-\beta_1^K)` after K steps, likewise v. Under the exact
    convention (:math:`a t = K\ln(1/\beta_1)`) these are the discrete raw moments."""

    def convert(moments: tuple[PyTree, ...], factors: Any, rates: Any) -> tuple[PyTree, ...]:
        out = []
        for moment, factor, rate in zip(moments, factors, rates):
            with np.errstate(divide="ignore"):  # β = 0: ln(1/β) = inf, a divisor of 1
                per_step = rules.decay_per_step(float(factor), rules.NUMPY_OPS)
            discrete = float(rules.bias_correction(state.step * per_step, rules.NUMPY_OPS))
            flow = rules.bias_correction(rate * t, xp)
            out.append(tree_map(lambda x: x * (flow / discrete), moment))
        return tuple(out)

    return convert(state.m, opt.b1s, params.a), convert(state.v, opt.b2s, params.b)


def resumed_state(
    opt: KAdam,
    params: FlowParams,
    state: TrainingState,
    t: Any,
    grad_fn: Callable[[PyTree], PyTree],
    xp: Any,
) -> FlowState:
    """The leading flow's state at time ``t`` from a discrete state (`flow_moments_from`)."""
    m, v = flow_moments_from(opt, params, state, t, xp)
    return FlowState(state.theta, m, v)


def _leading_start(
    opt: KAdam, params: FlowParams, theta0: PyTree, grad_fn: Callable[[PyTree], PyTree], xp: Any
) -> FlowState:
    return initial_state(opt.k, theta0, xp.zeros_like)


def no_validity(*args: Any) -> tuple[None, None]:
    """The ``validity`` hook of flows without a validity diagnostic."""
    return None, None


def state_theta(y: Any) -> PyTree:
    """The parameters of a flow state (any state with a ``theta`` field)."""
    return y.theta


def _bias_corrected(moment: Any, drive: Any, rate: Any, t: Any, xp: Any) -> Any:
    r""":math:`\hat m = m / (1 - e^{-a t})`, with its limits: the drive at :math:`t = 0`
    (where :math:`m \approx a t\,g`) and when :math:`a = \infty` (no memory)."""
    finite = xp.isfinite(rate)
    use_ratio = finite & (t > 0)
    # Double `where` keeps 0/0 out of both the value and its derivatives.
    divisor = xp.where(use_ratio, rules.bias_correction(xp.where(finite, rate, 0.0) * t, xp), 1.0)
    return xp.where(use_ratio, moment / divisor, drive)


def level_inputs(
    t: Any, state: FlowState, grad: PyTree, params: FlowParams, xp: Any = rules.JAX_OPS
) -> tuple[list[PyTree], PyTree]:
    r"""The input of every level, :math:`u^{(0)} = g, u^{(1)}, \dots, u^{(k-1)}`, and the
    top-level update :math:`u^{(k)}`, with :math:`u^{(i)} = \hat m_i/(\sqrt{\hat v_i} +
    \varepsilon)` read off the state."""
    inputs, drive = [], grad
    for i in range(len(state.m)):
        inputs.append(drive)
        a, b = params.a[i], params.b[i]
        drive = tree_map(
            lambda m, v, x: rules.normalized_update(
                _bias_corrected(m, x, a, t, xp),
                _bias_corrected(v, x * x, b, t, xp),
                params.eps,
                xp,
            ),
            state.m[i],
            state.v[i],
            drive,
        )
    return inputs, drive


def cascade_rates(
    t: Any, state: FlowState, grad: PyTree, params: FlowParams, xp: Any = rules.JAX_OPS
) -> tuple[PyTree, tuple[PyTree, ...], tuple[PyTree, ...]]:
    r"""Moment rates of every level and the top-level update :math:`u^{(k)}(t)`.

    With :math:`u^{(0)} = g`: :math:`\dot m_i = a_i (u^{(i-1)} - m_i)`,
    :math:`\dot v_i = b_i ((u^{(i-1)})^2 - v_i)`,
    :math:`u^{(i)} = \hat m_i/(\sqrt{\hat v_i} + \varepsilon)`. A level with
    :math:`a_i = \infty` has :math:`\hat m_i = u^{(i-1)}` and a frozen state.
    """
    inputs, update = level_inputs(t, state, grad, params, xp)
    dms, dvs = [], []
    for i, drive in enumerate(inputs):
        a_finite = xp.where(xp.isfinite(params.a[i]), params.a[i], 0.0)
        b_finite = xp.where(xp.isfinite(params.b[i]), params.b[i], 0.0)
        dms.append(tree_map(lambda m, x: rules.ema_increment(m, x, a_finite), state.m[i], drive))
        dvs.append(
            tree_map(lambda v, x: rules.ema_increment(v, x * x, b_finite), state.v[i], drive)
        )
    return update, tuple(dms), tuple(dvs)


def leading_field(
    t: Any,
    state: FlowState,
    params: FlowParams,
    grad_fn: Callable[[PyTree], PyTree],
    xp: Any = rules.JAX_OPS,
) -> FlowState:
    r"""Leading-order k-Adam flow (theory/kadam.md §2):

    :math:`\dot\theta = -(u^{(k)} + \lambda\theta)`,
    :math:`\dot m_i = a_i(u^{(i-1)} - m_i)`, :math:`\dot v_i = b_i((u^{(i-1)})^2 - v_i)`,
    :math:`u^{(0)} = g(\theta)`.
    """
    update, dms, dvs = cascade_rates(t, state, grad_fn(state.theta), params, xp)
    dtheta = tree_map(
        lambda u, p: rules.parameter_velocity(u, p, params.weight_decay), update, state.theta
    )
    return FlowState(dtheta, dms, dvs)


def flow_update(
    t: Any,
    state: FlowState,
    params: FlowParams,
    grad_fn: Callable[[PyTree], PyTree],
    xp: Any = rules.JAX_OPS,
) -> PyTree:
    """The top-level update :math:`u^{(k)}(t)` the flow applies at ``state``."""
    return cascade_rates(t, state, grad_fn(state.theta), params, xp)[0]


def state_moments(
    t: Any, y: Any, params: FlowParams, grad_fn: Callable[[PyTree], PyTree], xp: Any
) -> Any:
    r"""The raw moments ``(m_i, v_i)`` at the saved times ``t`` of a flow whose state holds
    raw moments. A memoryless level (rate :math:`\infty`, β = 0) keeps no state: its moments
    are its input and the input's square at each saved point, :math:`m_i = u^{(i-1)}`,
    :math:`v_i = (u^{(i-1)})^2` for t > 0 (as the discrete recurrence gives for β = 0), and
    0 at t = 0 like every raw moment."""
    a, b = np.asarray(params.a, dtype=float), np.asarray(params.b, dtype=float)
    if np.isfinite(a).all() and np.isfinite(b).all():
        return y.m, y.v
    states = FlowState(y.theta, y.m, y.v)

    def inputs_at(time: Any, state: FlowState) -> list[PyTree]:
        return level_inputs(time, state, grad_fn(state.theta), params, xp)[0]

    ts = np.asarray(t, dtype=float)
    if xp is rules.JAX_OPS:
        inputs = jax.vmap(inputs_at)(jnp.asarray(ts), tree_map(jnp.asarray, states))
    else:  # a NumPy gradient: one saved point at a time
        per_point = [
            inputs_at(time, tree_map(lambda x, j=j: np.asarray(x)[j], states))
            for j, time in enumerate(ts)
        ]
        inputs = tree_map(lambda *xs: np.stack(xs), *per_point)
    started = ts > 0

    def after_start(x: Any) -> Any:
        x = np.asarray(x)
        return np.where(started.reshape((-1,) + (1,) * (x.ndim - 1)), x, 0.0)

    inputs = tree_map(after_start, inputs)
    m = tuple(y.m[i] if np.isfinite(a[i]) else inputs[i] for i in range(len(y.m)))
    v = tuple(
        y.v[i] if np.isfinite(b[i]) else tree_map(lambda x: x * x, inputs[i])
        for i in range(len(y.v))
    )
    return m, v


#: The leading-order flow (theory/adam.md §4), in raw (m, v) states.
LEADING = FlowModel(
    start=_leading_start,
    field=leading_field,
    update=flow_update,
    theta=state_theta,
    moments=state_moments,
    validity=no_validity,
    resume=resumed_state,
)


def _scheduled_field(
    schedule: Callable[[Any], Any],
    base_field: Callable[..., FlowState],
    s: Any,
    y: FlowState,
    params: FlowParams,
    grad_fn: Callable[[PyTree], PyTree],
    xp: Any,
) -> FlowState:
    rates = base_field(s, y, params, grad_fn, xp)
    lr = schedule(s)
    return rates._replace(theta=tree_map(lambda d: lr * d, rates.theta))


def with_schedule(model: FlowModel, schedule: Callable[[Any], Any]) -> FlowModel:
    r"""``model`` in step units with an lr schedule η(s) (its params built with lr = 1): the
    same moment rates per step, and :math:`d\theta/ds = \eta(s)\,d\theta/dt`
    (theory/adam.md §4 with :math:`dt = \eta(s)\,ds`)."""
    return model._replace(field=Partial(_scheduled_field, schedule, model.field))
