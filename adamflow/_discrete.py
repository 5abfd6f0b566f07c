"""The discrete optimizers (theory/adam.md §3, theory/kadam.md §1): the reference every flow
is compared with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._gradients import Gradient, first_nonfinite_leaf, prepare, starting_point
from ._optimizers import CascadeState, KAdam, cascade_step, init_state, parameter_step
from ._sharpness import check_sharpness_every, sharpness_along
from ._trajectory import (
    PyTree,
    TrainingState,
    Trajectory,
    first_nonfinite_index,
    save_bucket,
)
from .rules import NUMPY_OPS, bias_correction, decay_per_step
from .validation import check_int

tree_map = jax.tree_util.tree_map


def run_discrete(
    opt: KAdam,
    loss: Callable[[PyTree], Any] | None,
    theta0: PyTree,
    steps: int,
    *,
    grad: Callable[[PyTree], PyTree] | None = None,
    save_every: int = 1,
    progress: bool = False,
    start: TrainingState | None = None,
    sharpness_every: int | None = None,
) -> Trajectory:
    r"""Run the discrete optimizer for ``steps`` steps from ``theta0`` (theory/adam.md §3,
    theory/kadam.md §1).

    :math:`g_n = \nabla L(\theta_{n-1})`, the k-level cascade gives :math:`u^{(k)}_n`, and
    :math:`\theta_n = \theta_{n-1} - \eta(u^{(k)}_n + \lambda\theta_{n-1})`. Equal to
    ``optax.adamw`` for ``AdamW`` specs, to round-off.

    Saves steps ``0, save_every, 2·save_every, …`` and always the last step. ``grad``
    replaces ``jax.grad(loss)``: a JAX function runs inside one jitted ``lax.scan``; a
    NumPy-only callable is called once per step on NumPy arrays (slower, same numbers).
    ``progress`` shows a bar of steps done (the run then goes block by block, one block per
    saved step). ``theta0`` must be a PyTree of real, finite arrays (a list of plain numbers
    is refused: pass ``jnp.asarray``) and the gradient must have its structure and shapes
    (checked before the run). A run that goes non-finite returns ``success=False``
    and names the first such saved step and parameter leaf.

    ``start`` continues a run from a `TrainingState` after K steps (``tr.state_at(K)``;
    ``theta0`` is then ``None``): ``steps`` stays the last step's number, so the run takes
    steps K+1..``steps`` and saves K, K + save_every, ... and ``steps``; its numbers equal
    the uninterrupted run's.

    ``sharpness_every=n`` (Adam/AdamW, a JAX gradient) measures the preconditioned sharpness
    :math:`\lambda_{\max}(P^{-1}H)`, :math:`P = \sqrt{v_n/(1-\beta_2^n)} + \varepsilon`, at
    the saved steps that are multiples of n (n a multiple of ``save_every``) into
    ``Trajectory.sharpness`` (`adamflow.preconditioned_sharpness`, theory/eos.md §1).

    Parameters
    ----------
    opt : KAdam
        An `Adam`, `AdamW` or `KAdam` spec (a constant lr or a schedule).
    loss : Callable[[PyTree], Any] | None
        Scalar function of the parameter PyTree (``None`` when ``grad`` is given).
    theta0 : PyTree
        Initial parameters, a PyTree of real, finite arrays (integers taken as floats);
        ``None`` with ``start``.
    steps : int
        Number of the last step, an integer >= 1 (and above ``start.step``).
    grad : Callable[[PyTree], PyTree] | None, optional
        Gradient function used instead of ``jax.grad(loss)``; JAX or NumPy-only code.
    save_every : int, optional
        Save every this many steps (and the last), an integer >= 1.
    progress : bool, optional
        Show a progress bar.
    start : TrainingState | None, optional
        The state to continue from (``Trajectory.state_at``).
    sharpness_every : int | None, optional
        Measure the preconditioned sharpness at the saved steps that are multiples of it.

    Returns
    -------
    Trajectory
        ``kind="discrete"``: the saved steps, times, parameters, raw moments per level and
        updates; ``success=False`` with the reason in ``message`` if the run went
        non-finite.

    Raises
    ------
    TypeError
        If ``opt`` is not a spec; ``grad`` is given but not callable, or neither is and
        ``loss`` is not callable; ``theta0`` is a list or tuple of plain numbers or has a
        complex, boolean or string leaf; ``start`` is not a `TrainingState`.
    ValueError
        If ``steps`` or ``save_every`` is not an integer >= 1; ``theta0`` is empty or not
        finite; both ``theta0`` and ``start`` are given; ``start`` has a step that is not an
        integer >= 0, not k levels of moments shaped like its ``theta``, or non-zero
        moments at step 0; ``steps <= start.step``; the gradient's output differs from
        ``theta0`` in structure or shapes; ``sharpness_every`` is not an integer >= 1, is
        given for ``k >= 2`` or a NumPy-only gradient, or is not a multiple of
        ``save_every``. Errors raised by ``loss`` or ``grad`` themselves propagate.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import adamflow as af
    >>> loss = lambda theta: 0.5 * jnp.sum(theta**2)
    >>> tr = af.run_discrete(af.Adam(0.1), loss, jnp.array([1.0, -2.0]), 10, save_every=5)
    >>> tr.steps.tolist(), [round(float(t), 6) for t in tr.ts]
    ([0, 5, 10], [0.0, 0.5, 1.0])
    >>> [round(float(x), 4) for x in tr.final], tr.stats["grad_evals"]
    ([0.0762, -1.0246], 10)
    """
    if not isinstance(opt, KAdam):
        raise TypeError(f"opt must be an adamflow spec (Adam, AdamW, KAdam), got {opt!r}")
    steps = check_int("steps", steps, 1)
    save_every = check_int("save_every", save_every, 1)
    theta0, start = starting_point(theta0, start, opt.k)
    first = 0 if start is None else start.step
    if steps <= first:
        raise ValueError(f"steps={steps} must exceed the start's step {first}")
    gradient = prepare(loss, grad, theta0)
    sharpness_every = check_sharpness_every(opt, sharpness_every, gradient.traceable)
    if sharpness_every is not None and sharpness_every % save_every:
        raise ValueError(
            f"sharpness_every={sharpness_every} must be a multiple of save_every={save_every} "
            "(the sharpness is measured at saved steps)"
        )
    state0 = (
        init_state(opt.k, gradient.theta0)
        if start is None
        else CascadeState(jnp.asarray(first, jnp.int32), start.m, start.v)
    )
    if gradient.traceable and not progress:
        saved_states, saved_steps = _run_scan(
            gradient.fn, opt, gradient.theta0, state0, steps - first, save_every
        )
    else:
        saved_states, saved_steps = _run_loop(
            gradient, opt, state0, steps - first, save_every, progress
        )
    saved_steps = [first + n for n in saved_steps]
    theta, m, v, u = saved_states
    steps_arr = np.asarray(saved_steps, dtype=np.int64)
    bad = first_nonfinite_index(theta)
    message = "ok"
    if bad is not None:
        leaf = first_nonfinite_leaf(jax.tree_util.tree_map(lambda x: x[bad], theta))
        message = (
            f"non-finite parameters at saved step {int(steps_arr[bad])} (first in {leaf}); "
            "the gradient or the update u = m̂/(sqrt(v̂)+eps) overflowed or was nan before it"
        )
    sharpness = None
    if sharpness_every is not None:
        divisor = bias_correction(steps_arr * decay_per_step(opt.b2s[0], NUMPY_OPS), NUMPY_OPS)
        sharpness = sharpness_along(
            opt, gradient.fn, steps_arr, theta, v[0], divisor, sharpness_every, progress
        )
    return Trajectory(
        ts=step_times(opt, steps_arr),
        steps=steps_arr,
        theta=theta,
        m=m,
        v=v,
        u=u,
        stats={"num_steps": steps - first, "grad_evals": steps - first},
        success=bad is None,
        message=message,
        kind="discrete",
        start_step=float(first),
        sharpness=sharpness,
    )


def _run_scan(
    grad_fn: Callable[[PyTree], PyTree],
    opt: KAdam,
    theta0: PyTree,
    state0: CascadeState,
    steps: int,
    save_every: int,
) -> tuple[Any, list[int]]:
    """Run ``steps`` steps from ``(theta0, state0)``, saving every ``save_every`` and the
    last; index 0 is the start.

    ``steps`` and ``save_every`` are traced, and the saved records fill a buffer padded to
    `adamflow._trajectory.save_bucket`, so a new horizon or saving interval reuses the
    compiled loop."""
    saved_steps = _saved_steps(steps, save_every)
    records = _loop_jit(
        grad_fn,
        save_bucket(len(saved_steps), (theta0, state0.m, state0.v, theta0)),
        opt,
        theta0,
        state0,
        jnp.asarray(steps),
        jnp.asarray(save_every),
    )
    return tree_map(lambda x: x[: len(saved_steps)], records), saved_steps


def step_times(opt: KAdam, steps: np.ndarray) -> np.ndarray:
    r"""Times :math:`t_n = \sum_{i<n} \eta_i` of the steps ``n`` (``n·lr`` for a constant
    lr); fractional steps are interpolated linearly."""
    steps = np.asarray(steps, dtype=float)
    if opt.schedule is None:
        return steps * opt.lr
    last = int(np.ceil(steps.max())) if steps.size else 0
    etas = np.asarray(jax.vmap(opt.schedule)(jnp.arange(last)), dtype=float).reshape(-1)
    grid = np.concatenate([[0.0], np.cumsum(etas)])
    return np.interp(steps, np.arange(last + 1), grid)


def _saved_steps(steps: int, save_every: int) -> list[int]:
    n_blocks, tail = divmod(steps, save_every)
    return [i * save_every for i in range(n_blocks + 1)] + ([steps] if tail else [])


def _one_step(
    opt: KAdam, grad_fn: Callable[[PyTree], PyTree], carry: tuple[PyTree, CascadeState, PyTree]
) -> tuple[PyTree, CascadeState, PyTree]:
    theta, state, _u = carry
    count = state.count  # updates before this one: the schedule's argument
    state, u = cascade_step(opt, state, grad_fn(theta))
    return parameter_step(opt, theta, u, count), state, u


@jax.jit(static_argnums=(0, 1))
def _block_jit(grad_fn: Callable[[PyTree], PyTree], length: int, opt: KAdam, carry: Any) -> Any:
    return jax.lax.scan(lambda c, _: (_one_step(opt, grad_fn, c), None), carry, None, length)[0]


@jax.jit
def _step_with_jit(opt: KAdam, carry: Any, grad: PyTree) -> Any:
    return _one_step(opt, lambda _theta: grad, carry)


def _run_loop(
    gradient: Gradient,
    opt: KAdam,
    state: CascadeState,
    steps: int,
    save_every: int,
    progress: bool,
) -> tuple[Any, list[int]]:
    """`_run_scan` block by block from Python: for a progress bar, and for NumPy-only
    gradients (called on NumPy arrays, one step at a time)."""
    from tqdm.auto import tqdm

    saved_steps = _saved_steps(steps, save_every)
    carry = (gradient.theta0, state, tree_map(jnp.zeros_like, gradient.theta0))
    records = [(carry[0], carry[1].m, carry[1].v, carry[2])]
    with tqdm(total=steps, desc="run_discrete", unit="step", disable=not progress) as bar:
        for start, end in zip(saved_steps[:-1], saved_steps[1:], strict=True):
            if gradient.traceable:
                carry = _block_jit(gradient.fn, end - start, opt, carry)
            else:
                for _ in range(end - start):
                    grad = gradient.fn(tree_map(np.asarray, carry[0]))
                    carry = _step_with_jit(opt, carry, tree_map(jnp.asarray, grad))
            bar.update(end - start)
            records.append((carry[0], carry[1].m, carry[1].v, carry[2]))
    return tree_map(lambda *xs: jnp.stack(xs), *records), saved_steps


@jax.jit(static_argnums=(0, 1))
def _loop_jit(
    grad_fn: Callable[[PyTree], PyTree],
    n_records: int,
    opt: KAdam,
    theta0: PyTree,
    state0: CascadeState,
    steps: jax.Array,
    save_every: jax.Array,
) -> Any:
    def record(carry: Any) -> Any:
        theta, state, u = carry
        return (theta, state.m, state.v, u)

    def one_step(n: jax.Array, loop: tuple[Any, Any]) -> tuple[Any, Any]:
        carry, records = loop
        carry = _one_step(opt, grad_fn, carry)
        done = n + 1  # steps taken
        saved = (done % save_every == 0) | (done == steps)
        index = jnp.where(done == steps, (steps + save_every - 1) // save_every, done // save_every)
        records = jax.lax.cond(
            saved,
            lambda r: tree_map(lambda buf, x: buf.at[index].set(x), r, record(carry)),
            lambda r: r,
            records,
        )
        return carry, records

    carry = (theta0, state0, tree_map(jnp.zeros_like, theta0))
    first = record(carry)
    records = tree_map(lambda x: jnp.zeros((n_records,) + jnp.shape(x), x.dtype), first)
    records = tree_map(lambda buf, x: buf.at[0].set(x), records, first)
    return jax.lax.fori_loop(0, steps, one_step, (carry, records))[1]
