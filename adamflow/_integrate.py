"""`integrate()`: the continuous-time flow of a spec, on diffrax or scipy."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from . import _corrected, _flows, _paper
from ._backends import SolveResult
from ._diagnose import explain_failure
from ._discrete import step_times
from ._flows import FlowModel
from ._gradients import prepare
from ._optimizers import KAdam
from ._rules import JAX_OPS, NUMPY_OPS
from ._trajectory import IntegrationError, PyTree, Trajectory, all_finite
from ._validate import check_choice, check_int, check_positive

CONVENTIONS = ("exact", "euler", "paper")
BACKENDS = ("auto", "diffrax", "scipy")

#: Flow models by ``order``: ``MODELS[order](opt, convention)`` returns the `FlowModel`, or
#: raises ``ValueError`` naming why it cannot integrate that spec.
MODELS: dict[str, Callable[[KAdam, str], FlowModel]] = {
    "leading": lambda opt, convention: _flows.LEADING,
    "corrected": functools.partial(_corrected.corrected_model, order=1),
    "corrected2": functools.partial(_corrected.corrected_model, order=2),
    "paper": _paper.paper_model,
}
ORDERS = tuple(MODELS)


def _step_clock(opt: KAdam, order: str, steps: float | None) -> KAdam:
    """The spec in step units (lr = 1) for a flow with an lr schedule, which is integrated in
    the step count s: ``dθ/ds = -η(s)(u + λθ)``, moments at ``ln(1/β)`` per step."""
    if order != "leading":
        raise ValueError(
            f"order={order!r} needs a constant lr; a spec with an lr schedule is integrated "
            "at order='leading'"
        )
    if steps is None:
        raise ValueError("with an lr schedule give steps= (t1 = Σ η_i is not a horizon here)")
    return opt.replace(lr=1.0)


def _horizon(opt: KAdam, steps: float | None, t1: float | None) -> float:
    if (steps is None) == (t1 is None):
        raise ValueError("give exactly one of steps= (number of lr-steps) or t1= (end time)")
    if steps is not None:
        return check_positive("steps", steps) * opt.lr
    return check_positive("t1", t1)


def _save_times(opt: KAdam, t_end: float, save_steps: Any) -> np.ndarray:
    if save_steps is None:
        grid = np.arange(int(math.floor(t_end / opt.lr + 1e-9)) + 1) * opt.lr
        return grid if math.isclose(grid[-1], t_end) else np.append(grid, t_end)
    saved = np.asarray(save_steps, dtype=float).reshape(-1)
    if saved.size == 0:
        raise ValueError("save_steps must not be empty")
    if not np.all(np.isfinite(saved)) or np.any(np.diff(saved) < 0):
        raise ValueError("save_steps must be finite and non-decreasing")
    ts = saved * opt.lr
    if ts[0] < 0 or ts[-1] > t_end * (1 + 1e-12):
        raise ValueError(f"save_steps must lie in [0, {t_end / opt.lr:g}] (the integrated steps)")
    return np.minimum(ts, t_end)


def _pick_backend(backend: str, solver: Any, traceable: bool) -> str:
    from ._backends.scipy import METHODS

    if backend == "auto":
        named_scipy = isinstance(solver, str) and solver.lower() in {m.lower() for m in METHODS}
        return "scipy" if (named_scipy or not traceable) else "diffrax"
    if backend == "diffrax" and not traceable:
        raise ValueError(
            "backend='diffrax' needs a JAX-traceable loss/grad; this one is not "
            "(use backend='scipy' for NumPy callables)"
        )
    return backend


class PrecisionWarning(UserWarning):
    """A requested tolerance finer than the float dtype in use can reach."""


#: The finest ``rtol`` a float32 run can honour (about ten units in the last place).
FLOAT32_RTOL = 10 * float(np.finfo(np.float32).eps)


def _tolerance(rtol: float | None) -> float:
    """``rtol`` checked, or its default for the float dtype in use (1e-7 in float64, 1e-5 in
    float32); a float32 run asked for less than `FLOAT32_RTOL` warns."""
    float32 = jax.numpy.result_type(float) == np.float32
    if rtol is None:
        return 1e-5 if float32 else 1e-7
    rtol = check_positive("rtol", rtol)
    if float32 and rtol < FLOAT32_RTOL:
        warnings.warn(
            f"rtol={rtol:g} is below what float32 can resolve (~{FLOAT32_RTOL:.1e}); this run "
            "is float32 because jax_enable_x64 is off: enable it with "
            "jax.config.update('jax_enable_x64', True) before creating arrays",
            PrecisionWarning,
            stacklevel=3,
        )
    return rtol


def check_options(**options: Any) -> dict[str, Any]:
    """Check keyword options meant for `integrate` before anything runs (used by `compare`
    and the convergence helpers, which call `integrate` once per learning rate): an unknown
    name is a ``TypeError`` and a bad ``order``/``convention``/``backend``/tolerance a
    ``ValueError``, each naming the parameter. Returns the options unchanged."""
    import inspect

    accepted = inspect.signature(integrate).parameters
    own = {"opt", "loss", "theta0", "grad", "steps", "t1", "save_steps"}
    for name in options:
        if name not in accepted or name in own:
            allowed = sorted(n for n in accepted if n not in own)
            raise TypeError(f"unknown integrate option {name!r}; options: {allowed}")
    names = ("order", "convention", "backend", "atol", "max_steps")
    _checked_choices_and_limits(**{n: options.get(n, accepted[n].default) for n in names})
    if options.get("rtol") is not None:
        check_positive("rtol", options["rtol"])
    return options


def _checked_choices_and_limits(
    order: Any, convention: Any, backend: Any, atol: Any, max_steps: Any
) -> tuple[str, str, str, float, int]:
    """The checks of `integrate`'s order, convention, backend, atol and max_steps, in one
    place for `integrate` and `check_options`."""
    return (
        check_choice("order", order, ORDERS),
        check_choice("convention", convention, CONVENTIONS),
        check_choice("backend", backend, BACKENDS),
        check_positive("atol", atol, allow_zero=True),
        check_int("max_steps", max_steps, 1),
    )


def integrate(
    opt: KAdam,
    loss: Callable[[PyTree], Any] | None,
    theta0: PyTree,
    *,
    grad: Callable[[PyTree], PyTree] | None = None,
    steps: float | None = None,
    t1: float | None = None,
    order: str = "leading",
    convention: str = "exact",
    backend: str = "auto",
    solver: Any = None,
    rtol: float | None = None,
    atol: float = 1e-10,
    save_steps: Any = None,
    max_steps: int = 200_000,
    throw: bool = True,
    progress: bool = False,
) -> Trajectory:
    r"""Integrate the continuous-time flow of ``opt`` from ``theta0`` (theory/adam.md §4,
    theory/kadam.md §2).

    Leading order, time :math:`t = n\eta`, rates :math:`a_i, b_i` from ``convention``
    (``"exact"``: :math:`a = \ln(1/\beta_1)/\eta`; ``"euler"``: :math:`a = (1-\beta_1)/\eta`)::

        dm_i/dt = a_i (u⁽ⁱ⁻¹⁾ - m_i),  dv_i/dt = b_i ((u⁽ⁱ⁻¹⁾)² - v_i),  u⁽⁰⁾ = ∇L(θ)
        dθ/dt   = -(u⁽ᵏ⁾ + λ θ),  u⁽ⁱ⁾ = m̂_i/(sqrt(v̂_i)+ε),  m̂_i = m_i/(1-e^{-a_i t})

    from :math:`m_i(0) = v_i(0) = 0` (the bias-corrected ratio takes its limit at t = 0).

    Parameters
    ----------
    opt : an `Adam`, `AdamW` or `KAdam` spec.
    loss : scalar function of the parameter PyTree (``None`` when ``grad`` is given).
    theta0 : initial parameters: any PyTree of real arrays (integers are taken as floats;
        complex, boolean and string leaves, and a list or tuple of plain numbers, raise
        ``TypeError``: a list is a PyTree node, so pass ``jnp.asarray`` for a vector).
    grad : gradient function replacing ``jax.grad(loss)``; a NumPy-only callable is
        allowed with the scipy backend.
    steps, t1 : horizon, as a number of lr-steps or as an end time (exactly one).
    order : ``"leading"``, ``"corrected"`` / ``"corrected2"`` (the corrected flows of order
        1 and 2, error O(lr²) / O(lr³), theory/corrected_flow.md §2; JAX gradients, k ≤ 2,
        exact rates; they begin after the first discrete step -- saved times before lr lie
        on its straight segment -- and raise `IntegrationError` where their ``validity``
        exceeds 1 at that start; see `adamflow._corrected`) or ``"paper"`` (the paper's
        second-order parameter equation θ̇ + (η/2)θ̈ = -(u + λθ), θ̇(0) = -(u(0) + λθ₀); see
        `adamflow._paper`).
    convention : moment rates: ``"exact"`` (default, a = ln(1/β₁)/η), ``"euler"``
        (a = (1-β₁)/η) or ``"paper"`` (the paper's backward rates a = (1-β₁)/(β₁η)).
        The paper's own model is ``order="paper", convention="paper"``.
    backend : ``"auto"`` (diffrax when the gradient is JAX-traceable), ``"diffrax"`` or
        ``"scipy"``.
    solver : diffrax: ``None`` (Tsit5), a name (``"tsit5"``, ``"dopri5"``, ``"dopri8"``,
        ``"kvaerno3"``, ``"kvaerno5"``) or a solver instance; scipy: a ``solve_ivp``
        method (default ``"RK45"``; ``"Radau"``, ``"BDF"``, ``"LSODA"`` get an exact
        Jacobian).
    rtol, atol : the adaptive step's tolerances. ``rtol`` defaults to 1e-7 in float64
        (``jax_enable_x64``) and to 1e-5 in float32, where a smaller one is out of reach
        and warns (`PrecisionWarning`) naming ``jax_enable_x64``. The defaults can sit
        above the corrected orders' model error: measure their O(lr²)/O(lr³) with rtol
        around 1e-12, in float64.
    save_steps : step numbers (``t/lr``, floats allowed) to save at; default every
        integer step from 0 and the end.

    max_steps : the most solver steps before giving up.
    throw : raise `IntegrationError` on failure along the path (default); else return
        ``success=False`` with the reason in ``message``. A refusal before any integration
        (a spec or start the order cannot handle) always raises.
    progress : show a progress bar.

    With an lr schedule (``opt.lr`` a function of the update count), the flow is integrated
    in the step count s (t = Σ_{i<n} η_i at step n; theory/adam.md §1 rates per step):
    ``dθ/ds = -η(s)(u⁽ᵏ⁾ + λθ)``, ``dm_i/ds = ln(1/β₁,ᵢ)(u⁽ⁱ⁻¹⁾ - m_i)``, likewise v_i,
    bias corrections ``1 - β^s``; ``order="leading"`` and ``steps=`` only. Its error against
    the discrete run is O(η) as the schedule is scaled down.
    """
    if not isinstance(opt, KAdam):
        raise TypeError(f"opt must be an adamflow spec (Adam, AdamW, KAdam), got {opt!r}")
    order, convention, backend, atol, max_steps = _checked_choices_and_limits(
        order, convention, backend, atol, max_steps
    )
    # The clock: time t = n·lr for a constant lr; with a schedule, the step count s itself
    # (a spec with lr = 1), and t = Σ η_i is reported in the Trajectory.
    clock = opt if opt.schedule is None else _step_clock(opt, order, steps)
    t_end = _horizon(clock, steps, t1)
    rtol = _tolerance(rtol)
    save_ts = _save_times(clock, t_end, save_steps)
    model = MODELS[order](clock, convention)  # may refuse specs it cannot integrate, with why
    if opt.schedule is not None:
        model = _flows.with_schedule(model, opt.schedule)
    gradient = prepare(loss, grad, theta0)  # finite theta0, grad of matching structure
    grad_fn, traceable = gradient.fn, gradient.traceable
    backend = _pick_backend(backend, solver, traceable)
    params = _flows.flow_params(clock, convention)

    if traceable:
        theta_start, xp = gradient.theta0, JAX_OPS
    else:  # a NumPy gradient: the scipy backend evaluates the field with NumPy
        theta_start = jax.tree_util.tree_map(np.asarray, gradient.theta0)
        params, xp = jax.tree_util.tree_map(np.asarray, params), NUMPY_OPS
    y0 = model.start(clock, params, theta_start, grad_fn, xp)
    t_start = model.start_time(clock)
    if t_end < t_start * (1 - 1e-12):
        raise ValueError(
            f"order={order!r} starts after the first discrete step (t = lr): it needs a "
            f"horizon of at least one step (steps >= 1 or t1 >= lr), got "
            f"{t_end / clock.lr:g} steps"
        )
    late = save_ts >= t_start * (1 - 1e-12)  # saved times the solver reaches
    if backend == "diffrax":
        from ._backends import diffrax as backend_mod

        backend_options: dict[str, Any] = {}
    else:
        from ._backends import scipy as backend_mod

        backend_options = {"numpy_grad": not traceable}
    if not late.any():  # every saved time lies before the model's start: nothing to solve
        nothing = lambda tree: jax.tree_util.tree_map(  # noqa: E731
            lambda x: np.zeros((0,) + np.shape(x)), tree
        )
        result = SolveResult(
            nothing(y0), nothing(model.theta(y0)), {"num_steps": 0, "grad_evals": 0}, True, "ok"
        )
    else:
        result = backend_mod.solve(
            model,
            grad_fn,
            params,
            y0,
            save_ts[late],
            t_end,
            t0=t_start,
            solver=solver,
            rtol=rtol,
            atol=atol,
            max_steps=int(max_steps),
            progress=progress,
            **backend_options,
        )

    ys, us = result.ys, result.us
    if not late.all():  # the model starts after a discrete step: saved times before it
        assert model.before_start is not None, "a model starting after t = 0 fills the gap"
        early = model.before_start(save_ts[~late], theta_start, y0, t_start)
        u_start = model.update(t_start, y0, params, grad_fn, xp)
        count = int((~late).sum())
        early_us = jax.tree_util.tree_map(
            lambda u: np.broadcast_to(np.asarray(u), (count,) + np.shape(u)), u_start
        )
        join = lambda a, b: np.concatenate([np.asarray(a), np.asarray(b)])  # noqa: E731
        ys = jax.tree_util.tree_map(join, early, ys)
        us = jax.tree_util.tree_map(join, early_us, us)
    success, message = result.success, result.message
    theta = model.theta(ys)
    if success and not all_finite(ys):
        success, message = False, "the flow's state became non-finite"
    if not success:
        cause = explain_failure(model, clock, params, grad_fn, xp, save_ts, ys, y0)
        advice = (
            "Try a larger max_steps, looser rtol/atol, or an implicit solver "
            "(solver='kvaerno5' on diffrax, 'Radau' on scipy)."
        )
        message = f"integrate({opt!r}, order={order!r}, backend={backend!r}) failed: " + (
            f"{cause} (the solver said: {message.rstrip('.')})."
            if cause
            else f"{message.rstrip('.')}. {advice}"
        )
        if throw:
            raise IntegrationError(message)
    m, v = model.moments(save_ts, ys, params, grad_fn, xp)
    validity = model.validity(clock, params, save_ts, ys, grad_fn)
    if success and validity is not None and validity > 1:  # a valid start, then left it
        message = (
            f"ok, but validity {validity:.3g} > 1 along the path: some coordinate changes by "
            "O(1) within a step there, where no expansion in lr holds"
        )
    return Trajectory(
        # Constant lr: the integration times themselves (no lr round trip); schedule: Σ η_i.
        ts=save_ts if opt.schedule is None else step_times(opt, save_ts),
        steps=save_ts / clock.lr,
        theta=theta,
        m=m,
        v=v,
        u=us,
        stats=result.stats,
        success=success,
        message=message,
        kind="flow",
        order=order,
        convention=convention,
        backend=backend,
        validity=validity,
    )
