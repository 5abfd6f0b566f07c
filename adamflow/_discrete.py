"""The discrete optimizers (theory/adam.md §3, theory/kadam.md §1): the reference every flow
is compared with."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._optimizers import CascadeState, KAdam, cascade_step, init_state, parameter_step
from ._trajectory import PyTree, Trajectory, first_nonfinite_index
from ._validate import check_int

tree_map = jax.tree_util.tree_map


def resolve_grad(
    loss: Callable[[PyTree], Any] | None, grad: Callable[[PyTree], PyTree] | None
) -> Callable[[PyTree], PyTree]:
    """``grad`` if given, else ``jax.grad(loss)``; one of them is required."""
    if grad is not None:
        if not callable(grad):
            raise TypeError(f"grad must be callable, got {type(grad).__name__}")
        return grad
    if loss is None or not callable(loss):
        raise TypeError("loss must be a callable scalar function of the parameters (or pass grad=)")
    return _cached_grad(loss)


@functools.lru_cache(maxsize=128)
def _cached_grad(loss: Callable[[PyTree], Any]) -> Callable[[PyTree], PyTree]:
    # The same loss gives the same gradient function, so jit caches keyed on it hit.
    return jax.grad(loss)


def _as_float_tree(theta0: PyTree) -> PyTree:
    leaves = jax.tree_util.tree_leaves(theta0)
    if not leaves:
        raise ValueError("theta0 must contain at least one array")
    return tree_map(lambda x: jnp.asarray(x, dtype=jnp.result_type(float)), theta0)


def run_discrete(
    opt: KAdam,
    loss: Callable[[PyTree], Any] | None,
    theta0: PyTree,
    steps: int,
    *,
    grad: Callable[[PyTree], PyTree] | None = None,
    save_every: int = 1,
) -> Trajectory:
    r"""Run the discrete optimizer for ``steps`` steps from ``theta0`` (theory/adam.md §3,
    theory/kadam.md §1).

    :math:`g_n = \nabla L(\theta_{n-1})`, the k-level cascade gives :math:`u^{(k)}_n`, and
    :math:`\theta_n = \theta_{n-1} - \eta(u^{(k)}_n + \lambda\theta_{n-1})`. Equal to
    ``optax.adamw`` for ``AdamW`` specs, to round-off.

    Saves steps ``0, save_every, 2·save_every, …`` and always the last step. ``grad``
    (a JAX-traceable function of the parameters) replaces ``jax.grad(loss)``.
    A run that goes non-finite returns ``success=False`` and names the first such step.
    """
    if not isinstance(opt, KAdam):
        raise TypeError(f"opt must be an adamflow spec (Adam, AdamW, KAdam), got {opt!r}")
    steps = check_int("steps", steps, 1)
    save_every = check_int("save_every", save_every, 1)
    grad_fn = resolve_grad(loss, grad)
    theta0 = _as_float_tree(theta0)
    saved_states, saved_steps = _run_scan(grad_fn, opt, opt.k, theta0, steps, save_every)
    theta, m, v, u = saved_states
    steps_arr = np.asarray(saved_steps, dtype=np.int64)
    bad = first_nonfinite_index(theta)
    message = "ok" if bad is None else f"non-finite parameters at step {int(steps_arr[bad])}"
    return Trajectory(
        ts=steps_arr * opt.lr,
        steps=steps_arr,
        theta=theta,
        m=m,
        v=v,
        u=u,
        stats={"num_steps": steps, "grad_evals": steps},
        success=bad is None,
        message=message,
        kind="discrete",
    )


def _run_scan(
    grad_fn: Callable[[PyTree], PyTree],
    opt: KAdam,
    k: int,
    theta0: PyTree,
    steps: int,
    save_every: int,
) -> tuple[Any, list[int]]:
    """Scan ``steps`` steps, saving every ``save_every`` and the last; index 0 is the start."""
    n_blocks, tail = divmod(steps, save_every)
    saved_steps = [i * save_every for i in range(n_blocks + 1)] + ([steps] if tail else [])
    state0 = init_state(k, theta0)
    record0 = (theta0, state0.m, state0.v, tree_map(jnp.zeros_like, theta0))
    records = _scan_jit(grad_fn, n_blocks, save_every, tail, opt, theta0, state0)
    stacked = tree_map(lambda a, b: jnp.concatenate([a[None], b], axis=0), record0, records)
    return stacked, saved_steps


@jax.jit(static_argnums=(0, 1, 2, 3))
def _scan_jit(
    grad_fn: Callable[[PyTree], PyTree],
    n_blocks: int,
    block: int,
    tail: int,
    opt: KAdam,
    theta0: PyTree,
    state0: CascadeState,
) -> Any:
    def one_step(carry: tuple[PyTree, CascadeState, PyTree], _: None) -> Any:
        theta, state, _u = carry
        state, u = cascade_step(opt, state, grad_fn(theta))
        return (parameter_step(opt, theta, u), state, u), None

    def record(carry: Any) -> Any:
        theta, state, u = carry
        return (theta, state.m, state.v, u)

    def one_block(carry: Any, _: None) -> Any:
        carry, _ = jax.lax.scan(one_step, carry, None, length=block)
        return carry, record(carry)

    carry = (theta0, state0, tree_map(jnp.zeros_like, theta0))
    carry, blocks = jax.lax.scan(one_block, carry, None, length=n_blocks)
    if tail:
        carry, _ = jax.lax.scan(one_step, carry, None, length=tail)
        blocks = tree_map(lambda a, b: jnp.concatenate([a, b[None]], axis=0), blocks, record(carry))
    return blocks
