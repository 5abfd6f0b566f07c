r"""Phase diagrams of Adam over (β₁, β₂): where the update stays bounded (THEORY.md §4).

For every cell of a grid of (β₁, β₂) the sweep runs Adam (the discrete recurrence, or its
leading-order flow) on one `adamflow.problems.Problem` and measures how large the
normalized update :math:`u_n = \hat m_n/(\sqrt{\hat v_n}+\varepsilon)` gets. Theory:
:math:`|u|` is bounded iff :math:`\beta_2 > \beta_1^2`; outside, a coordinate whose gradient
vanishes sees :math:`|u|` grow by :math:`\ln(\beta_1/\sqrt\beta_2)` per step until
:math:`\sqrt{\hat v}` falls to ε.

How the grid is computed: one jitted ``vmap`` over the cells of a chunk, ``lax.scan`` over
the steps, the chunk's cells sharded over all JAX devices (``jax.sharding``); the discrete
step is `adamflow._discrete.cascade_step`, the flow is `adamflow._flows.leading_field`
(fixed-step RK4), so no formula is written here twice. Every cell sees the same gradient
randomness (the key of step ``n`` is ``fold_in(PRNGKey(seed), n)``), so cells differ only
by (β₁, β₂). Each finished chunk can be written to a checkpoint folder; a rerun with the
same parameters loads finished chunks instead of recomputing them.

What is measured in each cell (arrays indexed ``[b1, b2]``):

- ``max_update``: :math:`\max_{n,i}|u_{n,i}|`, ``inf`` for a cell that went non-finite;
- ``diverged`` / ``diverged_step``: whether an update went non-finite, and the end of the
  `GROWTH_BLOCK`-step block in which it first did (-1: never);
- ``growth_rate``: the measured change of :math:`\ln|u|` per step over the silent stretches
  (no gradient for that coordinate) during which ε stays negligible,
  :math:`\sqrt{\hat v}\ge` `CLEAN_FACTOR` ·ε, sampled at the end of every block; NaN
  where there were none. Theory: ``theory_growth`` :math:`=\ln(\beta_1/\sqrt\beta_2)`;
- ``longest_silence``: the longest stretch of steps without a gradient for a coordinate
  that had already received one (to within a block); ``grad_scale``: the RMS of the
  non-zero gradients (sampled once per block);
- ``final_loss``: the problem's loss at the last parameters (NaN without a loss).

The verdicts: a cell is *measured stable* when it did not diverge and ``max_update`` is at
most ``threshold``; *theory stable* when :math:`\beta_2 > \beta_1^2`
(`adamflow.stability.is_stable`). A theory-unstable cell lies in the *band* when the largest
update this run could show in theory, `predicted_peak` (growth by :math:`\beta_1/\sqrt\beta_2`
per step for at most ``longest_silence`` steps, capped where :math:`\sqrt{\hat v}` reaches
ε), stays below ``threshold`` × `BAND_MARGIN`: there the run cannot tell an unstable cell
from a stable one. ``agreement`` is the fraction of cells outside the band where the two
verdicts agree; ``band_cells`` counts the band.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from . import _io, _rules, stability
from ._flows import FlowState, flow_params, flow_update, initial_state, leading_field
from ._optimizers import Adam, KAdam, cascade_step, init_state, parameter_step, stack_specs
from ._trajectory import PyTree
from ._validate import check_int, check_positive
from .problems import Problem

tree_map = jax.tree_util.tree_map
tree_leaves = jax.tree_util.tree_leaves

#: Steps per block of the growth measurement (and per point of a recorded trace).
GROWTH_BLOCK = 8
#: ε is negligible in a step's growth when sqrt(v̂) >= CLEAN_FACTOR·ε (≤ 0.1% of the ratio).
CLEAN_FACTOR = 1e3
#: A theory-unstable cell is decidable when the ε-capped model peak reaches this many
#: times the threshold; below, it lies in the band.
BAND_MARGIN = 10.0
#: Default number of cells per chunk (one compiled call, one checkpoint file).
DEFAULT_CHUNK = 512
DYNAMICS = ("discrete", "continuous")
_CHECKPOINT_FORMAT = "adamflow.phase_checkpoint/1"


# ----------------------------------------------------------------------------- validation


def _check_grid(name: str, values: Any) -> np.ndarray:
    """A non-empty, finite, strictly monotone 1-D grid inside [0, 1)."""
    try:
        grid = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 1-D sequence of numbers, got {values!r}") from None
    if grid.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence, got shape {grid.shape}")
    if grid.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.all(np.isfinite(grid)) or np.any(grid < 0.0) or np.any(grid >= 1.0):
        bad = grid[~(np.isfinite(grid) & (grid >= 0.0) & (grid < 1.0))][0]
        raise ValueError(f"every value of {name} must be in [0, 1), got {bad!r}")
    if grid.size > 1:
        steps = np.diff(grid)
        if not (np.all(steps > 0) or np.all(steps < 0)):
            raise ValueError(f"{name} must be strictly increasing or strictly decreasing")
    return grid


def _resolve_devices(devices: Any) -> list[Any]:
    if devices is None:
        return list(jax.devices())
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        available = jax.devices()
        if not 1 <= devices <= len(available):
            raise ValueError(f"devices must be between 1 and {len(available)}, got {devices}")
        return list(available[: int(devices)])
    device_list = list(devices)
    if not device_list:
        raise ValueError("devices must not be empty")
    return device_list


# ----------------------------------------------------------------------------- theory


def theory_growth(b1: Any, b2: Any) -> np.ndarray:
    r"""Per-step change of :math:`\ln|u|` while a coordinate's gradient is zero (ε
    negligible, bias corrections settled): :math:`\ln(\beta_1/\sqrt\beta_2) =
    \tfrac12\ln(1/\beta_2) - \ln(1/\beta_1)` -- growth where :math:`\beta_2 < \beta_1^2`, decay
    elsewhere (its positive part is `adamflow.stability.growth_rate`)."""
    b1, b2 = np.asarray(b1, dtype=np.float64), np.asarray(b2, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 0.5 * _rules.decay_per_step(b2, _rules.NUMPY_OPS) - _rules.decay_per_step(
            b1, _rules.NUMPY_OPS
        )


def predicted_peak(b1: Any, b2: Any, grad_scale: Any, silence: Any, eps: float) -> np.ndarray:
    r"""log10 of the largest update this run could show in theory (THEORY.md §4): a
    coordinate whose gradient of size ``G`` switches off grows by :math:`\beta_1/\sqrt\beta_2`
    per step for at most ``silence`` steps, and at most to the ε cap,

    :math:`\log_{10}\min\big(A_\varepsilon(\beta_1,\beta_2,G),\;
    e^{\max(0,\ln(\beta_1/\sqrt\beta_2))\,L}\big)`

    with :math:`A_\varepsilon` = `adamflow.stability.eps_capped_amplification` (sharp form;
    moments in equilibrium before the switch-off, so :math:`|u| \approx 1` at its start).
    It is optimistic: a cell whose predicted peak stays below the detection threshold cannot
    have shown its instability. NaN where ``G`` is not a positive number.
    """
    b, g = np.broadcast_arrays(np.asarray(b1, float), np.asarray(b2, float))
    scale = np.broadcast_to(np.asarray(grad_scale, float), b.shape)
    length = np.broadcast_to(np.asarray(silence, float), b.shape)
    usable = np.isfinite(scale) & (scale > 0)
    with np.errstate(all="ignore"):
        if eps > 0:
            cap = np.log10(
                stability.eps_capped_amplification(
                    b, g, np.where(usable, scale, 1.0), eps, sharp=True
                )
            )
        else:
            cap = np.full(b.shape, np.inf)
        grow = np.asarray(stability.growth_rate(b, g)) * length / np.log(10.0)
    return np.where(usable, np.minimum(cap, grow), np.nan)


# ----------------------------------------------------------------------------- one cell


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


class _CellResult(NamedTuple):
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
class _Config:
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


def _step_inputs(config: _Config) -> dict[str, Any]:
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


def _make_cell_fn(config: _Config) -> Callable[[Any, Any], _CellResult]:
    """The function of one (β₁, β₂) cell: run ``steps`` steps and return its measurements.

    Steps are scanned in blocks of `GROWTH_BLOCK`; per step only the running max of |u|
    and the last step at which each coordinate received a gradient are updated (the loop
    is memory bound), and the block's last step feeds the sampled measurements.
    """
    problem, steps, lr, eps = config.problem, config.steps, config.lr, config.eps
    n_blocks, tail = divmod(steps, GROWTH_BLOCK)

    def cell(spec: KAdam) -> _CellResult:
        theta0 = tree_map(lambda x: jnp.asarray(x, dtype=jnp.float64), problem.theta0)
        b1, b2 = spec.b1s[0], spec.b2s[0]
        log_decay_v = _rules.decay_per_step(b2)
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
        return _CellResult(
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
def _compile_chunk_fn(config: _Config, devices: tuple[Any, ...]) -> Callable[..., _CellResult]:
    """``spec -> _CellResult`` over a chunk of stacked specs: jit of the vmapped cell, with the
    cell axis sharded over ``devices`` when there are several (cached, so a repeated sweep
    of the same problem object reuses the compiled code)."""
    batched = jax.vmap(_make_cell_fn(config))
    if len(devices) == 1:
        return jax.jit(batched)
    mesh = jax.sharding.Mesh(np.asarray(devices), ("cells",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("cells"))
    return jax.jit(batched, in_shardings=(sharding,), out_shardings=sharding)


def _compute_chunk(
    chunk_fn: Callable[..., _CellResult],
    config: _Config,
    b1s: np.ndarray,
    b2s: np.ndarray,
    padded: int,
) -> dict[str, np.ndarray]:
    """Run one chunk (padded to ``padded`` cells by repeating its last cell) and return its
    unpadded results as NumPy arrays."""
    size = b1s.size
    pad = padded - size
    b = np.concatenate([b1s, np.full(pad, b1s[-1])])
    g = np.concatenate([b2s, np.full(pad, b2s[-1])])
    specs = stack_specs([Adam(config.lr, b1, b2, config.eps) for b1, b2 in zip(b, g, strict=True)])
    result = chunk_fn(specs)
    return {name: np.asarray(value)[:size] for name, value in result._asdict().items()}


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class PhaseDiagram:
    """Measured and predicted stability of Adam over a (β₁, β₂) grid.

    Arrays are indexed ``[b1, b2]`` (the module docstring defines each one):
    measured ``max_update``, ``growth_rate`` (over ``growth_steps`` silent steps),
    ``diverged``/``diverged_step``, ``final_loss``, ``longest_silence``, ``grad_scale``;
    theory ``theory_stable`` (β₂ > β₁²), ``theory_growth`` (ln(β₁/√β₂)), ``predicted_peak``
    (log10); verdicts ``measured_stable`` and ``band``. Scalars: ``agreement`` (fraction of
    cells outside the band where the verdicts agree), ``band_cells``, ``threshold``;
    ``parameters`` (everything the sweep was run with), ``elapsed`` (seconds). With
    ``record_trace=True``: ``trace[b1, b2, k]`` = log10 max_i |u_i| at step
    ``trace_steps[k]``.
    """

    b1s: np.ndarray
    b2s: np.ndarray
    max_update: np.ndarray
    growth_rate: np.ndarray
    growth_steps: np.ndarray
    diverged: np.ndarray
    diverged_step: np.ndarray
    final_loss: np.ndarray
    longest_silence: np.ndarray
    grad_scale: np.ndarray
    theory_stable: np.ndarray
    theory_growth: np.ndarray
    predicted_peak: np.ndarray
    band: np.ndarray
    measured_stable: np.ndarray
    agreement: float
    band_cells: int
    threshold: float
    parameters: dict[str, Any]
    elapsed: float = float("nan")
    trace: np.ndarray | None = None
    trace_steps: np.ndarray | None = None

    @property
    def cells(self) -> int:
        """Number of grid cells."""
        return int(self.max_update.size)

    @property
    def decided_cells(self) -> int:
        """Cells outside the band (those counted in `agreement`)."""
        return self.cells - self.band_cells

    def summary(self) -> dict[str, Any]:
        """The headline numbers: cells, agreement, band, divergences, time."""
        return {
            "cells": self.cells,
            "agreement": self.agreement,
            "band_cells": self.band_cells,
            "decided_cells": self.decided_cells,
            "disagreements": int(np.sum((self.measured_stable != self.theory_stable) & ~self.band)),
            "diverged_cells": int(np.sum(self.diverged)),
            "threshold": self.threshold,
            "max_log10_update": float(np.log10(np.max(self.max_update))),
            "elapsed_s": self.elapsed,
        }

    def metadata(self) -> dict[str, Any]:
        """The JSON sidecar: every parameter, the seed, the version and the summary."""
        parameters = dict(self.parameters)
        return _io.sidecar(parameters, parameters.get("seed"), summary=self.summary())

    def plot(self, ax: Any = None) -> Any:
        """Heatmap of log10 max|u| with the boundary β₂ = β₁², the band and (0.9, 0.999);
        returns the matplotlib Figure (see `adamflow.plotting.phase.plot_phase_diagram`)."""
        from .plotting.phase import plot_phase_diagram

        return plot_phase_diagram(self, ax=ax)

    def save(self, directory: str | Path, name: str = "phase_diagram") -> Path:
        """Write ``<name>.npz`` (arrays; load with ``allow_pickle=False``) and ``<name>.json``
        (parameters, seed, version, summary) atomically; returns the ``.npz`` path."""
        directory = Path(directory)
        arrays = {name_: getattr(self, name_) for name_ in _ARRAY_FIELDS}
        if self.trace is not None and self.trace_steps is not None:
            arrays["trace"] = self.trace
            arrays["trace_steps"] = self.trace_steps
        path = _io.atomic_save_npz(directory / f"{name}.npz", **arrays)
        _io.atomic_write_json(directory / f"{name}.json", self.metadata())
        return path


_ARRAY_FIELDS = (
    "b1s",
    "b2s",
    "max_update",
    "growth_rate",
    "growth_steps",
    "diverged",
    "diverged_step",
    "final_loss",
    "longest_silence",
    "grad_scale",
    "theory_stable",
    "theory_growth",
    "predicted_peak",
    "band",
    "measured_stable",
)


def load_phase_diagram(path: str | Path) -> PhaseDiagram:
    """Read a `PhaseDiagram` written by `PhaseDiagram.save` (the ``.npz`` path, or a folder
    holding ``phase_diagram.npz``); no pickle is involved."""
    path = Path(path)
    if path.is_dir():
        path = path / "phase_diagram.npz"
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: np.asarray(data[key]) for key in data.files}
    meta = json.loads(path.with_suffix(".json").read_text())
    summary = meta.get("summary", {})
    return PhaseDiagram(
        **{name: arrays[name] for name in _ARRAY_FIELDS},
        agreement=float(summary.get("agreement", np.nan)),
        band_cells=int(summary.get("band_cells", int(np.sum(arrays["band"])))),
        threshold=float(summary.get("threshold", np.nan)),
        parameters=meta.get("parameters", {}),
        elapsed=float(summary.get("elapsed_s", np.nan)),
        trace=arrays.get("trace"),
        trace_steps=arrays.get("trace_steps"),
    )


def _analyse(
    b1s: np.ndarray,
    b2s: np.ndarray,
    raw: dict[str, np.ndarray],
    *,
    eps: float,
    threshold: float,
    parameters: dict[str, Any],
    elapsed: float,
    trace_steps: np.ndarray | None,
) -> PhaseDiagram:
    """Turn raw per-cell measurements into verdicts, the band and the agreement."""
    shape = (b1s.size, b2s.size)
    grid = {key: value.reshape(shape + value.shape[1:]) for key, value in raw.items()}
    b1, b2 = np.meshgrid(b1s, b2s, indexing="ij")
    diverged = grid["diverged_step"] >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        growth_rate = grid["growth_sum"] / grid["growth_steps"]
        grad_scale = np.sqrt(grid["grad_sq_sum"] / grid["grad_count"])
    growth_rate = np.where(grid["growth_steps"] > 0, growth_rate, np.nan)
    grad_scale = np.where(grid["grad_count"] > 0, grad_scale, np.nan)
    stable_theory = np.asarray(stability.is_stable(b1, b2), dtype=bool)
    peak = predicted_peak(b1, b2, grad_scale, grid["longest_silence"], eps)
    undecidable = ~(peak >= np.log10(threshold * BAND_MARGIN))  # NaN counts as undecidable
    band = ~stable_theory & undecidable
    measured = ~diverged & (grid["max_update"] <= threshold)
    decided = ~band
    agreement = (
        float(np.mean(measured[decided] == stable_theory[decided])) if decided.any() else np.nan
    )
    return PhaseDiagram(
        b1s=b1s,
        b2s=b2s,
        max_update=grid["max_update"],
        growth_rate=growth_rate,
        growth_steps=grid["growth_steps"],
        diverged=diverged,
        diverged_step=grid["diverged_step"],
        final_loss=grid["final_loss"],
        longest_silence=grid["longest_silence"],
        grad_scale=grad_scale,
        theory_stable=stable_theory,
        theory_growth=theory_growth(b1, b2),
        predicted_peak=peak,
        band=band,
        measured_stable=measured,
        agreement=agreement,
        band_cells=int(band.sum()),
        threshold=threshold,
        parameters=parameters,
        elapsed=elapsed,
        trace=grid["trace"] if trace_steps is not None else None,
        trace_steps=trace_steps,
    )


# ----------------------------------------------------------------------------- checkpoints


def _checkpoint_meta(parameters: dict[str, Any], chunk_size: int) -> dict[str, Any]:
    from . import __version__

    return {
        "format": _CHECKPOINT_FORMAT,
        "adamflow_version": __version__,
        "chunk_size": chunk_size,
        **parameters,
    }


def _open_checkpoint(folder: Path, meta: dict[str, Any]) -> None:
    """Create the checkpoint folder, or check that the one there was made with ``meta``."""
    meta_path = folder / "meta.json"
    expected = json.loads(json.dumps(_io._jsonable(meta)))
    if meta_path.exists():
        found = json.loads(meta_path.read_text())
        if found != expected:
            keys = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
            raise ValueError(
                f"checkpoint {folder} was made with other parameters (differing: "
                f"{', '.join(keys)}); pass another checkpoint folder or delete this one"
            )
        return
    folder.mkdir(parents=True, exist_ok=True)
    _io.atomic_write_json(meta_path, meta)


def _chunk_path(folder: Path, index: int) -> Path:
    return folder / f"chunk_{index:05d}.npz"


def clear_checkpoint(folder: str | Path) -> None:
    """Delete a checkpoint folder written by `phase_diagram` (its meta and chunk files only;
    the folder itself is removed when nothing else is left in it)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in [folder / "meta.json", *folder.glob("chunk_*.npz")]:
        path.unlink(missing_ok=True)
    if not any(folder.iterdir()):
        shutil.rmtree(folder)


# ----------------------------------------------------------------------------- grids


def grid(low: float, high: float, n: int, *, spacing: str = "log") -> np.ndarray:
    r"""``n`` values from ``low`` to ``high`` (both in [0, 1)): ``"log"`` spaces
    :math:`1-x` logarithmically (fine near 1, where Adam's β₁ and β₂ live), ``"linear"``
    spaces :math:`x` evenly."""
    n = check_int("n", n, 1)
    for name, value in (("low", low), ("high", high)):
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    if spacing == "log":
        return 1.0 - np.logspace(np.log10(1.0 - low), np.log10(1.0 - high), n)
    if spacing == "linear":
        return np.linspace(low, high, n)
    raise ValueError(f"spacing must be 'log' or 'linear', got {spacing!r}")


#: The default map: 1-β₁ from 0.5 to 1e-3 and 1-β₂ from 0.9 to 1e-4, log-spaced, so that the
#: boundary β₂ = β₁² (1-β₂ ≈ 2(1-β₁)) crosses the grid diagonally and Adam's default
#: (0.9, 0.999) lies inside it.
DEFAULT_B1_RANGE = (0.5, 0.999)
DEFAULT_B2_RANGE = (0.1, 0.9999)
DEFAULT_GRID = 40
#: Steps and learning rate per built-in problem when not given (the main job: sparse).
DEFAULT_RUNS: dict[str, dict[str, Any]] = {
    "sparse": {"steps": 3000, "lr": 1e-2},
    "switch_off": {"steps": 7000, "lr": 1e-2},
    "quadratic": {"steps": 2000, "lr": 1e-2},
    "logistic": {"steps": 2000, "lr": 1e-2},
    "mlp_digits": {"steps": 500, "lr": 1e-3},
}


def default_grid(n: int = DEFAULT_GRID, *, spacing: str = "log") -> tuple[np.ndarray, np.ndarray]:
    """The default (b1s, b2s): `DEFAULT_B1_RANGE` × `DEFAULT_B2_RANGE`, n × n."""
    return (
        grid(*DEFAULT_B1_RANGE, n, spacing=spacing),
        grid(*DEFAULT_B2_RANGE, n, spacing=spacing),
    )


# ----------------------------------------------------------------------------- the sweep


def phase_diagram(
    problem: Problem,
    b1s: Sequence[float] | np.ndarray,
    b2s: Sequence[float] | np.ndarray,
    *,
    steps: int,
    lr: float,
    seed: int = 0,
    eps: float = 1e-8,
    dynamics: str = "discrete",
    devices: Any = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    threshold: float = 1e2,
    substeps: int = 4,
    chunk_size: int | None = None,
    record_trace: bool = False,
) -> PhaseDiagram:
    r"""Run Adam on ``problem`` for every (β₁, β₂) of the grid and map where it stays bounded.

    Each cell runs ``steps`` steps of Adam (``dynamics="discrete"``:
    :math:`m_n = \beta_1 m_{n-1} + (1-\beta_1)g_n`, :math:`v_n = \beta_2 v_{n-1} + (1-\beta_2)g_n^2`,
    :math:`u_n = \hat m_n/(\sqrt{\hat v_n}+\varepsilon)`,
    :math:`\theta_n = \theta_{n-1} - \eta u_n`) or its leading-order flow
    (``"continuous"``: :math:`\dot m = a(g - m)`, :math:`\dot v = b(g^2 - v)`,
    :math:`\dot\theta = -u`, :math:`a = \ln(1/\beta_1)/\eta`, :math:`b = \ln(1/\beta_2)/\eta`,
    RK4 with ``substeps`` steps per η, the gradient of step n held over
    :math:`[(n-1)\eta, n\eta)`), in float64, and is compared with the theory
    :math:`\beta_2 > \beta_1^2` (THEORY.md §4; see the module docstring for every measured
    array, the band and the agreement).

    Parameters
    ----------
    problem : an `adamflow.problems.Problem`.
    b1s, b2s : strictly monotone, non-empty grids in [0, 1) (β₁ = Adam's β₁1, β₂ = β₁2).
    steps : optimizer steps per cell (>= 1); lr : learning rate η (> 0).
    seed : seed of the gradient randomness, shared by every cell.
    eps : ε >= 0. threshold : a cell is measured stable when max|u| <= threshold.
    devices : JAX devices to shard the cells over (default: all), or how many to use.
    checkpoint : a folder; each finished chunk is saved there and reused by a rerun with the
        same parameters (a checkpoint made with other parameters is refused).
    progress : show a tqdm bar over chunks. chunk_size : cells per chunk (default 512).
    record_trace : also keep log10 max_i|u_i| every `GROWTH_BLOCK` steps in ``.trace``.
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be an adamflow.problems.Problem, got {problem!r}")
    b1_grid = _check_grid("b1s", b1s)
    b2_grid = _check_grid("b2s", b2s)
    steps = check_int("steps", steps, 1)
    lr = check_positive("lr", lr)
    seed = check_int("seed", seed, 0)
    eps = check_positive("eps", eps, allow_zero=True)
    threshold = check_positive("threshold", threshold)
    substeps = check_int("substeps", substeps, 1)
    if dynamics not in DYNAMICS:
        raise ValueError(f"dynamics must be one of {DYNAMICS}, got {dynamics!r}")
    device_list = _resolve_devices(devices)
    n_cells = b1_grid.size * b2_grid.size
    largest = check_int("chunk_size", chunk_size if chunk_size is not None else DEFAULT_CHUNK, 1)
    n_chunks = -(-n_cells // largest)
    chunk = -(-n_cells // n_chunks)  # equal chunks, the last one possibly shorter
    n_chunks = -(-n_cells // chunk)
    padded = -(-chunk // len(device_list)) * len(device_list)
    parameters: dict[str, Any] = {
        "problem": problem.fingerprint(),
        "b1s": b1_grid.tolist(),
        "b2s": b2_grid.tolist(),
        "steps": steps,
        "lr": lr,
        "seed": seed,
        "eps": eps,
        "dynamics": dynamics,
        "substeps": substeps if dynamics == "continuous" else None,
        "threshold": threshold,
        "record_trace": bool(record_trace),
    }
    folder = Path(checkpoint) if checkpoint is not None else None
    if folder is not None:
        _open_checkpoint(folder, _checkpoint_meta(parameters, chunk))

    b1_flat, b2_flat = (a.ravel() for a in np.meshgrid(b1_grid, b2_grid, indexing="ij"))
    config = _Config(problem, steps, lr, eps, seed, dynamics, substeps, bool(record_trace))
    start = time.perf_counter()
    pieces: list[dict[str, np.ndarray]] = []
    chunk_fn = None
    with jax.enable_x64(True):
        for index in tqdm(
            range(n_chunks), desc="phase diagram", unit="chunk", disable=not progress
        ):
            path = _chunk_path(folder, index) if folder is not None else None
            if path is not None and path.exists():
                with np.load(path, allow_pickle=False) as data:
                    pieces.append({key: np.asarray(data[key]) for key in data.files})
                continue
            if chunk_fn is None:
                chunk_fn = _compile_chunk_fn(config, tuple(device_list))
            cells = slice(index * chunk, min((index + 1) * chunk, n_cells))
            piece = _compute_chunk(chunk_fn, config, b1_flat[cells], b2_flat[cells], padded)
            if path is not None:
                _io.atomic_save_npz(path, **piece)
            pieces.append(piece)
    elapsed = time.perf_counter() - start
    raw = {key: np.concatenate([p[key] for p in pieces]) for key in _CellResult._fields}
    n_trace = steps // GROWTH_BLOCK
    trace_steps = GROWTH_BLOCK * (1 + np.arange(n_trace)) if record_trace else None
    parameters["devices"] = len(device_list)
    parameters["chunk_size"] = chunk
    return _analyse(
        b1_grid,
        b2_grid,
        raw,
        eps=eps,
        threshold=threshold,
        parameters=parameters,
        elapsed=elapsed,
        trace_steps=trace_steps,
    )
