r"""The computation of one chunk of phase-diagram cells: jitted, vmapped, sharded, segmented.

One cell runs Adam (the discrete map of theory/adam.md §3, `adamflow.cascade_step` and
`adamflow.parameter_step`, or the leading-order flow of theory/adam.md §4, fixed-step RK4 on
`adamflow._flows.leading_field`) on one `adamflow.problems.Problem` for one (β₁, β₂), and
measures its normalized update :math:`u_n = \hat m_n/(\sqrt{\hat v_n}+\varepsilon)` (see
`adamflow.phase` for every measurement). A chunk is ``jit(vmap(cell))`` over stacked specs
(`adamflow.stack_specs`), its cells sharded over the given JAX devices.

The steps of a long chunk are scanned in `Schedule.segments` equal segments (`schedule`),
one jitted call each, the carry staying on the devices between calls, so that a progress
bar can move within the chunk; the per-step inputs (keys, declared gradient supports) are
drawn once per sweep (`ChunkRunner.tables`). Splitting the scan changes no number: every
segment runs the same compiled block of steps on the same carry.
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

from .. import rules
from .._flows import FlowState, flow_params, flow_update, initial_state, leading_field
from .._optimizers import Adam, AdamW, KAdam, cascade_step, init_state, parameter_step, stack_specs
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
#: The moment-rate conventions of the continuous flow (`adamflow._flows.flow_params`).
CONVENTIONS = ("exact", "euler", "paper")
#: At most this many segments (jitted calls, progress updates) per chunk.
SEGMENTS_PER_CHUNK = 16
#: Element-steps (cells × parameter elements × steps) of a segment, at least: about 0.3 s on
#: two CPU cores, so that a short chunk runs in one call and pays nothing for the progress.
SEGMENT_WORK = 2**26


class _Diagnostics(NamedTuple):
    """Measurements of one cell updated at the end of every block of steps, reduced over
    the parameter elements (scalars per cell) but for the per-element fields: the growth is
    kept as a product of ratios |u at the block end| / |u where the silence began or at the
    previous block end| per element, in mantissa/exponent form (``frexp``; the exponents
    summed over the elements), so that no logarithm is taken inside the loop; ``sample_m``
    and ``sample_v`` hold, per element, the raw moments at the first block end of its
    current silence (the block end at or after its last gradient); ``silence_*`` the sample
    of the cell's longest silence, its step and how many steps that silence lasted after
    it."""

    longest: jnp.ndarray
    grad_sq: jnp.ndarray
    grad_count: jnp.ndarray
    first_bad: jnp.ndarray
    growth_mantissa: PyTree  # per element
    growth_exponent: jnp.ndarray
    growth_steps: jnp.ndarray
    nonfinite_step: jnp.ndarray
    finite_max: jnp.ndarray
    sample_m: PyTree  # per element
    sample_v: PyTree  # per element
    silence_m: jnp.ndarray
    silence_v: jnp.ndarray
    silence_start: jnp.ndarray
    silence_length: jnp.ndarray


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
    nonfinite_step: jnp.ndarray
    finite_max_update: jnp.ndarray
    silence_m: jnp.ndarray
    silence_v: jnp.ndarray
    silence_start: jnp.ndarray
    silence_length: jnp.ndarray
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
    weight_decay: float = 0.0
    convention: str = "exact"


class Schedule(NamedTuple):
    """How a cell's ``steps`` are cut: ``blocks`` full blocks of `GROWTH_BLOCK` steps and a
    ``tail`` of fewer steps; the blocks are run in ``segments`` calls of ``segment_blocks``
    blocks each, and the last ``remainder`` blocks (with the tail) by the final call."""

    blocks: int
    tail: int
    segment_blocks: int
    segments: int
    remainder: int

    @property
    def segment_steps(self) -> int:
        """Steps per segment."""
        return self.segment_blocks * GROWTH_BLOCK


def schedule(steps: int, work_per_step: int = 0) -> Schedule:
    """Cut ``steps`` into blocks and the blocks into equal segments of at least
    `SEGMENT_WORK` element-steps each (``work_per_step``: the chunk's cells × parameter
    elements), at most `SEGMENTS_PER_CHUNK`; a segment length that divides the blocks is
    preferred (then the final call runs only the tail)."""
    blocks, tail = divmod(steps, GROWTH_BLOCK)
    if blocks == 0:
        return Schedule(0, tail, 0, 0, 0)
    count = min(SEGMENTS_PER_CHUNK, blocks, max(1, steps * work_per_step // SEGMENT_WORK))
    target = max(1, round(blocks / count))
    divisors = [d for d in range(max(1, target // 2), 2 * target + 1) if blocks % d == 0]
    size = min(divisors, key=lambda d: (abs(d - target), d)) if divisors else target
    segments, remainder = divmod(blocks, size)
    return Schedule(blocks, tail, size, segments, remainder)


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


def _support_table(config: Config) -> bool:
    """Whether the declared support of every step is drawn before the loop."""
    problem = config.problem
    return problem.support is not None and config.steps * problem.size <= _SUPPORT_TABLE_LIMIT


def _step_inputs(config: Config) -> dict[str, Any]:
    """Per-step inputs drawn before the loop, for every cell at once: the step numbers,
    their keys ``fold_in(PRNGKey(seed), n)`` and, when the problem declares one, the
    support of each step's gradient (so no random numbers are drawn twice in the loop)."""
    problem, steps = config.problem, config.steps
    numbers = jnp.arange(1, steps + 1, dtype=jnp.int32)
    keys = jax.vmap(lambda n: jax.random.fold_in(jax.random.PRNGKey(config.seed), n))(numbers)
    inputs: dict[str, Any] = {"n": numbers, "key": keys}
    if _support_table(config):
        inputs["seen"] = jax.vmap(problem.step_support)(keys, numbers)
    return inputs


def make_tables(config: Config, plan: Schedule) -> dict[str, Any]:
    """The per-step inputs of `_step_inputs`, cut into ``blocked`` (blocks × `GROWTH_BLOCK`
    steps) and ``tail``; with a declared support also, per block end, the last step at which
    each element had a gradient (``blocked_last_seen``, ``tail_last_seen``), read off the
    support once for every cell. Computed once per sweep, shared by every chunk."""
    inputs = _step_inputs(config)
    full = plan.blocks * GROWTH_BLOCK
    tables: dict[str, Any] = {
        "blocked": tree_map(
            lambda a: a[:full].reshape((plan.blocks, GROWTH_BLOCK) + a.shape[1:]), inputs
        ),
        "tail": tree_map(lambda a: a[full:], inputs),
    }
    if "seen" in inputs:
        last_seen = _last_seen(inputs["n"], inputs["seen"])
        tables["blocked_last_seen"] = tree_map(
            lambda a: a[GROWTH_BLOCK - 1 : full : GROWTH_BLOCK], last_seen
        )
        tables["tail_last_seen"] = tree_map(lambda a: a[config.steps - 1], last_seen)
    return tables


class CellFns(NamedTuple):
    """The three functions of one cell: ``init(spec) -> carry``,
    ``segment(spec, carry, tables, start) -> (carry, trace)`` (the blocks ``start`` to
    ``start + segment_blocks - 1``) and ``finish(spec, carry, tables) -> CellResult`` (the
    remaining blocks, the tail and the reductions; its ``trace`` holds the remaining
    blocks' points only)."""

    init: Callable[[KAdam], Any]
    segment: Callable[..., Any]
    finish: Callable[..., CellResult]


def make_cell_fns(config: Config, plan: Schedule) -> CellFns:
    r"""The functions of one (β₁, β₂) cell (`CellFns`): together they run ``steps`` steps of
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
    `CLEAN_FACTOR` ·ε (theory/stability.md §1-2), the longest silence and the moments at
    its start (for `adamflow.phase.predicted_peak`, theory/stability.md §2), the gradient
    scale, and whether the moments went non-finite (a non-finite gradient).
    """
    problem, lr, eps = config.problem, config.lr, config.eps

    def theta_start() -> PyTree:
        return tree_map(lambda x: jnp.asarray(x, dtype=jnp.float64), problem.theta0)

    def dynamics(spec: KAdam) -> tuple[Any, Callable[..., Any], Callable[[Any], Any]]:
        """The initial state, ``advance(state, n, grad_fn) -> (state, g, u)`` and
        ``parts(state) -> (theta, m, v)`` (raw moments of the first level)."""
        theta0 = theta_start()
        if config.dynamics == "discrete":

            def advance(state: Any, n: Any, grad_fn: Callable[[PyTree], PyTree]) -> Any:
                theta, cascade = state
                g = grad_fn(theta)
                cascade, u = cascade_step(spec, cascade, g)
                return (parameter_step(spec, theta, u), cascade), g, u

            def parts(state: Any) -> tuple[PyTree, PyTree, PyTree]:
                return state[0], state[1].m[0], state[1].v[0]

            return (theta0, init_state(1, theta0)), advance, parts

        params = flow_params(spec, config.convention)
        h = lr / config.substeps

        def advance_flow(state: Any, n: Any, grad_fn: Callable[[PyTree], PyTree]) -> Any:
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

        def parts_flow(state: Any) -> tuple[PyTree, PyTree, PyTree]:
            return state.theta, state.m[0], state.v[0]

        return initial_state(1, theta0, jnp.zeros_like), advance_flow, parts_flow

    def block_fn(spec: KAdam) -> Callable[[Any, Any], Any]:
        """``one_block(carry, (xs, last_seen)) -> (carry, trace point)``."""
        _, advance, parts = dynamics(spec)
        log_decay_v = rules.decay_per_step(spec.b2s[0])  # ln(1/β₂)

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
            if last_seen is not None:  # else read off the declared support per block
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
            largest = _tree_max(max_abs)
            bad = ~jnp.isfinite(largest)  # NaN and inf persist in max_abs
            first_bad = jnp.where(bad & (diag.first_bad < 0), n, diag.first_bad)
            _, m_now, v_now = parts(state)
            # v is an average of g²: it turns non-finite (and stays so) exactly when a
            # gradient, or its square, did; the largest update seen before is kept.
            bad_v = ~jnp.isfinite(_tree_max(v_now))
            nonfinite_step = jnp.where(bad_v & (diag.nonfinite_step < 0), n, diag.nonfinite_step)
            finite_max = jnp.where(bad_v, diag.finite_max, largest)
            abs_u = tree_map(jnp.abs, u)
            # Growth over the silent end of the block, since `anchor` (the last gradient
            # step in the block, or the block's start): counted when ε is negligible at
            # its end, sqrt(v̂) >= CLEAN_FACTOR·ε (v̂ only falls in a silence, so ε was
            # negligible throughout).
            v_floor = (CLEAN_FACTOR * eps) ** 2 * rules.bias_correction(n * log_decay_v)
            qualify = tree_map(
                lambda s, v, a, a0: (
                    (s >= 1) & (v >= v_floor) & (a > 0) & (a0 > 0) & jnp.isfinite(a)
                ),
                silence,
                v_now,
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
            # The moments at the first block end of each element's current silence (its
            # last gradient came within this block), and the cell's longest silence with
            # the sample at its start: what `predicted_peak` starts from.
            fresh = tree_map(lambda s: s < length, silence)
            sample_m = tree_map(
                lambda q, old, m: jnp.where(q, jnp.abs(m), old), fresh, diag.sample_m, m_now
            )
            sample_v = tree_map(lambda q, old, v: jnp.where(q, v, old), fresh, diag.sample_v, v_now)
            flat_silence = _flat(silence)
            pick = jnp.argmax(flat_silence)
            longer = flat_silence[pick] > diag.longest
            # Its sample was taken at the first block end at or after its last gradient.
            last = n - flat_silence[pick]
            start = jnp.minimum(GROWTH_BLOCK * jnp.ceil(last / GROWTH_BLOCK), config.steps)
            # The next segment starts here.
            inner = (state, max_abs, None if support_last_seen is not None else last_seen, abs_u)
            nonzero = tree_map(lambda gi: (gi != 0) & jnp.isfinite(gi), g)
            diag = _Diagnostics(
                longest=jnp.maximum(diag.longest, flat_silence[pick]),
                grad_sq=diag.grad_sq
                + _tree_sum(tree_map(lambda gi, q: jnp.where(q, gi * gi, 0.0), g, nonzero)),
                grad_count=diag.grad_count + _tree_sum(nonzero).astype(jnp.int32),
                first_bad=first_bad.astype(jnp.int32),
                growth_mantissa=tree_map(lambda x: jnp.frexp(x)[0], product),
                growth_exponent=diag.growth_exponent
                + _tree_sum(tree_map(lambda x: jnp.frexp(x)[1], product)).astype(jnp.int32),
                growth_steps=diag.growth_steps + _tree_sum(counted),
                nonfinite_step=nonfinite_step.astype(jnp.int32),
                finite_max=finite_max,
                sample_m=sample_m,
                sample_v=sample_v,
                silence_m=jnp.where(longer, _flat(sample_m)[pick], diag.silence_m),
                silence_v=jnp.where(longer, _flat(sample_v)[pick], diag.silence_v),
                silence_start=jnp.where(longer, start, diag.silence_start),
                silence_length=jnp.where(longer, n - start, diag.silence_length),
            )
            trace = jnp.log10(_tree_max(abs_u)) if config.record_trace else None
            return (inner, diag), trace

        return one_block

    def init(spec: KAdam) -> Any:
        state0, _, _ = dynamics(spec)
        theta0 = theta_start()
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
            nonfinite_step=jnp.asarray(-1, jnp.int32),
            finite_max=zero,
            sample_m=zeros,
            sample_v=zeros,
            silence_m=jnp.asarray(jnp.nan, jnp.float64),
            silence_v=jnp.asarray(jnp.nan, jnp.float64),
            silence_start=zero,
            silence_length=zero,
        )
        # With a declared support the last step with a gradient before each block end is
        # read off the support table once (unbatched), and the step loop carries no step
        # counter per element.
        last_seen = None if _support_table(config) else zeros
        return ((state0, zeros, last_seen, zeros), diag0)

    def segment(spec: KAdam, carry: Any, tables: dict[str, Any], start: Any) -> Any:
        xs = tree_map(
            lambda a: jax.lax.dynamic_slice_in_dim(a, start, plan.segment_blocks),
            tables["blocked"],
        )
        last_seen = tree_map(
            lambda a: jax.lax.dynamic_slice_in_dim(a, start, plan.segment_blocks),
            tables.get("blocked_last_seen"),
        )
        return jax.lax.scan(block_fn(spec), carry, (xs, last_seen))

    def finish(spec: KAdam, carry: Any, tables: dict[str, Any]) -> CellResult:
        one_block = block_fn(spec)
        trace = jnp.zeros((0,))
        if plan.remainder:
            first = plan.segments * plan.segment_blocks
            rest = tree_map(lambda a: a[first:], tables["blocked"])
            rest_last_seen = tree_map(lambda a: a[first:], tables.get("blocked_last_seen"))
            carry, rest_trace = jax.lax.scan(one_block, carry, (rest, rest_last_seen))
            if config.record_trace:
                trace = rest_trace
        if plan.tail:
            carry, _ = one_block(carry, (tables["tail"], tables.get("tail_last_seen")))
        (state, max_abs, _, _), diag = carry
        diverged = diag.first_bad >= 0
        theta = dynamics(spec)[2](state)[0]
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
            nonfinite_step=diag.nonfinite_step,
            finite_max_update=diag.finite_max,
            silence_m=diag.silence_m,
            silence_v=diag.silence_v,
            silence_start=diag.silence_start,
            silence_length=diag.silence_length,
            trace=trace,
        )

    return CellFns(init, segment, finish)


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


def _flat(tree: PyTree) -> jnp.ndarray:
    """Every element of ``tree`` in one 1-D array (leaves in tree order)."""
    leaves = [jnp.ravel(x) for x in tree_leaves(tree)]
    return leaves[0] if len(leaves) == 1 else jnp.concatenate(leaves)


@dataclass(frozen=True, eq=False)
class ChunkRunner:
    """The compiled functions of a sweep (`make_cell_fns`, vmapped over a chunk of stacked
    specs and jitted, the cells sharded over the devices): ``tables()`` draws the per-step
    inputs once (`make_tables`), ``init``, ``segment`` and ``finish`` run one chunk in
    ``schedule.segments + 1`` calls."""

    schedule: Schedule
    tables: Callable[[], dict[str, Any]]
    init: Callable[..., Any]
    segment: Callable[..., Any]
    finish: Callable[..., CellResult]


#: Compile options of the per-sweep tables on CPU devices (see `compile_chunk_fn`).
_TABLE_OPTIONS = {"xla_backend_optimization_level": 0}


@functools.lru_cache(maxsize=16)
def compile_chunk_fn(config: Config, devices: tuple[Any, ...], cells: int) -> ChunkRunner:
    """The `ChunkRunner` of ``config`` on ``devices`` for chunks of ``cells`` cells (cached,
    so a repeated sweep of the same problem object reuses the compiled code); with several
    devices the cell axis is sharded over them and the tables are replicated."""
    plan = schedule(config.steps, cells * config.problem.size)
    fns = make_cell_fns(config, plan)
    init = jax.vmap(fns.init)
    segment = jax.vmap(fns.segment, in_axes=(0, 0, None, None))
    finish = jax.vmap(fns.finish, in_axes=(0, 0, None))

    def tables() -> dict[str, Any]:
        return make_tables(config, plan)

    # The tables are integer hashing (the keys) and exact comparisons: no optimization level
    # changes a bit of them, and on a CPU XLA's optimizing passes over the unrolled Threefry
    # hash take longer than the computation (about 0.3 s of the default run's start).
    options = _TABLE_OPTIONS if all(d.platform == "cpu" for d in devices) else None
    if len(devices) == 1:
        return ChunkRunner(
            plan,
            jax.jit(tables, compiler_options=options),
            jax.jit(init),
            jax.jit(segment),
            jax.jit(finish),
        )
    mesh = jax.sharding.Mesh(np.asarray(devices), ("cells",))
    cells_sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("cells"))
    whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return ChunkRunner(
        plan,
        jax.jit(tables, out_shardings=whole, compiler_options=options),
        jax.jit(init, in_shardings=(cells_sharded,), out_shardings=cells_sharded),
        jax.jit(
            segment,
            in_shardings=(cells_sharded, cells_sharded, whole, whole),
            out_shardings=cells_sharded,
        ),
        jax.jit(
            finish, in_shardings=(cells_sharded, cells_sharded, whole), out_shardings=cells_sharded
        ),
    )


def compute_chunk(
    runner: ChunkRunner,
    config: Config,
    tables: dict[str, Any],
    b1s: np.ndarray,
    b2s: np.ndarray,
    padded: int,
    on_steps: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Run one chunk: the cells ``(b1s[i], b2s[i])`` as stacked Adam specs (AdamW ones with
    ``config.weight_decay > 0``; `adamflow.stack_specs`), padded to ``padded`` cells (a
    multiple of the device count) by repeating the last cell; returns the unpadded
    `CellResult` fields as NumPy arrays.

    ``on_steps(k)`` is called as the chunk's cells finish each further ``k`` steps (once
    per segment: segment ``i`` is reported when it is done, while segment ``i + 1`` runs)."""
    size = b1s.size
    pad = padded - size
    b = np.concatenate([b1s, np.full(pad, b1s[-1])])
    g = np.concatenate([b2s, np.full(pad, b2s[-1])])
    if config.weight_decay > 0:
        cells = [
            AdamW(config.lr, b1, b2, config.eps, config.weight_decay)
            for b1, b2 in zip(b, g, strict=True)
        ]
    else:
        cells = [Adam(config.lr, b1, b2, config.eps) for b1, b2 in zip(b, g, strict=True)]
    specs = stack_specs(cells)
    plan = runner.schedule
    carry = runner.init(specs)
    traces = []
    running = None
    for index in range(plan.segments):
        carry, trace = runner.segment(specs, carry, tables, np.int32(index * plan.segment_blocks))
        if running is not None:
            jax.block_until_ready(running)
            if on_steps is not None:
                on_steps(plan.segment_steps)
        running = carry
        traces.append(trace)
    result = runner.finish(specs, carry, tables)
    if running is not None:
        jax.block_until_ready(running)
        if on_steps is not None:
            on_steps(plan.segment_steps)
    out = {name: np.asarray(value)[:size] for name, value in result._asdict().items()}
    if on_steps is not None:
        on_steps(config.steps - plan.segments * plan.segment_steps)
    if config.record_trace and traces:
        out["trace"] = np.concatenate([np.asarray(t)[:size] for t in traces] + [out["trace"]], 1)
    return out
