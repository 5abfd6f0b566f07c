"""Discrete optimizer against its flow: errors at matched times and convergence orders."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._discrete import run_discrete
from ._integrate import MODELS, check_options, integrate
from ._optimizers import KAdam
from ._trajectory import IntegrationError, PyTree, TrainingState, Trajectory
from .validation import check_choice, check_int, check_positive


@dataclass(frozen=True)
class Comparison:
    r"""A discrete run and a flow saved at the same steps, and their distance.

    ``error[j] = |θ_{n_j} - θ(n_j η)|`` (Euclidean norm over all parameters) at the saved
    steps ``n_j``; ``max_error``/``final_error`` its maximum and last value;
    ``relative_error = max_error / max_j |θ_{n_j} - θ_0|`` (error per distance travelled).
    Made by `compare`.

    Parameters
    ----------
    discrete : Trajectory
        The discrete run (`run_discrete`).
    flow : Trajectory
        The flow (`integrate`), saved at the discrete run's steps.
    steps : np.ndarray
        The saved steps :math:`n_j`, shape ``(S,)``.
    error : np.ndarray
        :math:`|\theta_{n_j} - \theta(n_j\eta)|` at each saved step, shape ``(S,)``.
    max_error : float
        The largest ``error``.
    final_error : float
        ``error`` at the last saved step.
    relative_error : float
        ``max_error`` divided by the farthest distance from ``theta0`` along the discrete
        run (``inf`` if it never moved).

    Raises
    ------
    Nothing: a record that `compare` fills; its fields are not checked.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import adamflow as af
    >>> loss = lambda theta: 0.5 * jnp.sum(theta**2)
    >>> c = af.compare(af.Adam(0.1), loss, jnp.array([1.0, -2.0]), 10, save_every=5)
    >>> c.discrete.kind, c.flow.kind, c.flow.steps.tolist()
    ('discrete', 'flow', [0.0, 5.0, 10.0])
    >>> c.max_error == float(max(c.error)), round(c.relative_error, 4)
    (True, 0.0034)
    """

    discrete: Trajectory
    flow: Trajectory
    steps: np.ndarray
    error: np.ndarray
    max_error: float
    final_error: float
    relative_error: float


def trajectory_distance(a: Trajectory, b: Trajectory) -> np.ndarray:
    """``|θ_a - θ_b|``, the Euclidean norm over every parameter, at each saved index (both
    saved at the same points)."""
    xa, xb = a.theta_flat(), b.theta_flat()
    if xa.shape != xb.shape:
        raise ValueError(f"trajectories saved at different points: {xa.shape} vs {xb.shape}")
    return np.linalg.norm(xa - xb, axis=1)


def compare(
    opt: KAdam,
    loss: Callable[[PyTree], Any] | None,
    theta0: PyTree,
    steps: int,
    *,
    grad: Callable[[PyTree], PyTree] | None = None,
    save_every: int = 1,
    start: TrainingState | str | None = None,
    **integrate_kwargs: Any,
) -> Comparison:
    r"""Run ``opt`` for ``steps`` discrete steps and integrate its flow to :math:`t = n\eta`;
    report :math:`|\theta_n - \theta(n\eta)|` (the Euclidean norm over every parameter of the
    PyTree) at every ``save_every``-th step (and the last).

    ``start`` as in `integrate`: a `TrainingState` after K steps (``theta0`` then ``None``)
    runs both the optimizer and the flow from it, over steps K..``steps``; ``"auto"`` lets a
    corrected flow begin where its validity allows (the points before it are the discrete
    steps, error 0). ``integrate_kwargs`` go to `integrate` (``order``, ``convention``,
    ``backend``, …); they are checked before the discrete run starts.

    Parameters
    ----------
    opt : KAdam
        An `Adam`, `AdamW` or `KAdam` spec.
    loss : Callable[[PyTree], Any] | None
        Scalar function of the parameter PyTree (``None`` when ``grad`` is given).
    theta0 : PyTree
        Initial parameters (``None`` with a `TrainingState` ``start``).
    steps : int
        Number of the last step, an integer >= 1.
    grad : Callable[[PyTree], PyTree] | None, optional
        Gradient function used instead of ``jax.grad(loss)``, by both runs.
    save_every : int, optional
        Compare every this many steps (and the last), an integer >= 1.
    start : TrainingState | str | None, optional
        ``None``, a `TrainingState` or ``"auto"``, as described above.
    **integrate_kwargs : Any
        Options of `integrate` (not ``steps``, ``t1`` or ``save_steps``, which
        ``compare`` sets).

    Returns
    -------
    Comparison
        Both trajectories, the saved steps and the errors.

    Raises
    ------
    TypeError
        If ``opt`` is not a spec, or ``integrate_kwargs`` names no option of `integrate`;
        and the ``TypeError`` of `run_discrete` or `integrate` (``loss``/``grad`` not
        callable, a ``theta0`` of plain numbers or non-real leaves, ...).
    ValueError
        If ``steps`` or ``save_every`` is not an integer >= 1, or an option in
        ``integrate_kwargs`` is out of range (``order``, ``convention``, ``backend``,
        ``atol``, ``max_steps``, ``rtol``); and the ``ValueError`` of `run_discrete` or
        `integrate` (e.g. an order that refuses the spec, a malformed ``start``).
    IntegrationError
        If the flow fails and ``throw`` is not ``False`` (see `integrate`).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import adamflow as af
    >>> loss = lambda theta: 0.5 * jnp.sum(theta**2)
    >>> c = af.compare(af.Adam(0.1), loss, jnp.array([1.0, -2.0]), 10, save_every=5)
    >>> c.steps.tolist(), [round(float(e), 4) for e in c.error]
    ([0, 5, 10], [0.0, 0.0011, 0.0045])
    """
    if not isinstance(opt, KAdam):
        raise TypeError(f"opt must be an adamflow spec (Adam, AdamW, KAdam), got {opt!r}")
    check_int("steps", steps, 1)
    check_int("save_every", save_every, 1)
    check_options(**integrate_kwargs)
    if not (
        start is None
        or isinstance(start, TrainingState)
        or (isinstance(start, str) and start == "auto")
    ):
        raise ValueError(f"start must be None, 'auto' or a TrainingState, got {start!r}")
    state = start if isinstance(start, TrainingState) else None
    disc = run_discrete(opt, loss, theta0, steps, grad=grad, save_every=save_every, start=state)
    flow = integrate(
        opt,
        loss,
        theta0,
        grad=grad,
        steps=steps,
        save_steps=disc.steps,
        start=start,
        **integrate_kwargs,
    )
    error = trajectory_distance(disc, flow)
    x = disc.theta_flat()
    travelled = float(np.max(np.linalg.norm(x - x[0], axis=1)))
    max_error = float(np.max(error))
    return Comparison(
        discrete=disc,
        flow=flow,
        steps=disc.steps,
        error=error,
        max_error=max_error,
        final_error=float(error[-1]),
        relative_error=max_error / travelled if travelled > 0 else float("inf"),
    )


@dataclass(frozen=True)
class OrderFit:
    r"""Errors over learning rates and the fitted order :math:`p` in
    :math:`\text{error} \approx C\,\eta^p` (least squares on log-log axes).

    ``refused`` maps each learning rate whose run failed or was refused to the reason; the
    fit uses the others (``order`` and ``constant`` are ``nan`` when fewer than two remain).
    Made by `fit_order`, `convergence_order` and `compare_orders`.

    Parameters
    ----------
    lrs : np.ndarray
        The learning rates fitted.
    errors : np.ndarray
        Their errors.
    order : float
        The fitted exponent :math:`p`.
    constant : float
        The fitted :math:`C`.
    label : str, optional
        What was fitted (``"<order>, <convention>"`` for `convergence_order`).
    refused : dict[float, str], optional
        The learning rates left out, with the reason.

    Raises
    ------
    Nothing: a record; its fields are not checked.

    Examples
    --------
    >>> import adamflow as af
    >>> fit = af.fit_order([0.1, 0.05, 0.025], [1e-2, 2.5e-3, 6.25e-4], label="corrected")
    >>> round(fit.order, 6), round(fit.constant, 6), fit.label, fit.refused
    (2.0, 1.0, 'corrected', {})
    """

    lrs: np.ndarray
    errors: np.ndarray
    order: float
    constant: float
    label: str = ""
    refused: dict[float, str] = field(default_factory=dict)


def fit_order(lrs: Sequence[float], errors: Sequence[float], label: str = "") -> OrderFit:
    r"""Fit :math:`\log \text{error} = \log C + p \log \eta` by least squares.

    A straight line through the points :math:`(\log\eta_i, \log \text{error}_i)`
    (`numpy.polyfit`, degree 1): :math:`\text{error} \approx C\eta^p`
    (theory/corrected_flow.md §2 predicts :math:`p`).

    Parameters
    ----------
    lrs : Sequence[float]
        Learning rates, each > 0.
    errors : Sequence[float]
        Their errors, each finite and > 0, as many as ``lrs``.
    label : str, optional
        Stored in the result.

    Returns
    -------
    OrderFit
        ``lrs`` and ``errors`` as float arrays, the slope ``order`` and ``constant``
        :math:`C`; ``refused`` empty.

    Raises
    ------
    ValueError
        If ``lrs`` and ``errors`` differ in shape or hold fewer than two values, an lr is
        not > 0, an error is not finite and > 0, a value is not a number, or the lrs are
        all equal.

    Examples
    --------
    >>> import adamflow as af
    >>> fit = af.fit_order([0.1, 0.05], [2e-2, 5e-3])
    >>> round(fit.order, 6), round(fit.constant, 6)
    (2.0, 2.0)
    """
    lr_arr = np.asarray(lrs, dtype=float)
    err_arr = np.asarray(errors, dtype=float)
    if lr_arr.shape != err_arr.shape or lr_arr.size < 2:
        raise ValueError("fit_order needs at least two (lr, error) pairs of equal length")
    if np.any(lr_arr <= 0) or np.any(~np.isfinite(err_arr)) or np.any(err_arr <= 0):
        raise ValueError("fit_order needs lr > 0 and finite errors > 0")
    if np.unique(lr_arr).size < 2:  # a vertical line: no slope (polyfit would only warn)
        raise ValueError(f"fit_order needs at least two different lrs, got {lr_arr.tolist()}")
    slope, intercept = np.polyfit(np.log(lr_arr), np.log(err_arr), 1)
    return OrderFit(lr_arr, err_arr, float(slope), float(np.exp(intercept)), label)


def convergence_order(
    opt: KAdam,
    loss: Callable[[PyTree], Any] | None,
    theta0: PyTree,
    lrs: Sequence[float],
    *,
    t1: float,
    metric: str = "final",
    grad: Callable[[PyTree], PyTree] | None = None,
    start: float | str | None = None,
    **integrate_kwargs: Any,
) -> OrderFit:
    r"""Order :math:`p` of the flow's error against the discrete run at a fixed time
    ``t1``: for each ``lr`` (``t1/lr`` must be an integer), ``error = |θ_K - θ(Kη)|`` at
    ``K = t1/lr`` (``metric="final"``) or its maximum over the steps (``"max"``).

    ``start``: ``None`` (from ``theta0``), ``"auto"`` (see `integrate`), or a time
    :math:`t_s` in (0, ``t1``): for each lr the flow starts from the discrete state at step
    :math:`t_s/\eta` (an integer) and errors are measured from there on.

    Every argument is checked before anything runs (a misspelt ``order`` is a
    ``ValueError`` at once). A learning rate whose spec the chosen flow cannot integrate
    (its model refuses it, e.g. ``order="corrected"`` for k ≥ 3) or whose flow fails along
    the path (`IntegrationError`, e.g. a corrected flow past its validity at the start) is
    kept in ``OrderFit.refused`` with the reason; the others are fitted. Any other error
    propagates.

    Parameters
    ----------
    opt : KAdam
        An `Adam`, `AdamW` or `KAdam` spec; its ``lr`` is replaced by each of ``lrs``.
    loss : Callable[[PyTree], Any] | None
        Scalar function of the parameter PyTree (``None`` when ``grad`` is given).
    theta0 : PyTree
        Initial parameters.
    lrs : Sequence[float]
        Learning rates, each > 0 with ``t1/lr`` an integer.
    t1 : float
        The time horizon, > 0.
    metric : str, optional
        ``"final"`` (the error at ``t1``) or ``"max"`` (the largest along the path).
    grad : Callable[[PyTree], PyTree] | None, optional
        Gradient function used instead of ``jax.grad(loss)``.
    start : float | str | None, optional
        ``None``, ``"auto"`` or a start time :math:`t_s`, as described above.
    **integrate_kwargs : Any
        Options of `integrate` (``order``, ``convention``, ``backend``, ``rtol``, ...).

    Returns
    -------
    OrderFit
        The fit over the learning rates kept, labelled ``"<order>, <convention>"``, with
        ``refused`` (``order`` and ``constant`` ``nan`` when fewer than two are kept).

    Raises
    ------
    TypeError
        If ``opt`` is not a spec, ``integrate_kwargs`` names no option of `integrate`,
        ``lrs`` is not a sequence (a string included) or holds a non-number; and the
        ``TypeError`` of the runs (``loss``/``grad``, ``theta0``).
    ValueError
        If ``metric`` is not ``"final"`` or ``"max"``, ``t1`` is not > 0, an option in
        ``integrate_kwargs`` is out of range, ``start`` is another string than ``"auto"``
        or a time not in (0, ``t1``), an lr is not > 0, ``t1/lr`` or ``start/lr`` is not
        an integer; the ``ValueError`` of the runs other than an order's refusal of the
        spec; or (`fit_order`) an error that is 0 or not finite, e.g. from a run that
        went non-finite.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import adamflow as af
    >>> loss = lambda theta: 0.5 * jnp.sum(theta**2)
    >>> theta0 = jnp.array([1.0, -2.0])
    >>> fit = af.convergence_order(af.Adam(0.1), loss, theta0, [0.01, 0.005], t1=1.0)
    >>> round(fit.order, 1), fit.label, fit.refused  # error ~ C lr for the leading flow
    (1.0, 'leading, exact', {})
    """
    if not isinstance(opt, KAdam):
        raise TypeError(f"opt must be an adamflow spec (Adam, AdamW, KAdam), got {opt!r}")
    check_choice("metric", metric, ("final", "max"))
    t1 = check_positive("t1", t1)
    check_options(**integrate_kwargs)
    start_time = None
    if start is not None and start != "auto":
        if isinstance(start, str):
            raise ValueError(f"start must be None, 'auto' or a time in (0, t1), got {start!r}")
        start_time = check_positive("start", start)
        if start_time >= t1:
            raise ValueError(f"start={start_time:g} must lie before t1={t1:g}")
    if isinstance(lrs, (str, bytes)) or not isinstance(lrs, (Sequence, np.ndarray)):
        raise TypeError(f"lrs must be a sequence of learning rates, got {lrs!r}")
    runs = []  # (lr, spec, steps), all checked before the first run
    for i, lr in enumerate(lrs):
        lr = check_positive(f"lrs[{i}]", lr)
        steps = round(t1 / lr)
        if steps < 1 or not np.isclose(steps * lr, t1, rtol=1e-9):
            raise ValueError(f"t1/lr must be a positive integer; t1={t1}, lrs[{i}]={lr}")
        first = 0 if start_time is None else round(start_time / lr)
        if start_time is not None and not np.isclose(first * lr, start_time, rtol=1e-9):
            raise ValueError(f"start/lr must be an integer; start={start_time}, lrs[{i}]={lr}")
        runs.append((lr, opt.replace(lr=lr), steps, first))
    order = integrate_kwargs.get("order", "leading")
    convention = integrate_kwargs.get("convention", "exact")
    kept_lrs, errors, refused = [], [], {}
    for lr, spec, steps, first in runs:
        try:
            MODELS[order](spec, convention)  # a refusal of this spec, before any run
        except ValueError as error:
            refused[float(lr)] = str(error)
            continue
        save_every = steps - first if metric == "final" else max(1, (steps - first) // 50)
        begin: Any = start
        if first > 0:  # the discrete state at step t_s/lr, where both runs continue from
            head = run_discrete(spec, loss, theta0, first, grad=grad, save_every=first)
            begin = head.state_at(first)
        try:
            result = compare(
                spec,
                loss,
                None if first > 0 else theta0,
                steps,
                grad=grad,
                save_every=save_every,
                start=begin,
                **integrate_kwargs,
            )
        except IntegrationError as error:
            refused[float(lr)] = str(error)
            continue
        kept_lrs.append(lr)
        errors.append(result.final_error if metric == "final" else result.max_error)
    label = f"{order}, {convention}"
    if len(kept_lrs) < 2:
        nan = float("nan")
        return OrderFit(np.asarray(kept_lrs), np.asarray(errors), nan, nan, label, refused)
    fit = fit_order(kept_lrs, errors, label)
    return OrderFit(fit.lrs, fit.errors, fit.order, fit.constant, label, refused)


def compare_orders(
    opt: KAdam,
    loss: Callable[[PyTree], Any] | None,
    theta0: PyTree,
    lrs: Sequence[float],
    *,
    t1: float,
    orders: Sequence[str] = ("leading", "corrected"),
    metric: str = "final",
    grad: Callable[[PyTree], PyTree] | None = None,
    **integrate_kwargs: Any,
) -> dict[str, OrderFit]:
    r"""`convergence_order` for several flow orders side by side: ``{order: OrderFit}``.
    Every order is returned; learning rates refused for one order are listed in its
    ``OrderFit.refused``.

    Each fit is :math:`\text{error} \approx C\eta^p` over the same ``lrs`` and ``t1``; the
    leading flow has :math:`p \approx 1`, the corrected flow :math:`p \approx 2` where its
    expansion holds (theory/corrected_flow.md §2).

    Parameters
    ----------
    opt : KAdam
        An `Adam`, `AdamW` or `KAdam` spec; its ``lr`` is replaced by each of ``lrs``.
    loss : Callable[[PyTree], Any] | None
        Scalar function of the parameter PyTree (``None`` when ``grad`` is given).
    theta0 : PyTree
        Initial parameters.
    lrs : Sequence[float]
        Learning rates, each > 0 with ``t1/lr`` an integer.
    t1 : float
        The time horizon, > 0.
    orders : Sequence[str], optional
        The flow orders to fit (`integrate`'s ``order``).
    metric : str, optional
        ``"final"`` or ``"max"`` (see `convergence_order`).
    grad : Callable[[PyTree], PyTree] | None, optional
        Gradient function used instead of ``jax.grad(loss)``.
    **integrate_kwargs : Any
        Other options of `integrate` (not ``order``), and `convergence_order`'s ``start``.

    Returns
    -------
    dict[str, OrderFit]
        One fit per order, in the order of ``orders``.

    Raises
    ------
    TypeError
        If ``orders`` is a string, or ``integrate_kwargs`` names no option of `integrate`
        (or names ``order``); and `convergence_order`'s.
    ValueError
        If an order is not one of `integrate`'s, or another option in
        ``integrate_kwargs`` is out of range; and `convergence_order`'s.

    Examples
    --------
    >>> import jax
    >>> jax.config.update("jax_enable_x64", True)  # errors down to 1e-7: float64
    >>> import jax.numpy as jnp
    >>> import adamflow as af
    >>> loss = lambda theta: 0.5 * jnp.sum(theta**2)
    >>> theta0 = jnp.array([1.0, -2.0])
    >>> fits = af.compare_orders(af.Adam(0.1), loss, theta0, [0.01, 0.005], t1=1.0)
    >>> {order: round(fit.order, 1) for order, fit in fits.items()}
    {'leading': 1.0, 'corrected': 2.2}
    """
    if isinstance(orders, str):
        raise TypeError(f"orders must be a sequence of order names, got {orders!r}")
    for order in orders:  # every order checked before the first run
        check_options(order=order, **integrate_kwargs)
    return {
        order: convergence_order(
            opt,
            loss,
            theta0,
            lrs,
            t1=t1,
            metric=metric,
            grad=grad,
            order=order,
            **integrate_kwargs,
        )
        for order in orders
    }
