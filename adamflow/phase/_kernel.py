r"""The computation of one chunk of phase-diagram cells: jitted, vmapped, sharded.

One cell runs Adam (the discrete map of theory/adam.md §3, `adamflow.cascade_step` and
`adamflow.parameter_step`, or the leading-order flow of theory/adam.md §4, fixed-step RK4 on
`adamflow._flows.leading_field`) on one `adamflow.problems.Problem` for one (β₁, β₂), and
measures its normalized update :math:`u_n = \hat m_n/(\sqrt{\hat v_n}+\varepsilon)` (see
`adamflow.phase` for every measurement). A chunk is ``jit(vmap(cell))`` over stacked specs
(`adamflow.stack_specs`), its cells sharded over the given JAX devices.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import _rules
from .._flows import FlowState, flow_params, flow_update, initial_state, leading_field
from .._optimizers import Adam, KAdam, cascade_step, init_state, parameter_step, stack_specs
from .._trajectory import PyTree
from ..problems import Problem

tree_map = jax.tree_util.tree_map
tree_leaves = jax.tree_util.tree_leaves

#: Steps per block of the growth measurement (and per point of a recorded trace).
GROWTH_BLOCK = 8
#: ε is negligible in a step's growth when sqrt(v̂) >= CLEAN_FACTOR·ε (≤ 0.1% of the ratio).
CLEAN_FACTOR = 1e3
#: The dynamics a sweep can run: the discrete optimizer or its leading-order flow.
DYNAMICS = ("discrete", "continuous")


class _Diagnostics(NamedTuple):
    """Measurements of one cell updated at the end of every block of steps, reduced over
    the parameter elements (scalars per cell) but for one: the growth is kept as a product
    of ratios |u at the block end| / |u where the silence began or at the previous block
    end| per element, in mantissa/exponent form (``frexp``; the exponents summed over the
    elements), so that no logarithm is taken inside the loop."""

    longest: jnp.ndarray
    grad_sq: jnp.ndarray
    grad_count: jnp.ndarray
    first_bad: jnp.ndarray
    growth_mantissa: PyTree  # per element
    growth_exponent: jnp.ndarray
    growth_steps: jnp.ndarray


class CellResult(NamedTuple):
    """What one cell returns (reduced over parameter elements)."""

    max_update: jnp.ndarray
    diverged_step: jnp.ndarray
    growth_sum: jnp.ndarray
    growth_steps: jnp.ndarray
    longest_silence: jnp.ndarray
    grad_sq_sum: jnp.ndarray
    grad_count: jnp.ndarray
    final_loss: jnp.ndarray
    trace: jnp.ndarray


@dataclass(frozen=True)
class Config:
    """Everything static about a sweep (hashable: compiled sweeps are cached on it)."""

    problem: Problem
    steps: int
    lr: float
    eps: float
    seed: int
    dynamics: str
    substeps: int
    record_trace: bool


def _rk4(
    field_fn: Callable[[Any, FlowState], FlowState], t: Any, y: FlowState, h: Any
) -> FlowState:
    """One classical (fourth-order) Runge-Kutta step of ``dy/dt = field_fn(t, y)``."""

    def axpy(a: Any, x: FlowState, y: FlowState) -> FlowState:
        return tree_map(lambda xi, yi: yi + a * xi, x, y)

    k1 = field_fn(t, y)
    k2 = field_fn(t + h / 2, axpy(h / 2, k1, y))
    k3 = field_fn(t + h / 2, axpy(h / 2, k2, y))
    k4 = field_fn(t + h, axpy(h, k3, y))
    return tree_map(
        lambda y0, a, b, c, d: y0 + (h / 6) * (a + 2 * b + 2 * c + d), y, k1, k2, k3, k4
    )


#: Precompute the declared gradient support for all steps when it has at most this many
#: entries (else it is drawn inside the loop).
_SUPPORT_TABLE_LIMIT = 20_000_000


def _step_inputs(config: Config) -> dict[str, Any]:
    """Per-step inputs drawn before the loop, for every cell at once: the step numbers,
    their keys ``fold_in(PRNGKey(seed), n)`` and, when the problem declares one, the
    support of each step's gradient (so no random numbers are drawn twice in the loop)."""
    problem, steps = config.problem, config.steps
    numbers = jnp.arange(1, steps + 1, dtype=jnp.int32)
    keys = jax.vmap(lambda n: jax.random.fold_in(jax.random.PRNGKey(config.seed), n))(numbers)
    inputs: dict[str, Any] = {"n": numbers, "key": keys}
    if problem.support is not None and steps * problem.size <= _SUPPORT_TABLE_LIMIT:
        inputs["seen"] = jax.vmap(problem.step_support)(keys, numbers)
    return inputs


def make_cell_fn(config: Config) -> Callable[[KAdam], CellResult]:
    r"""The function of one (β₁, β₂) cell, ``spec -> CellResult``: run ``steps`` steps of
    Adam (theory/adam.md §3: :math:`m_n = \beta_1 m_{n-1} + (1-\beta_1)g_n`,
    :math:`v_n = \beta_2 v_{n-1} + (1-\beta_2)g_n^2`,
    :math:`u_n = \hat m_n/(\sqrt{\hat v_n}+\varepsilon)`, :math:`\theta_n = \theta_{n-1} -
    \eta u_n`) or of its leading-order flow (theory/adam.md §4, RK4 with ``substeps``
    steps per η, the gradient of step n held over :math:`[(n-1)\eta, n\eta)`), and return
    its measurements.

    Steps are scanned in blocks of `GROWTH_BLOCK`; per step only the running max of |u|
    and the last step at which each coordinate received a gradient are updated (the loop
    is memory bound), and the block's last step feeds the sampled measurements: the
    growth of :math:`\ln|u|` over silent steps while :math:`\sqrt{\hat v} \ge`
    `CLEAN_FACTOR` ·ε (theory/stability.md §1-2), the longest silence, the gradient scale.
    """
    problem, steps, lr, eps = config.problem, config.steps, config.lr, config.eps
    n_blocks, tail = divmod(steps, GROWTH_BLOCK)

    def cell(spec: KAdam) -> CellResult:
        theta0 = tree_map(lambda x: jnp.asarray(x, dtype=jnp.float64), problem.theta0)
        log_decay_v = _rules.decay_per_step(spec.b2s[0])  # ln(1/β₂)
        if config.dynamics == "discrete":
            state0: Any = (theta0, init_state(1, theta0))

            def advance(state: Any, n: Any, grad_fn: Callable[[PyTree], PyTree]) -> Any:
                theta, cascade = state
                g = grad_fn(theta)
                cascade, u = cascade_step(spec, cascade, g)
                return (parameter_step(spec, theta, u), cascade), g, u

            def parts(state: Any) -> tuple[PyTree, PyTree]:
                return state[0], state[1].v[0]

        else:
            params = flow_params(spec, "exact")
            state0 = initial_state(1, theta0, jnp.zeros_like)
            h = lr / config.substeps

            def advance(state: Any, n: Any, grad_fn: Callable[[PyTree], PyTree]) -> Any:
                g = grad_fn(state.theta)
                t0 = (n - 1) * lr

                def field_fn(t: Any, y: FlowState) -> FlowState:
                    return leading_field(t, y, params, grad_fn)

                def substep(y: FlowState, j: Any) -> tuple[FlowState, None]:
                    return _rk4(field_fn, t0 + j * h, y, h), None

                state, _ = jax.lax.scan(substep, state, jnp.arange(config.substeps))
                # The update at the end of the step, when the moments have taken in g_n
                # (as the discrete u_n has).
                u = flow_update(t0 + lr, state, params, grad_fn)
                return state, g, u

            def parts(state: Any) -> tuple[PyTree, PyTree]:
                return state.theta, state.v[0]

        def one_step(carry: Any, x: dict[str, Any]) -> tuple[Any, PyTree, PyTree]:
            state, max_abs, last_seen, anchor = carry
            n, key = x["n"], x["key"]

            def grad_fn(theta: PyTree) -> PyTree:
                return problem.step_gradient(theta, key, n)

            state, g, u = advance(state, n, grad_fn)
            max_abs = tree_map(lambda a, ui: jnp.maximum(a, jnp.abs(ui)), max_abs, u)
            # With a declared support the silences are the same in every cell (drawn before
            # the loop, unbatched); otherwise they are read off this cell's gradient.
            seen = x["seen"] if "seen" in x else tree_map(lambda gi: gi != 0, g)
            if last_seen is not None:  # else read off the declared support after the loop
                step = n.astype(jnp.float64)
                last_seen = tree_map(lambda s, q: jnp.where(q, step, s), last_seen, seen)
            # |u| where the current silence began (a gradient step, or the last block end).
            anchor = tree_map(lambda a, q, ui: jnp.where(q, jnp.abs(ui), a), anchor, seen, u)
            return (state, max_abs, last_seen, anchor), g, u

        def one_block(carry: Any, block: tuple[dict[str, Any], Any]) -> Any:
            """The block's steps, then its measurements at its last step ``n``."""
            inner, diag = carry
            xs, support_last_seen = block
            length = xs["n"].shape[0]
            head = tree_map(lambda a: a[:-1], xs)
            inner, _ = jax.lax.scan(lambda c, x: (one_step(c, x)[0], None), inner, head)
            inner, g, u = one_step(inner, tree_map(lambda a: a[-1], xs))
            n = xs["n"][-1]
            state, max_abs, last_seen, anchor = inner
            if last_seen is None:
                last_seen = support_last_seen
            silence = tree_map(lambda s: jnp.where(s > 0, n - s, 0.0), last_seen)
            bad = ~jnp.isfinite(_tree_max(max_abs))  # NaN and inf persist in max_abs
            first_bad = jnp.where(bad & (diag.first_bad < 0), n, diag.first_bad)
            abs_u = tree_map(jnp.abs, u)
            # Growth over the silent end of the block, since `anchor` (the last gradient
            # step in the block, or the block's start): counted when ε is negligible at
            # its end, sqrt(v̂) >= CLEAN_FACTOR·ε (v̂ only falls in a silence, so ε was
            # negligible throughout).
            v_floor = (CLEAN_FACTOR * eps) ** 2 * _rules.bias_correction(n * log_decay_v)
            qualify = tree_map(
                lambda s, v, a, a0: (
                    (s >= 1) & (v >= v_floor) & (a > 0) & (a0 > 0) & jnp.isfinite(a)
                ),
                silence,
                parts(state)[1],
                abs_u,
                anchor,
            )
            product = tree_map(
                lambda q, pm, a, a0: jnp.where(q, pm * (a / jnp.where(q, a0, 1.0)), pm),
                qualify,
                diag.growth_mantissa,
                abs_u,
                anchor,
            )
            counted = tree_map(
                lambda q, s: jnp.where(q, jnp.minimum(s, length), 0.0), qualify, silence
            )
            # The next segment starts here.
            inner = (state, max_abs, None if support_last_seen is not None else last_seen, abs_u)
            nonzero = tree_map(lambda gi: (gi != 0) & jnp.isfinite(gi), g)
            diag = _Diagnostics(
                longest=jnp.maximum(diag.longest, _tree_max(silence)),
                grad_sq=diag.grad_sq
                + _tree_sum(tree_map(lambda gi, q: jnp.where(q, gi * gi, 0.0), g, nonzero)),
                grad_count=diag.grad_count + _tree_sum(nonzero).astype(jnp.int32),
                first_bad=first_bad.astype(jnp.int32),
                growth_mantissa=tree_map(lambda x: jnp.frexp(x)[0], product),
                growth_exponent=diag.growth_exponent
                + _tree_sum(tree_map(lambda x: jnp.frexp(x)[1], product)).astype(jnp.int32),
                growth_steps=diag.growth_steps + _tree_sum(counted),
            )
            trace = jnp.log10(_tree_max(abs_u)) if config.record_trace else None
            return (inner, diag), trace

        inputs = _step_inputs(config)
        zeros = tree_map(jnp.zeros_like, theta0)
        zero = jnp.asarray(0.0, jnp.float64)
        diag0 = _Diagnostics(
            longest=zero,
            grad_sq=zero,
            grad_count=jnp.asarray(0, jnp.int32),
            first_bad=jnp.asarray(-1, jnp.int32),
            growth_mantissa=tree_map(jnp.ones_like, theta0),
            growth_exponent=jnp.asarray(0, jnp.int32),
            growth_steps=zero,
        )
        ends = [GROWTH_BLOCK * (k + 1) - 1 for k in range(n_blocks)] + ([steps - 1] * bool(tail))
        if "seen" in inputs:
            # With a declared support the silences are the same in every cell: the last
            # step with a gradient before each block end is read off the support table
            # once (unbatched), and the step loop carries no step counter per element.
            last_seen_table = _last_seen(inputs["n"], inputs["seen"])
            block_last_seen = tree_map(lambda a: a[jnp.asarray(ends)], last_seen_table)
            carry = ((state0, zeros, None, zeros), diag0)
        else:
            block_last_seen = None
            carry = ((state0, zeros, zeros, zeros), diag0)
        blocked = tree_map(
            lambda a: a[: n_blocks * GROWTH_BLOCK].reshape((n_blocks, GROWTH_BLOCK) + a.shape[1:]),
            inputs,
        )

        def block_of(table: Any, index: Any) -> Any:
            return None if table is None else tree_map(lambda a: a[index], table)

        carry, trace = jax.lax.scan(
            one_block, carry, (blocked, block_of(block_last_seen, slice(0, n_blocks)))
        )
        if tail:
            tail_inputs = tree_map(lambda a: a[n_blocks * GROWTH_BLOCK :], inputs)
            carry, _ = one_block(carry, (tail_inputs, block_of(block_last_seen, -1)))
        (state, max_abs, _, _), diag = carry
        diverged = diag.first_bad >= 0
        theta = parts(state)[0]
        loss = (
            jnp.asarray(problem.loss(theta), jnp.float64)
            if problem.loss is not None
            else jnp.asarray(jnp.nan)
        )
        return CellResult(
            max_update=jnp.where(diverged, jnp.inf, _tree_max(max_abs)),
            diverged_step=diag.first_bad,
            growth_sum=_tree_sum(tree_map(jnp.log, diag.growth_mantissa))
            + diag.growth_exponent * math.log(2.0),
            growth_steps=diag.growth_steps,
            longest_silence=diag.longest.astype(jnp.int32),
            grad_sq_sum=diag.grad_sq,
            grad_count=diag.grad_count,
            final_loss=loss,
            trace=trace if config.record_trace else jnp.zeros((0,)),
        )

    return cell


def _last_seen(numbers: jnp.ndarray, seen: PyTree) -> PyTree:
    """For every step ``n`` (axis 0) and element: the last step ``<= n`` at which the element
    had a gradient (``seen``), 0 when none yet (a running maximum over the steps)."""

    def running(q: jnp.ndarray) -> jnp.ndarray:
        step = numbers.astype(jnp.float64).reshape((-1,) + (1,) * (q.ndim - 1))
        return jax.lax.cummax(jnp.where(q, step, 0.0), axis=0)

    return tree_map(running, seen)


def _tree_max(tree: PyTree) -> jnp.ndarray:
    return jnp.max(jnp.stack([jnp.max(x) for x in tree_leaves(tree)]))


def _tree_sum(tree: PyTree) -> jnp.ndarray:
    return sum(jnp.sum(x) for x in tree_leaves(tree))  # type: ignore[return-value]


@functools.lru_cache(maxsize=16)
def compile_chunk_fn(config: Config, devices: tuple[Any, ...]) -> Callable[..., CellResult]:
    """``spec -> CellResult`` over a chunk of stacked specs: jit of the vmapped cell, with the
    cell axis sharded over ``devices`` when there are several (cached, so a repeated sweep
    of the same problem object reuses the compiled code)."""
    batched = jax.vmap(make_cell_fn(config))
    if len(devices) == 1:
        return jax.jit(batched)
    mesh = jax.sharding.Mesh(np.asarray(devices), ("cells",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("cells"))
    return jax.jit(batched, in_shardings=(sharding,), out_shardings=sharding)


def compute_chunk(
    chunk_fn: Callable[..., CellResult],
    config: Config,
    b1s: np.ndarray,
    b2s: np.ndarray,
    padded: int,
) -> dict[str, np.ndarray]:
    """Run one chunk: the cells ``(b1s[i], b2s[i])`` as stacked Adam specs
    (`adamflow.stack_specs`), padded to ``padded`` cells (a multiple of the device count) by
    repeating the last cell; returns the unpadded `CellResult` fields as NumPy arrays."""
    size = b1s.size
    pad = padded - size
    b = np.concatenate([b1s, np.full(pad, b1s[-1])])
    g = np.concatenate([b2s, np.full(pad, b2s[-1])])
    specs = stack_specs([Adam(config.lr, b1, b2, config.eps) for b1, b2 in zip(b, g, strict=True)])
    result = chunk_fn(specs)
    return {name: np.asarray(value)[:size] for name, value in result._asdict().items()}
