"""`integrate()`: the continuous-time flow of a spec, on diffrax or scipy."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _corrected, _eos_flow, _flows, _paper
from ._backends import SolveResult
from ._diagnose import explain_failure, explain_stall
from ._discrete import run_discrete, step_times
from ._flows import FlowModel
from ._gradients import prepare, starting_point
from ._optimizers import KAdam
from ._sharpness import check_sharpness_every, sharpness_along
from ._trajectory import IntegrationError, PyTree, TrainingState, Trajectory, all_finite
from .rules import JAX_OPS, NUMPY_OPS, bias_correction
from .validation import check_bool, check_choice, check_int, check_positive

CONVENTIONS = ("exact", "euler", "paper")
BACKENDS = ("auto", "diffrax", "scipy")

#: Flow models by ``order``: ``MODELS[order](opt, convention)`` returns the `FlowModel`, or
#: raises ``ValueError`` naming why it cannot integrate that spec.
MODELS: dict[str, Callable[[KAdam, str], FlowModel]] = {
    "leading": lambda opt, convention: _flows.LEADING,
    "corrected": functools.partial(_corrected.corrected_model, order=1),
    "corrected2": functools.partial(_corrected.corrected_model, order=2),
    "paper": _paper.paper_model,
    "eos": _eos_flow.eos_model,
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


def _save_times(opt: KAdam, t_end: float, save_steps: Any, first_step: int = 0) -> np.ndarray:
    """The saved times: ``save_steps·lr``, checked to lie in [first_step·lr, t_end]; by
    default every integer step from ``first_step`` and the end."""
    if save_steps is None:
        last = int(math.floor(t_end / opt.lr + 1e-9))
        grid = np.arange(first_step, last + 1) * opt.lr
        return grid if math.isclose(grid[-1], t_end) else np.append(grid, t_end)
    saved = np.asarray(save_steps, dtype=float).reshape(-1)
    if saved.size == 0:
        raise ValueError("save_steps must not be empty")
    if not np.all(np.isfinite(saved)) or np.any(np.diff(saved) < 0):
        raise ValueError("save_steps must be finite and non-decreasing")
    ts = saved * opt.lr
    if saved[0] < first_step or ts[-1] > t_end * (1 + 1e-12):
        raise ValueError(
            f"save_steps must lie in [{first_step}, {t_end / opt.lr:g}] (the integrated steps)"
        )
    return np.minimum(ts, t_end)


def _start_option(theta0: PyTree, start: Any, k: int) -> tuple[PyTree, TrainingState | None]:
    """``(theta0, state to resume from)`` from `integrate`'s ``theta0`` and ``start``
    (``None`` or ``"auto"``, the same; or a `TrainingState`; a step-0 state is its θ)."""
    if isinstance(start, str):
        if start != "auto":
            raise ValueError(f"start must be None, 'auto' or a TrainingState, got {start!r}")
        if theta0 is None:
            raise ValueError("start='auto' runs the optimizer from theta0: give theta0")
        return theta0, None
    theta0, state = starting_point(theta0, start, k)
    if state is not None and state.step == 0:
        return state.theta, None
    return theta0, state


#: ``start="auto"`` tries the steps 1..`AUTO_DENSE`, then steps a power of two apart, at
#: most 1/`AUTO_SPACING` of the step (a few block lengths: few compilations of the discrete
#: run, each a continuation of the last).
AUTO_DENSE = 8
AUTO_SPACING = 4


def _auto_candidates(last: int) -> list[int]:
    """The steps ``start="auto"`` tries, up to ``last`` (the last step before the horizon)."""
    steps, step = [], 1
    while step < last:
        steps.append(step)
        step += 1 if step < AUTO_DENSE else 1 << max(0, (step // AUTO_SPACING).bit_length() - 1)
    return steps + [last]


def _auto_start(
    opt: KAdam,
    model: FlowModel,
    params: Any,
    grad_fn: Callable[[PyTree], PyTree],
    theta0: PyTree,
    last: int,
    xp: Any,
    refuse: bool,
) -> tuple[TrainingState | None, Any, Any, str | None]:
    """Where a model that begins after the first discrete step starts from ``theta0``:
    ``(state, y, report, refusal)``, ``state`` ``None`` at step 1 (``model.start``'s own
    state), ``refusal`` the reason it was refused there (only when not ``refuse``).

    The first of `_auto_candidates` where its expansion holds at every coordinate
    (``model.check_start``); if none before the horizon, the first it does not refuse (the
    calibrated indicator predicts a gain over the leading flow); if none, `IntegrationError`
    with the refusal at step 1 (unless not ``refuse``: then step 1)."""
    y = model.start(opt, params, theta0, grad_fn, xp)
    verdict = model.check_start(opt, params, opt.lr, y, grad_fn)
    if verdict is None:  # a model that always may begin
        return None, y, None, None
    first = fallback = None
    state: TrainingState | None = None
    done = 1
    for step in _auto_candidates(last):
        if step > 1:
            if state is None:
                zeros = jax.tree_util.tree_map(jnp.zeros_like, theta0)
                state = TrainingState(theta0, (zeros,) * opt.k, (zeros,) * opt.k, 0)
                done = 0
            run = run_discrete(
                opt, None, None, step, grad=grad_fn, save_every=step - done, start=state
            )
            if not run.success:
                raise IntegrationError(f"start='auto': the discrete run failed: {run.message}")
            state, done = run.state_at(step), step
            y = model.resume(opt, params, state, step * opt.lr, grad_fn, xp)
            verdict = model.check_start(opt, params, step * opt.lr, y, grad_fn)
        report, not_everywhere, refusal = verdict
        if not_everywhere is None:
            return state, y, report, None
        if first is None:
            first = (state, y, report, refusal)
        if fallback is None and refusal is None:
            fallback = (state, y, report, None)
    if fallback is not None:
        return fallback
    assert first is not None
    if refuse:
        raise IntegrationError(
            f"no step before the horizon (tried 1..{last}) where the flow may start; at the "
            f"first, {first[3]}. Use order='leading', or allow_invalid_start=True to "
            "integrate it anyway."
        )
    return first


def _discrete_points(
    opt: KAdam, grad_fn: Callable[[PyTree], PyTree], theta0: PyTree, steps: np.ndarray
) -> tuple[PyTree, tuple[PyTree, ...], tuple[PyTree, ...], PyTree]:
    """θ, raw m and v per level, and u of the discrete run from ``theta0`` at the (possibly
    fractional) ``steps``: exact at integers, linear in between."""
    last = int(math.ceil(float(np.max(steps))))
    run = run_discrete(opt, None, theta0, max(last, 1), grad=grad_fn)
    below = np.floor(steps).astype(int)
    above = np.minimum(below + 1, max(last, 1))
    weight = steps - below

    def interpolate(x: Any) -> np.ndarray:
        x = np.asarray(x)
        w = weight.reshape((-1,) + (1,) * (x.ndim - 1))
        return (1 - w) * x[below] + w * x[above]

    pick = lambda tree: jax.tree_util.tree_map(interpolate, tree)  # noqa: E731
    return pick(run.theta), pick(run.m), pick(run.v), pick(run.u)


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
    """A requested tolerance finer than the float dtype in use can reach.

    `integrate` warns with it when ``rtol`` is below about ten float32 units in the last
    place while ``jax_enable_x64`` is off. A ``UserWarning``.

    Attributes
    ----------
    args : tuple
        ``(message,)``: the message says what to change.

    Raises
    ------
    Nothing: a warning category; `integrate` issues it with ``warnings.warn``.

    Examples
    --------
    >>> import warnings
    >>> import adamflow as af
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", af.PrecisionWarning)  # make it an error
    ...     try:
    ...         warnings.warn("rtol is below what float32 can resolve", af.PrecisionWarning)
    ...     except af.PrecisionWarning as caught:
    ...         print("caught:", caught)
    caught: rtol is below what float32 can resolve
    """


class ValidityWarning(UserWarning):
    """A corrected flow that started within its validity and left it along the path: the
    solve succeeded, but no expansion in lr describes the steps where ``validity > 1``.

    `integrate` warns with it (``Trajectory.validity`` holds the value). A ``UserWarning``.

    Attributes
    ----------
    args : tuple
        ``(message,)``: the message says what to change.

    Raises
    ------
    Nothing: a warning category; `integrate` issues it with ``warnings.warn``.

    Examples
    --------
    >>> import warnings
    >>> import adamflow as af
    >>> issubclass(af.ValidityWarning, UserWarning)
    True
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warnings.warn("validity 3.2 > 1 along the path", af.ValidityWarning)
    >>> caught[0].category is af.ValidityWarning
    True
    """


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
    if "eos_directions" in options:
        _eos_directions(options.get("order", "leading"), options["eos_directions"])
    return options


def _eos_directions(order: str, eos_directions: Any) -> int:
    """``eos_directions``: 1, 2 or 3, and only changed from its default for ``order="eos"``."""
    integral = isinstance(eos_directions, int | np.integer) and not isinstance(eos_directions, bool)
    if not integral or eos_directions not in (1, 2, 3):
        raise ValueError(f"eos_directions must be 1, 2 or 3, got {eos_directions!r}")
    directions = int(eos_directions)
    if order != "eos" and directions != _eos_flow.DIRECTIONS:
        raise ValueError(f"eos_directions applies to order='eos' only, not order={order!r}")
    return directions


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
    start: TrainingState | str | None = None,
    sharpness_every: int | None = None,
    allow_invalid_start: bool = False,
    eos_directions: int = _eos_flow.DIRECTIONS,
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
    opt : KAdam
        An `Adam`, `AdamW` or `KAdam` spec.
    loss : Callable[[PyTree], Any] | None
        Scalar function of the parameter PyTree (``None`` when ``grad`` is given).
    theta0 : PyTree
        Initial parameters: any PyTree of real arrays (integers are taken as floats;
        complex, boolean and string leaves, and a list or tuple of plain numbers, raise
        ``TypeError``: a list is a PyTree node, so pass ``jnp.asarray`` for a vector).
    grad : Callable[[PyTree], PyTree] | None, optional
        Gradient function replacing ``jax.grad(loss)``; a NumPy-only callable is
        allowed with the scipy backend.
    steps : float | None, optional
        Horizon as a number of lr-steps (give exactly one of ``steps`` and ``t1``).
    t1 : float | None, optional
        Horizon as an end time.
    order : str, optional
        ``"leading"``, ``"corrected"`` / ``"corrected2"`` (the corrected flows of order
        1 and 2, error O(lr²) / O(lr³), theory/corrected_flow.md §2; JAX gradients, k ≤ 2,
        exact rates; they begin after the first discrete step -- saved times before lr lie
        on its straight segment -- and are refused where the calibrated indicator
        (`StartValidity`) predicts them farther from the discrete steps than the leading
        flow, theory/corrected_validity.md; see `adamflow._corrected`) or ``"paper"`` (the paper's
        second-order parameter equation θ̇ + (η/2)θ̈ = -(u + λθ), θ̇(0) = -(u(0) + λθ₀); see
        `adamflow._paper`) or ``"eos"`` (Adam/AdamW through the edge of stability: the
        time-averaged iterate, whose oscillation along the top two preconditioned
        eigenvectors feeds back on the mean motion and on v, so that λ_max(P⁻¹H) is held
        at `adamflow.eos_threshold`; the leading flow below the edge; theory/eos.md §5).
    convention : str, optional
        Moment rates: ``"exact"`` (default, a = ln(1/β₁)/η), ``"euler"``
        (a = (1-β₁)/η) or ``"paper"`` (the paper's backward rates a = (1-β₁)/(β₁η)).
        The paper's own model is ``order="paper", convention="paper"``.
    backend : str, optional
        ``"auto"`` (diffrax when the gradient is JAX-traceable), ``"diffrax"`` or
        ``"scipy"``.
    solver : Any, optional
        Diffrax: ``None`` (Tsit5), a name (``"tsit5"``, ``"dopri5"``, ``"dopri8"``,
        ``"kvaerno3"``, ``"kvaerno5"``) or a solver instance; scipy: a ``solve_ivp``
        method (default ``"RK45"``; ``"Radau"``, ``"BDF"``, ``"LSODA"`` get an exact
        Jacobian).
    rtol : float | None, optional
        The adaptive step's relative tolerance. It defaults to 1e-7 in float64
        (``jax_enable_x64``) and to 1e-5 in float32, where a smaller one is out of reach
        and warns (`PrecisionWarning`) naming ``jax_enable_x64``. The defaults can sit
        above the corrected orders' model error: measure their O(lr²)/O(lr³) with rtol
        around 1e-12, in float64.
    atol : float, optional
        The adaptive step's absolute tolerance, >= 0.
    save_steps : Any, optional
        Step numbers (``t/lr``, floats allowed) to save at; default every
        integer step from 0 and the end.
    max_steps : int, optional
        The most solver steps before giving up. A diffrax solve that uses them all says
        which step it passed, its solver steps per discrete step and, for Adam and AdamW, its
        preconditioned sharpness there against `eos_threshold` (a leading-order flow past
        the edge of stability sharpens on and grows stiff, theory/eos.md §5).
    throw : bool, optional
        Raise `IntegrationError` on failure along the path (default; the error's
        ``trajectory`` is the path up to the failure); else return ``success=False`` with
        the reason in ``message``. A refusal before any integration
        (a spec or start the order cannot handle) always raises. A corrected flow that
        succeeds but leaves its regime along the path (its indicator above the refusal's
        limit at a saved point) warns (`ValidityWarning`).
    progress : bool, optional
        Show a progress bar.
    start : TrainingState | str | None, optional
        Where the flow begins. ``None``: at ``theta0`` with zero moments (the corrected
        orders: as ``"auto"``). A `TrainingState` after K steps (from
        ``run_discrete(...).state_at(K)``; ``theta0`` is then ``None``): the flow covers
        [Kη, ``steps``·η] (``steps`` and ``t1`` keep their meaning, so its saved steps line
        up with the discrete run's) and begins from that state's bias-corrected moments --
        raw moments :math:`\hat m(1-e^{-at})` for the leading and paper orders (the
        paper's velocity θ̇ = -(u + λθ) there), :math:`\hat m` itself for the corrected
        ones, which refuse (`IntegrationError`) where the calibrated indicator predicts them
        to lose to the leading flow (or corrected2's series diverges) there.
        ``"auto"``: the corrected orders begin after the first discrete step if every
        coordinate's validity is at most 1 there; else they run the discrete optimizer on
        to the first step (1, 2, ..., 8, then steps a power of two apart, at most a quarter
        of the step) where it is, or, if none before the horizon, begin at the first step
        they are not refused (refusing if none); saved points before it are the discrete
        steps (linear in between). Other orders start at ``theta0``. The `Trajectory`
        records the step in ``start_step`` and the indicator there in ``start_validity``.
    sharpness_every : int | None, optional
        Measure the preconditioned sharpness :math:`\lambda_{\max}(P^{-1}H)`,
        :math:`P = \sqrt{\hat v} + \varepsilon` with the flow's own
        :math:`\hat v = v/(1 - e^{-bt})`, at the saved steps that are multiples of it, into
        ``Trajectory.sharpness`` (Adam/AdamW and a JAX gradient; theory/eos.md §1).
    allow_invalid_start : bool, optional
        Integrate a corrected order from a start it would refuse (the refusal's numbers are
        kept in ``Trajectory.start_validity``, and a `ValidityWarning` says it); default
        ``False``.
    eos_directions : int, optional
        ``order="eos"`` only: how many of the top eigenvectors of
        :math:`P^{-1/2}HP^{-1/2}` the flow tracks and holds at the edge (1, 2 or 3; default
        2). Each costs two gradients per field evaluation (theory/eos.md §5).

    Returns
    -------
    Trajectory
        ``kind="flow"``, saved at ``save_steps``: parameters, raw moments per level and
        the update ``u(t)``, with ``order``, ``convention``, ``backend``, ``validity``
        (corrected orders), ``start_step``, ``start_validity`` (corrected orders: the
        `StartValidity` where the flow began) and the solver's ``stats``.

    Raises
    ------
    TypeError
        If ``opt`` is not a spec; ``grad`` is given but not callable, or neither is and
        ``loss`` is not callable; ``theta0`` is a list or tuple of plain numbers or has a
        complex, boolean or string leaf; ``start`` is neither ``None``, ``"auto"`` nor a
        `TrainingState`; ``solver`` is neither ``None``, a name nor a diffrax solver
        (diffrax); ``order`` is ``"corrected"``, ``"corrected2"`` or ``"eos"`` with a
        NumPy-only gradient.
    ValueError
        If ``order``, ``convention`` or ``backend`` is not one of its choices, ``atol`` is
        negative, ``max_steps`` is not an integer >= 1 or ``rtol`` is not > 0; both or
        neither of ``steps`` and ``t1`` are given, or the one given is not finite and > 0;
        the horizon does not reach beyond the start's step (or, for the corrected orders,
        one step); ``save_steps`` is empty, not finite, decreasing or outside the
        integrated steps; the order refuses the spec (``"corrected"``/``"corrected2"``
        need ``convention="exact"``, k ≤ 2 and every factor in (0, 1); ``"eos"`` needs
        Adam/AdamW with a constant lr and factors in (0, 1); an lr schedule needs
        ``order="leading"`` and ``steps=``); ``start`` is another string than ``"auto"``,
        ``"auto"`` without ``theta0``, a state given together with ``theta0``, or a
        malformed state; ``theta0`` is empty or not finite; the gradient's output differs
        from ``theta0`` in structure or shapes; ``backend="diffrax"`` with a NumPy-only
        gradient; ``solver`` names no solver of the backend; ``sharpness_every`` is not
        an integer >= 1, or is given for k ≥ 2 or a NumPy-only gradient;
        ``eos_directions`` is not 1, 2 or 3, or is changed for another order than ``"eos"``.
    IntegrationError
        With ``throw=True`` (default), if the solver fails or the state becomes
        non-finite (its ``trajectory`` holds the path up to there, as ``throw=False``
        returns it); always (unless ``allow_invalid_start``), if a corrected order is refused
        at ``start`` or at every step ``start="auto"`` tries before the horizon (the
        message names the indicator, the leaves that limit it and the fraction of
        coordinates above 1), or the discrete run of ``start="auto"`` fails.

    Warns
    -----
    PrecisionWarning
        If ``rtol`` is below what float32 resolves while ``jax_enable_x64`` is off.
    ValidityWarning
        If a corrected flow succeeds but its indicator (the root mean square over the
        coordinates of η|ẋᵢ|/(√v̂ᵢ+ε)) passes the refusal's limit at a saved point.

    Notes
    -----
    Compilation: ``steps``/``t1``, ``save_steps`` (up to the next power of two of saved
    points), ``start``, ``lr``, ``b1``, ``b2``, ``eps``, ``weight_decay``, ``rtol`` and
    ``atol`` reach the solver as traced values, so a new one reuses the compiled solve (on a
    97-parameter MLP a second call took 0.3–6% of the first for every order, measured by
    ``scripts/bench.py --only recompile``). A new ``loss``/``grad`` function object,
    parameter shapes, ``k``, ``order``, ``convention``, ``solver``, ``max_steps``,
    ``progress``, a lr schedule, or more saved points than the compiled bucket holds compile
    again.

    With an lr schedule (``opt.lr`` a function of the update count), the flow is integrated
    in the step count s (t = Σ_{i<n} η_i at step n; theory/adam.md §1 rates per step):
    ``dθ/ds = -η(s)(u⁽ᵏ⁾ + λθ)``, ``dm_i/ds = ln(1/β₁,ᵢ)(u⁽ⁱ⁻¹⁾ - m_i)``, likewise v_i,
    bias corrections ``1 - β^s``; ``order="leading"`` and ``steps=`` only. Its error against
    the discrete run is O(η) as the schedule is scaled down.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import adamflow as af
    >>> loss = lambda theta: 0.5 * jnp.sum(theta**2)
    >>> flow = af.integrate(af.Adam(0.1), loss, jnp.array([1.0, -2.0]), steps=10)
    >>> flow.kind, flow.order, flow.success, flow.steps.tolist()[-3:]
    ('flow', 'leading', True, [8.0, 9.0, 10.0])
    >>> [round(float(x), 3) for x in flow.final]  # the discrete run: [0.0762, -1.0246]
    [0.072, -1.022]
    """
    if not isinstance(opt, KAdam):
        raise TypeError(f"opt must be an adamflow spec (Adam, AdamW, KAdam), got {opt!r}")
    order, convention, backend, atol, max_steps = _checked_choices_and_limits(
        order, convention, backend, atol, max_steps
    )
    allow_invalid_start = check_bool("allow_invalid_start", allow_invalid_start)
    # The clock: time t = n·lr for a constant lr; with a schedule, the step count s itself
    # (a spec with lr = 1), and t = Σ η_i is reported in the Trajectory.
    clock = opt if opt.schedule is None else _step_clock(opt, order, steps)
    t_end = _horizon(clock, steps, t1)
    rtol = _tolerance(rtol)
    theta0, resume_from = _start_option(theta0, start, opt.k)
    first_step = 0 if resume_from is None else resume_from.step
    if t_end <= first_step * clock.lr * (1 + 1e-12):
        raise ValueError(
            f"the flow starts at step {first_step}: it needs a horizon beyond it, got "
            f"{t_end / clock.lr:g} steps"
        )
    save_ts = _save_times(clock, t_end, save_steps, first_step)
    eos_directions = _eos_directions(order, eos_directions)
    if order == "eos":
        model = _eos_flow.eos_model(clock, convention, directions=eos_directions)
    else:  # may refuse specs it cannot integrate, with why
        model = MODELS[order](clock, convention)
    if opt.schedule is not None:
        model = _flows.with_schedule(model, opt.schedule)
    gradient = prepare(loss, grad, theta0)  # finite theta0, grad of matching structure
    grad_fn, traceable = gradient.fn, gradient.traceable
    backend = _pick_backend(backend, solver, traceable)
    sharpness_every = check_sharpness_every(opt, sharpness_every, traceable)
    params = _flows.flow_params(clock, convention)

    if traceable:
        theta_start, xp = gradient.theta0, JAX_OPS
    else:  # a NumPy gradient: the scipy backend evaluates the field with NumPy
        theta_start = jax.tree_util.tree_map(np.asarray, gradient.theta0)
        params, xp = jax.tree_util.tree_map(np.asarray, params), NUMPY_OPS
        if resume_from is not None:
            resume_from = jax.tree_util.tree_map(np.asarray, resume_from)
    start_report, refusal = None, None
    if resume_from is None and model.start_time(clock) > 0:  # from theta0: None or "auto"
        last = math.ceil(t_end / clock.lr - 1e-9) - 1
        resume_from, y0, start_report, refusal = _auto_start(
            clock, model, params, grad_fn, theta_start, max(last, 1), xp, not allow_invalid_start
        )
        t_start = model.start_time(clock) if resume_from is None else resume_from.step * clock.lr
    elif resume_from is not None:
        t_start = resume_from.step * clock.lr
        y0 = model.resume(clock, params, resume_from, t_start, grad_fn, xp)
        verdict = model.check_start(clock, params, t_start, y0, grad_fn)
        if verdict is not None:
            start_report, _, refusal = verdict
            if refusal is not None and not allow_invalid_start:
                raise IntegrationError(
                    f"{refusal}. Use start='auto' (it looks for a later start), "
                    "order='leading', or allow_invalid_start=True to integrate it anyway."
                )
    else:
        y0 = model.start(clock, params, theta_start, grad_fn, xp)
        t_start = model.start_time(clock)
    if refusal is not None:  # allow_invalid_start: integrated, and said so
        warnings.warn(
            f"integrate({opt!r}, order={order!r}) begins where it would be refused "
            f"(allow_invalid_start=True): {refusal}",
            ValidityWarning,
            stacklevel=2,
        )
    start_step = t_start / clock.lr
    if t_end < t_start * (1 - 1e-12):
        raise ValueError(
            f"order={order!r} starts after the first discrete step (t = lr): it needs a "
            f"horizon of at least one step (steps >= 1 or t1 >= lr), got "
            f"{t_end / clock.lr:g} steps"
            if resume_from is None
            else f"start='auto' found step {start_step:g} after the horizon"
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

    ys, us, ts_late = result.ys, result.us, save_ts[late]
    success, message = result.success, result.message
    if success and not all_finite(ys):
        success, message = False, "the flow's state became non-finite"
    if not success:
        cause = explain_failure(model, clock, params, grad_fn, xp, ts_late, ys, y0)
        # scipy counts no solver steps (None): only diffrax's step limit is explained.
        if cause is None and (result.stats.get("num_steps") or 0) >= max_steps:
            cause = explain_stall(
                model,
                clock,
                params,
                grad_fn,
                xp,
                ts_late,
                ys,
                result.stats["num_steps"],
                int(max_steps),
                t_start,
                holds_the_edge=order == "eos",
            )
        advice = (
            "Try a larger max_steps, looser rtol/atol, or an implicit solver "
            "(solver='kvaerno5' on diffrax, 'Radau' on scipy)."
        )
        message = f"integrate({opt!r}, order={order!r}, backend={backend!r}) failed: " + (
            f"{cause} (the solver said: {message.rstrip('.')})."
            if cause
            else f"{message.rstrip('.')}. {advice}"
        )
    theta = model.theta(ys)
    m, v = model.moments(ts_late, ys, params, grad_fn, xp)
    validity, left = model.validity(clock, params, ts_late, ys, grad_fn)
    if success and left is not None:  # a start it may take, then left its regime
        # A warning, not a message that contradicts success=True: the solve succeeded, the
        # model's expansion did not hold everywhere along it.
        warnings.warn(
            f"integrate({opt!r}, order={order!r}): {left} (Trajectory.validity, .start_validity)",
            ValidityWarning,
            stacklevel=2,
        )
    if not late.all():  # saved times before the flow's start
        early_ts = save_ts[~late]
        if resume_from is not None:  # start='auto': the discrete steps themselves
            early = _discrete_points(clock, grad_fn, theta_start, early_ts / clock.lr)
        else:  # the model's own account of the steps before it starts
            assert model.before_start is not None, "a model starting after t = 0 fills the gap"
            early_ys = model.before_start(early_ts, theta_start, y0, t_start)
            u_start = model.update(t_start, y0, params, grad_fn, xp)
            early_us = jax.tree_util.tree_map(
                lambda u: np.broadcast_to(np.asarray(u), (len(early_ts),) + np.shape(u)),
                u_start,
            )
            early_m, early_v = model.moments(early_ts, early_ys, params, grad_fn, xp)
            early = (model.theta(early_ys), early_m, early_v, early_us)
        join = lambda a, b: np.concatenate([np.asarray(a), np.asarray(b)])  # noqa: E731
        theta, m, v, us = jax.tree_util.tree_map(join, early, (theta, m, v, us))
    sharpness = None
    if sharpness_every is not None:
        rate = float(np.asarray(params.b)[0])
        divisor = bias_correction(rate * save_ts, NUMPY_OPS)
        sharpness = sharpness_along(
            opt, grad_fn, save_ts / clock.lr, theta, v[0], divisor, sharpness_every, progress
        )
    trajectory = Trajectory(
        # Constant lr: the integration times themselves (no lr round trip); schedule: Σ η_i.
        ts=save_ts if opt.schedule is None else step_times(opt, save_ts),
        steps=save_ts / clock.lr,
        theta=theta,
        m=m,
        v=v,
        u=us,
        stats=_gradient_counts(result.stats, order, eos_directions),
        success=success,
        message=message,
        kind="flow",
        order=order,
        convention=convention,
        backend=backend,
        validity=validity,
        start_step=start_step,
        sharpness=sharpness,
        start_validity=start_report,
    )
    if throw and not success:  # the path up to the failure goes with the error
        raise IntegrationError(message, trajectory)
    return trajectory


def _gradient_counts(stats: dict[str, Any], order: str, eos_directions: int) -> dict[str, Any]:
    """The solver's ``stats`` with ``field_evals`` (vector-field evaluations) and
    ``grad_evals`` in gradients: the eos flow's field takes
    `_eos_flow.gradients_per_eval` of them, :math:`1 + 2n` for n tracked directions
    (theory/eos.md §5); every other order counts one per field evaluation."""
    field_evals = stats.get("grad_evals")
    per_eval = _eos_flow.gradients_per_eval(eos_directions) if order == "eos" else 1
    grads = None if field_evals is None else int(field_evals) * per_eval
    return {**stats, "field_evals": field_evals, "grad_evals": grads}
