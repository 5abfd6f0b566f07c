r"""`Trajectory`: the one result type of discrete runs and integrated flows."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import numpy as np

PyTree = Any


class IntegrationError(RuntimeError):
    """Raised by `integrate(..., throw=True)` when the solver fails or the state blows up.

    Also raised where a corrected flow cannot start within its validity (``start=`` a
    state, or ``start="auto"`` finding no step). `convergence_order` records it per
    learning rate in ``OrderFit.refused``. A ``RuntimeError``.

    Attributes
    ----------
    args : tuple
        ``(message,)``: what failed, and the solver's reason or advice.
    trajectory : Trajectory | None
        For a failure along the path, the path up to it (``success=False``, the saved
        points the solver did not reach are not finite), as ``throw=False`` would have
        returned it: a long diffrax solve that fails loses nothing it computed (scipy's
        failed solves keep no points). ``None`` for a
        refusal before any integration.

    Raises
    ------
    Nothing: an exception class; `integrate` raises it.

    Examples
    --------
    >>> import adamflow as af
    >>> issubclass(af.IntegrationError, RuntimeError)
    True
    >>> try:
    ...     raise af.IntegrationError("the flow's state became non-finite")
    ... except af.IntegrationError as error:
    ...     print("failed:", error)
    failed: the flow's state became non-finite
    """

    def __init__(self, message: str, trajectory: Trajectory | None = None) -> None:
        super().__init__(message)
        self.trajectory = trajectory


class TrainingState(NamedTuple):
    """An optimizer's state after ``step`` discrete updates: the parameters ``theta`` and
    every level's raw moments ``m``, ``v`` (tuples of length k of PyTrees like ``theta``),
    as the discrete recurrence holds them (theory/adam.md §3). Made by
    `Trajectory.state_at`; taken by ``run_discrete(..., start=)`` and
    ``integrate(..., start=)`` to continue from it. Its fields, in order:

    Attributes
    ----------
    theta : PyTree
        The parameters :math:`\theta_K` after ``step`` = K updates.
    m, v : tuple[PyTree, ...]
        Each level's raw first and second moments (k PyTrees like ``theta``), level 1 first.
    step : int
        The number K of updates taken.

    Raises
    ------
    Nothing: a NamedTuple; `run_discrete` and `integrate` check it when they take it.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import adamflow as af
    >>> loss = lambda theta: 0.5 * jnp.sum(theta**2)
    >>> run = af.run_discrete(af.Adam(0.1), loss, jnp.array([1.0, -2.0]), 10, save_every=5)
    >>> state = run.state_at(5)
    >>> state.step, len(state.m), state.theta.shape
    (5, 1, (2,))
    >>> rest = af.run_discrete(af.Adam(0.1), loss, None, 10, start=state)  # steps 6..10
    >>> bool(jnp.allclose(rest.final, run.final))
    True
    """

    theta: PyTree
    m: tuple[PyTree, ...]
    v: tuple[PyTree, ...]
    step: int


class StartValidity(NamedTuple):
    r"""Where a corrected flow begins, measured before its solve (theory/corrected_validity.md
    §1): the per-coordinate validity :math:`\eta|\dot x_i|/(\sqrt{\hat v_i}+\varepsilon)` (each
    coordinate's largest over the levels) summarized, the gain over the leading flow that
    the calibration predicts from it, and what limits it. Held by
    ``Trajectory.start_validity``; quoted by a refusal.

    Attributes
    ----------
    step : float
        The discrete step at which the flow begins.
    rms : float
        The indicator: the root mean square of the per-coordinate validity over all
        coordinates.
    max : float
        Its largest coordinate (of order one or more: that coordinate changes by O(1) in
        one step).
    fraction_above_one : float
        The fraction of coordinates whose validity exceeds 1.
    predicted_gain : float
        The calibrated prediction of the leading flow's largest error along the path over
        the corrected flow's, :math:`C\,\mathrm{rms}^{-p}` (``adamflow._corrected.GAIN_SCALE``,
        ``GAIN_POWER``; measured within a factor of about 2 over four models and four lrs).
        Below 1 the corrected flow was measured to lose, and it is refused.
    limiting_leaves : tuple[tuple[str, float], ...]
        The parameter leaves with the largest share of :math:`\sum_i \mathrm{validity}_i^2`,
        largest first (at most three): ``(name, share)``, e.g. ``("theta['w1']", 0.62)``.
    series_ratio : float | None
        For ``order="corrected2"``: the size of its second correction against its first,
        :math:`\|\dot\theta_2-\dot\theta_1\|/\|\dot\theta_1-\dot\theta_0\|` (the three
        orders' velocities there); 1 or more (or ``nan``) means the series in lr diverges
        there, and it is refused. ``None`` for ``"corrected"``.

    Raises
    ------
    Nothing: a NamedTuple, made by `adamflow.integrate`.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import adamflow as af
    >>> loss = lambda theta: jnp.sum(jnp.log(jnp.cosh(theta - 3.0)))
    >>> flow = af.integrate(af.Adam(0.05), loss, jnp.zeros(3), steps=20, order="corrected")
    >>> report = flow.start_validity
    >>> report.step, report.rms < 0.1, report.predicted_gain > 10, report.limiting_leaves[0][0]
    (1.0, True, True, 'theta')
    """

    step: float
    rms: float
    max: float
    fraction_above_one: float
    predicted_gain: float
    limiting_leaves: tuple[tuple[str, float], ...]
    series_ratio: float | None = None


@dataclass(frozen=True)
class Trajectory:
    r"""Saved states of a discrete optimizer run or an integrated flow, at matched times.

    Made by `run_discrete` and `integrate` (theory/adam.md §3-4 for what they compute);
    its fields, in order, are:

    Parameters
    ----------
    ts : np.ndarray
        Times ``t = n·lr`` of the saved points, shape ``(S,)``.
    steps : np.ndarray
        ``ts / lr`` (integers for discrete runs), shape ``(S,)``.
    theta : PyTree
        Parameters, a PyTree whose leaves have a leading axis of size ``S``;
        index 0 is ``theta0``.
    m, v : tuple[PyTree, ...]
        Raw first/second moments per level (tuples of length k of such PyTrees).
        Index 0 holds ``m_0 = v_0 = 0``.
    u : PyTree
        The normalized update ``u⁽ᵏ⁾`` applied at each saved point. Discrete: the ``u_n``
        that produced ``theta[n]`` (zero at index 0). Flow: ``u(t)`` (its ``t -> 0`` limit
        ``g/(|g|+ε)`` at index 0 for Adam; for the corrected flows, the first step's update
        at every saved time before lr).
    stats : dict[str, Any]
        ``num_steps`` (solver steps or discrete steps), ``grad_evals`` (gradient
        evaluations used to make the path: for flows, one per vector-field evaluation,
        1 + 2n for the eos flow's, whose field also differentiates the gradient along its n
        tracked directions (five at the default ``eos_directions=2``); a corrected flow's
        field takes a jet of the gradient, nested JVPs, counted as one; ``None`` where the
        solver cannot count them), for flows ``field_evals`` (vector-field evaluations),
        and backend-specific counters.
    success : bool
        Whether the run finished with a finite state.
    message : str
        Why not (``"ok"`` on success).
    kind : str
        ``"discrete"`` or ``"flow"``.
    order, convention, backend : str | None, optional
        For flows: `integrate`'s ``order``, ``convention`` and the backend used; else
        ``None``.
    validity : float | None, optional
        For corrected flows, the largest ``lr·|ẋ_i|/(sqrt(v̂_i)+ε)`` over the saved
        points from t = lr on, levels and coordinates, where ``x`` is each level's drive
        (``g``, then ``u⁽ⁱ⁻¹⁾``). Values of order one or more mean a coordinate changes by
        O(1) in one step, where no expansion in lr holds (else ``None``).
    start_step : float, optional
        The step at which the run or the flow's integration began: 0 from
        ``theta0``; 1 for the corrected flows' own start (after the first discrete step);
        K when started from a `TrainingState` after K steps (``start=``, or found by
        ``start="auto"``). Saved points before it come from the discrete steps.
    sharpness : np.ndarray | None, optional
        With ``sharpness_every=n``, the preconditioned sharpness
        :math:`\lambda_{\max}(P^{-1}H)`, :math:`P = \sqrt{\hat v} + \varepsilon`, at each
        saved point whose step is a positive multiple of n, ``nan`` at the others, shape
        ``(S,)`` (theory/eos.md §1; compare it with `adamflow.eos_threshold`); else ``None``.
    start_validity : StartValidity | None, optional
        For corrected flows, the calibrated indicator at the step where the flow began and
        what it predicts (`StartValidity`); else ``None``.
    extra : dict[str, Any], optional
        Free-form additional results; empty (nothing in adamflow fills it).

    Attributes
    ----------
    dtype : np.dtype
        The one float dtype of ``ts``, a flow's ``steps``, ``theta``, ``m``, ``v`` and
        ``u``: JAX's default float (float64 under ``jax_enable_x64``, else float32), whatever
        the backend computed in (scipy works in float64).
    final : PyTree
        The parameters at the last saved point.

    Raises
    ------
    TypeError, ValueError
        If a leaf of ``theta``, ``m``, ``v`` or ``u``, or ``ts``, cannot be cast to that
        float dtype (the constructor casts them; NumPy's error for that value).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import adamflow as af
    >>> loss = lambda theta: 0.5 * jnp.sum(theta**2)
    >>> tr = af.run_discrete(af.Adam(0.1), loss, jnp.array([1.0, -2.0]), 10, save_every=5)
    >>> tr.kind, tr.steps.tolist(), tr.theta_flat().shape, tr.success
    ('discrete', [0, 5, 10], (3, 2), True)
    >>> [round(float(x), 4) for x in tr.final], [round(float(x), 4) for x in tr.at(1)]
    ([0.0762, -1.0246], [0.508, -1.503])
    >>> tr.state_at(5).step
    5
    """

    ts: np.ndarray
    steps: np.ndarray
    theta: PyTree
    m: tuple[PyTree, ...]
    v: tuple[PyTree, ...]
    u: PyTree
    stats: dict[str, Any]
    success: bool
    message: str
    kind: str
    order: str | None = None
    convention: str | None = None
    backend: str | None = None
    validity: float | None = None
    start_step: float = 0.0
    sharpness: np.ndarray | None = None
    start_validity: StartValidity | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # One float dtype for every result, so float32 runs (x64 off) are not mixed with the
        # float64 that NumPy, scipy or the corrected flows' start compute in.
        dtype = np.dtype(jax.numpy.result_type(float))
        cast = lambda x: x.astype(dtype) if hasattr(x, "astype") else np.asarray(x, dtype)  # noqa: E731
        for name in ("theta", "m", "v", "u"):
            object.__setattr__(self, name, jax.tree_util.tree_map(cast, getattr(self, name)))
        object.__setattr__(self, "ts", np.asarray(self.ts, dtype=dtype))
        if np.asarray(self.steps).dtype.kind == "f":
            object.__setattr__(self, "steps", np.asarray(self.steps, dtype=dtype))

    @property
    def dtype(self) -> np.dtype:
        """The float dtype of every result (JAX's default float when it was made).

        Returns
        -------
        np.dtype
            ``ts``'s dtype, float64 or float32.
        """
        return np.asarray(self.ts).dtype

    def theta_flat(self) -> np.ndarray:
        """Parameters as one array of shape ``(S, D)`` (leaves raveled and concatenated).

        Returns
        -------
        np.ndarray
            Row ``j`` is the saved point ``j``; the columns follow
            ``jax.tree_util.tree_leaves(theta)``'s order.

        Raises
        ------
        ValueError
            If ``theta`` has no leaves (nothing to concatenate).
        """
        leaves = jax.tree_util.tree_leaves(self.theta)
        n = len(self.ts)
        return np.concatenate([np.asarray(x).reshape(n, -1) for x in leaves], axis=1)

    def at(self, index: int) -> PyTree:
        """Parameters at saved index ``index`` (a PyTree without the time axis).

        Parameters
        ----------
        index : int
            The saved point, from 0 (negative counts from the end).

        Returns
        -------
        PyTree
            Shaped like ``theta0``.

        Raises
        ------
        IndexError
            If ``index`` is not an integer in [-len(ts), len(ts)) (checked here: JAX arrays
            would clamp it to the first or last point).
        """
        count = len(self.ts)
        try:  # Python, NumPy and 0-d JAX integers (e.g. an argmin) alike
            position = operator.index(index)
        except TypeError:
            position = None
        if isinstance(index, bool) or position is None:
            raise IndexError(f"index must be an integer, got {index!r}")
        index = position
        if not -count <= index < count:
            raise IndexError(f"index {index} is out of range for {count} saved points")
        return jax.tree_util.tree_map(lambda x: x[index], self.theta)

    def state_at(self, step: int) -> TrainingState:
        """The state (θ, every level's raw m and v, the step count) at saved step ``step``,
        to continue from with ``run_discrete(..., start=)`` or ``integrate(..., start=)``.

        Raises ``ValueError`` naming the saved steps when ``step`` was not saved (save it
        with ``save_every``/``save_steps``).

        Parameters
        ----------
        step : int
            A saved step number (an integer; the last saved point with that step is used).

        Returns
        -------
        TrainingState
            θ, every level's raw ``m`` and ``v`` at that point, and ``step``.

        Raises
        ------
        ValueError
            If ``step`` is a bool, not an integer, or not among the saved ``steps``.
        """
        saved = np.asarray(self.steps, dtype=float)
        matches = np.flatnonzero(np.isclose(saved, float(step), rtol=0, atol=1e-9))
        if isinstance(step, bool) or not float(step).is_integer() or matches.size == 0:
            shown = ", ".join(f"{s:g}" for s in saved[:6]) + (", ..." if saved.size > 6 else "")
            raise ValueError(
                f"step={step!r} is not a saved step of this trajectory (saved: {shown}); "
                "save it with save_every= (run_discrete) or save_steps= (integrate)"
            )
        index = int(matches[-1])
        pick = lambda tree: jax.tree_util.tree_map(lambda x: x[index], tree)  # noqa: E731
        return TrainingState(pick(self.theta), pick(self.m), pick(self.v), int(round(step)))

    @property
    def final(self) -> PyTree:
        """Parameters at the last saved point.

        Returns
        -------
        PyTree
            ``at(-1)``, shaped like ``theta0``.
        """
        return self.at(-1)


#: Saved points are padded to a bucket so that runs with a different number of them (a new
#: ``steps``, a new lr at a fixed horizon) reuse one compiled program: the next power of two,
#: and at least `MIN_SAVE_BUCKET` points while the padding takes under `PAD_BYTES`.
MIN_SAVE_BUCKET = 256
PAD_BYTES = 16 * 2**20


def save_bucket(n_saves: int, tree: PyTree) -> int:
    """How many saved points a compiled run holds for ``n_saves`` requested ones, each a copy
    of ``tree``: the next power of two, raised to `MIN_SAVE_BUCKET` where that costs under
    `PAD_BYTES` (the padded points are dropped after the run)."""
    bytes_per_save = sum(np.size(x) * 8 for x in jax.tree_util.tree_leaves(tree))
    bucket = 1 << max(0, int(n_saves) - 1).bit_length()
    floor = min(MIN_SAVE_BUCKET, max(1, PAD_BYTES // max(1, bytes_per_save)))
    return max(bucket, 1 << (floor.bit_length() - 1))


def all_finite(tree: PyTree) -> bool:
    """True when every leaf of ``tree`` is finite."""
    return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree_util.tree_leaves(tree))


def first_nonfinite_index(tree: PyTree) -> int | None:
    """First index along the leading axis where any leaf is non-finite, else ``None``."""
    bad = None
    for x in jax.tree_util.tree_leaves(tree):
        arr = np.asarray(x)
        rows = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
        if rows.any():
            i = int(np.argmax(rows))
            bad = i if bad is None else min(bad, i)
    return bad
