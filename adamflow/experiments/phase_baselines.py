r"""Baselines the phase-diagram sweep is benchmarked against (``scripts/bench.py``).

- `optax_loop_point`: what a user would write without adamflow -- one (β₁, β₂) point, a
  Python loop of jitted ``optax.adam`` steps on the problem's gradient, tracking max|u|.
- `minimal_kernel`: the practical limit of the machine -- a hand-written, fused
  ``lax.scan`` of the Adam recurrence vmapped over the same grid, measuring nothing but
  max|u| (no divergence step, growth or silence bookkeeping).

Both use the same gradient randomness as `adamflow.phase_diagram` (the key of step ``n``
is ``fold_in(PRNGKey(seed), n)``), so their max|u| equal the sweep's ``max_update`` to
round-off; the tests check it. Adam here is written out by hand on purpose: these are
independent implementations to compare with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..problems import Problem

tree_map = jax.tree_util.tree_map
tree_leaves = jax.tree_util.tree_leaves


def element_steps(problem: Problem, cells: int, steps: int) -> int:
    """Work of a sweep in parameter-element steps: ``problem.size · cells · steps`` (the
    unit of the benchmark's throughput)."""
    return int(problem.size) * int(cells) * int(steps)


def optax_loop_point(
    problem: Problem,
    b1: float,
    b2: float,
    *,
    steps: int,
    lr: float,
    eps: float = 1e-8,
    seed: int = 0,
) -> float:
    r"""max over steps and coordinates of :math:`|u_n|` for one (β₁, β₂), with ``steps``
    jitted ``optax.adam(lr, b1=β₁, b2=β₂, eps=ε)`` updates driven from Python
    (:math:`u_n = -\Delta\theta_n/\eta`, the discrete Adam of theory/adam.md §3). Runs in
    float64 (``jax.enable_x64``)."""
    with jax.enable_x64(True):
        optimizer = optax.adam(lr, b1=b1, b2=b2, eps=eps)
        theta = tree_map(lambda x: jnp.asarray(x, jnp.float64), problem.theta0)
        state = optimizer.init(theta)
        base_key = jax.random.PRNGKey(seed)

        @jax.jit
        def step(theta: Any, state: Any, n: Any) -> tuple[Any, Any, Any]:
            g = problem.step_gradient(theta, jax.random.fold_in(base_key, n), n)
            updates, state = optimizer.update(g, state, theta)
            largest = jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in tree_leaves(updates)]))
            return optax.apply_updates(theta, updates), state, largest / lr

        largest = 0.0
        for n in range(1, steps + 1):
            theta, state, step_max = step(theta, state, n)
            largest = max(largest, float(step_max))
        return largest


def minimal_kernel(
    problem: Problem, *, steps: int, lr: float, eps: float = 1e-8, seed: int = 0
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    r"""A jitted ``(b1s, b2s) -> max|u|`` over flat arrays of cells: Adam written out
    (theory/adam.md §3: :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`,
    :math:`v \leftarrow \beta_2 v + (1-\beta_2)g^2`,
    :math:`u = \frac{m/(1-\beta_1^n)}{\sqrt{v/(1-\beta_2^n)}+\varepsilon}`,
    :math:`\theta \leftarrow \theta - \eta u`) in one ``lax.scan`` under ``vmap``, in
    float64; the step keys are drawn before the loop, as in the sweep."""
    base_key = jax.random.PRNGKey(seed)

    def cell(b1: Any, b2: Any) -> Any:
        theta0 = tree_map(lambda x: jnp.asarray(x, jnp.float64), problem.theta0)
        zeros = tree_map(jnp.zeros_like, theta0)

        def body(carry: Any, x: Any) -> Any:
            theta, m, v, largest, b1_n, b2_n = carry
            n, key = x
            g = problem.step_gradient(theta, key, n)
            m = tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
            v = tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
            b1_n, b2_n = b1_n * b1, b2_n * b2
            u = tree_map(lambda m, v: (m / (1 - b1_n)) / (jnp.sqrt(v / (1 - b2_n)) + eps), m, v)
            theta = tree_map(lambda p, u: p - lr * u, theta, u)
            largest = tree_map(lambda a, u: jnp.maximum(a, jnp.abs(u)), largest, u)
            return (theta, m, v, largest, b1_n, b2_n), None

        one = jnp.ones_like(b1)
        carry = (theta0, zeros, zeros, zeros, one, one)
        numbers = jnp.arange(1, steps + 1, dtype=jnp.int32)
        keys = jax.vmap(lambda n: jax.random.fold_in(base_key, n))(numbers)
        carry, _ = jax.lax.scan(body, carry, (numbers, keys))
        return jnp.max(jnp.stack([jnp.max(x) for x in tree_leaves(carry[3])]))

    batched = jax.jit(jax.vmap(cell))

    def run(b1s: np.ndarray, b2s: np.ndarray) -> np.ndarray:
        with jax.enable_x64(True):
            return np.asarray(batched(jnp.asarray(b1s), jnp.asarray(b2s)))

    return run
