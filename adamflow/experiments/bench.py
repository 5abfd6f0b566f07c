"""Benchmarks behind ``scripts/bench.py``: each returns measurements taken in one run.

Times are medians over repeats after a warm-up call; the first ("cold") call, which
includes compilation unless an earlier benchmark of the same run already compiled the same
function, is reported separately. A key ``X_vs_Y`` is always "how many times
better X does than Y" (Y's time / X's time, or Y's evaluations / X's): above 1 means X
wins. Nothing here is asserted: `GOALS` are printed beside the measurements.

Benchmarks (`BENCHMARKS`; `DEFAULT_BENCHMARKS` run when none is named):

- ``import``: ``import adamflow`` against ``import jax`` in fresh interpreters.
- ``diffrax_vs_scipy``: the same leading-order flow on both backends, warm.
- ``grad_evals``: the flow's gradient evaluations per discrete step at lr = 1e-3.
- ``phase``: the phase-diagram sweep (`adamflow.phase_diagram`, sparse problem, default
  grid) against a per-point Python loop of jitted ``optax.adam`` steps
  (`adamflow.experiments.phase_baselines.optax_loop_point`, a few points timed and
  extrapolated to the grid) and against the fused minimal kernel
  (`adamflow.experiments.phase_baselines.minimal_kernel`).
- ``scaling``: sweep time per cell-step as the grid grows 16² → 32² → 64² and as the steps
  grow 500 → 1000 → 2000.
- ``corrected_vs_discrete``: the corrected and corrected2 flows, each at the loosest
  tolerance that matches the discrete run to 1e-4 relative, against running the discrete
  optimizer and against each other.
- ``recompile``: each flow order's first `adamflow.integrate` call on a small MLP against
  calls with a new horizon, lr or β₁ (which reuse the compiled solve).
- ``eos``: gradients per step of the leading and the eos flow through the edge of
  stability (a 97-parameter MLP at lr 0.02).
- ``sharpness``: one `adamflow.preconditioned_sharpness` measurement (Lanczos on
  Hessian-vector products): products, seconds, and a product's cost in gradients.
- ``distributed`` (on demand only, ``--only distributed``): the sweep in 1 and 2 local
  ``jax.distributed`` processes (element-steps per second, their ratio), and the projected
  per-device time of a 256² × 10⁴ sweep of a small transformer, from the measured cost
  of one of its Adam steps per parameter element.
- ``gpu_scale`` (on demand only, ``--only gpu_scale``): the sweep and the minimal kernel at
  GPU scale (by default a 256 × 256 grid, 10⁴ steps, 10³ dimensions).
"""

from __future__ import annotations

import functools
import math
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import Adam, integrate, phase_diagram, problems, run_discrete
from ..fileio import atomic_write_json
from ..phase import DEFAULT_GRID, DEFAULT_RUNS, default_grid
from ._timing import cold_and_warm, median_time, timed
from .phase_baselines import element_steps, minimal_kernel, optax_loop_point


@dataclass(frozen=True)
class BenchOptions:
    """What a benchmark run may vary: ``quick`` (smaller problems, fewer repeats) and the
    sizes of the on-demand ``gpu_scale`` benchmark (grid side, steps, dimensions, cells per
    compiled chunk)."""

    quick: bool = False
    gpu_grid: int = 256
    gpu_steps: int = 10_000
    gpu_dim: int = 1_000
    gpu_chunk: int = 16_384

    def __post_init__(self) -> None:
        for name in ("gpu_grid", "gpu_steps", "gpu_dim", "gpu_chunk"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    @property
    def repeats(self) -> int:
        """Timed calls after the warm-up (the median is reported)."""
        return 3 if self.quick else 5


#: key -> (comparison, goal): the performance claims, checked when printed.
GOALS: dict[str, tuple[str, float]] = {
    "phase_vs_optax_loop": (">=", 500.0),
    "phase_vs_minimal_kernel": (">=", 0.7),
    "diffrax_vs_scipy": (">=", 10.0),
    # Linear cost: the time per cell-step at the largest size is at most 1.3× the time at
    # the smallest (30% leaves room for the noise of a shared machine).
    "scaling_grid_cost_ratio": ("<=", 1.3),
    "scaling_steps_cost_ratio": ("<=", 1.3),
    # A new horizon, lr or β₁ reuses the compiled solve: the slowest such second call of any
    # order at most 10% of that order's first call.
    "recompile_worst_ratio": ("<=", 0.1),
}


# ----------------------------------------------------------------------------- problems


@functools.lru_cache(maxsize=4)
def _logcosh_problem(dim: int, seed: int = 0) -> tuple[Callable[[Any], Any], jax.Array]:
    """A smooth non-quadratic loss ``Σ log cosh(Aθ - b) + 0.05|θ|²`` in ``dim`` dimensions
    (cached, so every benchmark passes the same function and compiled solves are reused)."""
    key_a, key_b, key_t = jax.random.split(jax.random.PRNGKey(seed), 3)
    a_mat = jax.random.normal(key_a, (dim, dim)) / jnp.sqrt(dim)
    b_vec = jax.random.normal(key_b, (dim,))

    def loss(theta: jax.Array) -> jax.Array:
        return jnp.sum(jnp.log(jnp.cosh(a_mat @ theta - b_vec))) + 0.05 * jnp.sum(theta**2)

    return loss, jax.random.normal(key_t, (dim,))


def _flat_grid(b1s: np.ndarray, b2s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cells of a (β₁, β₂) grid in the sweep's order (β₁-major)."""
    b1, b2 = np.meshgrid(b1s, b2s, indexing="ij")
    return b1.ravel(), b2.ravel()


def _same_max(a: np.ndarray, b: np.ndarray, rtol: float = 1e-6) -> bool:
    """Whether two max|u| arrays agree to ``rtol`` where both are finite, and are
    non-finite at the same cells (the sweep reports a diverged cell as ``inf``)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    finite_a, finite_b = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(finite_a, finite_b):
        return False
    both = finite_a & finite_b
    return bool(np.allclose(a[both], b[both], rtol=rtol, atol=0.0))


# ----------------------------------------------------------------------------- flows


def bench_diffrax_vs_scipy(options: BenchOptions) -> dict[str, Any]:
    """The same leading-order flow (theory/adam.md §4; 100-d log-cosh loss, rtol 1e-6) on
    both backends: ``diffrax_vs_scipy`` = scipy's warm time / diffrax's."""
    loss, theta0 = _logcosh_problem(100)
    opt = Adam(1e-3)
    steps = 500 if options.quick else 2000
    kwargs: dict[str, Any] = dict(steps=steps, rtol=1e-6, atol=1e-9, save_steps=[0, steps])

    def run(backend: str) -> Callable[[], Any]:
        return lambda: integrate(opt, loss, theta0, backend=backend, **kwargs).theta

    diffrax_cold, diffrax_warm = cold_and_warm(run("diffrax"), options.repeats)
    scipy_cold, scipy_warm = cold_and_warm(run("scipy"), options.repeats)
    return {
        "diffrax_vs_scipy": scipy_warm / diffrax_warm,
        "diffrax_vs_scipy_cold": scipy_cold / diffrax_cold,
        "diffrax_warm_s": diffrax_warm,
        "diffrax_cold_s": diffrax_cold,
        "scipy_warm_s": scipy_warm,
        "scipy_cold_s": scipy_cold,
    }


def bench_grad_evals(options: BenchOptions) -> dict[str, Any]:
    """Vector-field evaluations of the leading (theory/adam.md §4) and corrected flows
    (theory/corrected_flow.md §2) per discrete step at lr = 1e-3 (100-d loss, default
    tolerances). A corrected evaluation is several nested JVPs of the gradient (order + 2
    passes of a jet of that order), so its cost is in `bench_corrected_vs_discrete`'s
    times."""
    loss, theta0 = _logcosh_problem(100)
    opt = Adam(1e-3)
    steps = 1000 if options.quick else 5000
    out: dict[str, Any] = {"grad_evals_steps": steps}
    for order in ("leading", "corrected", "corrected2"):
        flow = integrate(opt, loss, theta0, steps=steps, order=order, save_steps=[0, steps])
        out[f"grad_evals_per_step_{order}"] = flow.stats["grad_evals"] / steps
    disc = run_discrete(opt, loss, theta0, steps, save_every=steps)
    out["grad_evals_per_step_discrete"] = disc.stats["grad_evals"] / steps
    return out


def bench_recompile(options: BenchOptions) -> dict[str, Any]:
    """One compile per model: on a 97-parameter tanh MLP (full-batch MSE), each order's
    first `integrate` call (Adam lr 0.005, 100 steps; it compiles) against later calls with
    a new ``steps`` (101), a new ``lr`` (0.004) and a new ``b1`` (0.8), which reuse it. The
    corrected orders start with ``start="auto"``. ``recompile_worst_ratio`` is the largest
    later/first ratio over the orders."""
    from .sharpness_bench import tanh_mlp

    loss, theta0, _ = tanh_mlp(2, 24, 64)
    out: dict[str, Any] = {}
    changes = {"steps": (0.005, 101, 0.9), "lr": (0.004, 101, 0.9), "b1": (0.004, 101, 0.8)}
    for order in ("leading", "corrected", "corrected2", "paper"):
        start = "auto" if order.startswith("corrected") else None

        def call(lr: float, steps: int, b1: float, order: str = order, start: Any = start) -> Any:
            opt = Adam(lr, b1=b1)
            return integrate(opt, loss, theta0, steps=steps, order=order, start=start)

        first, _ = timed(lambda: call(0.005, 100, 0.9))
        out[f"recompile_{order}_first_s"] = first
        for name, args in changes.items():
            out[f"recompile_{order}_new_{name}_ratio"] = timed(lambda a=args: call(*a))[0] / first
    out["recompile_worst_ratio"] = max(v for k, v in out.items() if k.endswith("_ratio"))
    return out


def bench_eos(options: BenchOptions) -> dict[str, Any]:
    """Gradient evaluations per discrete step of the leading and the eos flow (theory/eos.md
    §5) through the edge of stability: Adam lr 0.02 on the 97-parameter tanh MLP of the
    ``eos`` figure, 600 steps (``--quick``) or 3000 (``Trajectory.stats["grad_evals"]``:
    the eos flow's field costs five gradients per evaluation)."""
    from .eos import NETWORKS

    network = NETWORKS["tanh_mlp_97"]()
    steps = 600 if options.quick else 3000
    out: dict[str, Any] = {"eos_steps": steps}
    for order in ("leading", "eos"):
        flow = integrate(
            Adam(0.02),
            network.loss,
            network.theta0,
            steps=steps,
            order=order,
            save_steps=[0, steps],
        )
        out[f"eos_grads_per_step_{order}"] = flow.stats["grad_evals"] / steps
    out["eos_cost_vs_leading"] = out["eos_grads_per_step_eos"] / out["eos_grads_per_step_leading"]
    return out


def bench_sharpness(options: BenchOptions) -> dict[str, Any]:
    """The cost of one preconditioned-sharpness measurement (theory/eos.md §1; what
    ``sharpness_every`` pays per measured point): Hessian-vector products and seconds, and
    the seconds of one product against one gradient, on a 101- and a 9 901-parameter tanh
    MLP for the top 1 and top 3 eigenvalues (`adamflow.experiments.sharpness_bench`)."""
    from .sharpness_bench import bench_sharpness as measure

    out: dict[str, Any] = {}
    for name, row in measure(options.repeats).items():
        for key in ("hvps", "seconds", "hvp_per_grad"):
            out[f"sharpness_{name}_{key}"] = row[key]
    return out


#: The match the corrected flow must reach: |θ_flow(Kη) - θ_K| / |θ_K| at the final step.
MATCH_RTOL = 1e-4


def bench_corrected_vs_discrete(options: BenchOptions) -> dict[str, Any]:
    r"""The corrected and corrected2 flows (theory/corrected_flow.md §2), each at the
    loosest tolerance that follows the discrete run to `MATCH_RTOL`, against the discrete
    optimizer itself and against each other.

    Adam(lr = 1e-3) on the 100-d log-cosh loss for K steps; tolerances rtol = 10^-3,
    10^-4, … (``atol = 10^-3 rtol``; half decades in full mode) are tried from the loosest
    until :math:`\|\theta(K\eta) - \theta_K\| / \|\theta_K\| \le 10^{-4}`. Reports that
    tolerance, its vector-field evaluations against the K gradients of the discrete run,
    and the warm times (``<order>_…`` keys), then ``corrected2_vs_corrected_time`` and
    ``…_field_evals`` (above 1: corrected2 is cheaper). The leading flow's error at the
    default tolerance is reported beside them (its O(η) model error can sit above the
    target, so no tolerance makes it match).
    """
    loss, theta0 = _logcosh_problem(100)
    opt = Adam(1e-3)
    steps = 1000
    save = [0, steps]
    repeats = options.repeats

    def discrete() -> Any:
        return run_discrete(opt, loss, theta0, steps, save_every=steps).theta

    disc_cold, disc_warm = cold_and_warm(discrete, repeats)
    target = np.asarray(discrete()[-1])

    def relative_error(theta_path: Any) -> float:
        return float(np.linalg.norm(np.asarray(theta_path[-1]) - target) / np.linalg.norm(target))

    per_decade = 1 if options.quick else 2
    exponents = np.arange(3 * per_decade, 10 * per_decade + 1) / per_decade
    out: dict[str, Any] = {
        "corrected_match_target": MATCH_RTOL,
        "corrected_match_steps": steps,
        "discrete_grad_evals": steps,
        "discrete_cold_s": disc_cold,
        "discrete_warm_s": disc_warm,
    }
    leading = integrate(opt, loss, theta0, steps=steps, save_steps=save)
    out["leading_rel_error_default_tol"] = relative_error(leading.theta)
    for order in ("corrected", "corrected2"):
        tried = []
        for exponent in exponents:
            rtol = float(10.0**-exponent)
            kwargs = dict(steps=steps, order=order, rtol=rtol, atol=1e-3 * rtol, save_steps=save)

            def flow_run(kwargs: dict[str, Any] = kwargs) -> Any:
                return integrate(opt, loss, theta0, **kwargs)

            cold, flow = timed(flow_run)
            error = relative_error(flow.theta)
            tried.append((rtol, error))
            if error <= MATCH_RTOL:
                warm = median_time(lambda run=flow_run: run().theta, repeats)
                evals = int(flow.stats["grad_evals"])
                out.update(
                    {
                        f"{order}_match_rtol": rtol,
                        f"{order}_match_rel_error": error,
                        f"{order}_field_evals": evals,
                        f"{order}_cold_s": cold,
                        f"{order}_warm_s": warm,
                        f"{order}_vs_discrete_grad_evals": steps / evals,
                        f"{order}_vs_discrete_time": disc_warm / warm,
                        f"{order}_validity": flow.validity,
                    }
                )
                break
        else:
            out[f"{order}_match_rtol"] = math.nan
        out[f"{order}_tolerances_tried"] = [[r, e] for r, e in tried]
    if "corrected_warm_s" in out and "corrected2_warm_s" in out:
        out["corrected2_vs_corrected_time"] = out["corrected_warm_s"] / out["corrected2_warm_s"]
        out["corrected2_vs_corrected_field_evals"] = (
            out["corrected_field_evals"] / out["corrected2_field_evals"]
        )
    return out


# ----------------------------------------------------------------------------- imports


def _import_time(module: str, repeats: int) -> float:
    code = f"import time; s = time.perf_counter(); import {module}; print(time.perf_counter() - s)"
    runs = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(repeats)
    ]
    return statistics.median(runs)


def bench_import(options: BenchOptions) -> dict[str, Any]:
    """``import adamflow`` against ``import jax`` (fresh interpreters); sympy stays unloaded."""
    adamflow_s = _import_time("adamflow", options.repeats)
    jax_s = _import_time("jax", options.repeats)
    loads_sympy = subprocess.run(
        [sys.executable, "-c", "import sys, adamflow; print('sympy' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {
        "import_adamflow_s": adamflow_s,
        "import_jax_s": jax_s,
        "import_adamflow_vs_jax": adamflow_s / jax_s,
        "import_loads_sympy": loads_sympy == "True",
    }


# ----------------------------------------------------------------------------- phase sweep


def _sweep(problem: problems.Problem, b1s: np.ndarray, b2s: np.ndarray, **kw: Any) -> Any:
    return phase_diagram(problem, b1s, b2s, progress=False, **kw)


def bench_phase(options: BenchOptions) -> dict[str, Any]:
    r"""The phase-diagram sweep (max|u| over a (β₁, β₂) grid, theory/stability.md) on the
    default sparse problem, steps, lr and grid (40 × 40, also with ``--quick``, which only
    times fewer repeats and optax points) against

    - a per-point Python loop of jitted ``optax.adam`` steps (`optax_loop_point`): a few
      points are timed whole (each jits its own step, as a per-point loop must: β₁ and β₂
      are baked into ``optax.adam``) and the median is extrapolated to every cell;
      ``_steps_only`` keys leave the per-point compile out (a loop that jits once);
    - the minimal fused kernel (`minimal_kernel`) on the same cells: throughput ratio and
      element-steps (parameter elements × cells × steps) per second for both.

    Both baselines must give the sweep's max|u| (``*_matches_sweep``): same work.
    """
    problem = problems.sparse()
    run = DEFAULT_RUNS["sparse"]
    steps, lr = int(run["steps"]), float(run["lr"])
    b1s, b2s = default_grid(DEFAULT_GRID)
    flat_b, flat_g = _flat_grid(b1s, b2s)
    cells = flat_b.size
    work = element_steps(problem, cells, steps)
    repeats = options.repeats

    sweep_cold, diagram = timed(lambda: _sweep(problem, b1s, b2s, steps=steps, lr=lr))
    sweep_warm = median_time(
        lambda: _sweep(problem, b1s, b2s, steps=steps, lr=lr).max_update, repeats
    )
    kernel = minimal_kernel(problem, steps=steps, lr=lr)
    kernel_cold, kernel_max = timed(lambda: kernel(flat_b, flat_g))
    kernel_warm = median_time(lambda: kernel(flat_b, flat_g), repeats)

    # The optax loop: a warm-up point (one-time tracing of optax), one 1-step point (the
    # per-point compile), then whole points spread over the grid.
    optax_loop_point(problem, 0.9, 0.999, steps=1, lr=lr)
    compile_s, _ = timed(lambda: optax_loop_point(problem, 0.9, 0.99, steps=1, lr=lr))
    n_points = 2 if options.quick else 5
    picks = np.linspace(0, cells - 1, n_points).round().astype(int)
    point_times, point_max = [], []
    for index in picks:
        seconds, largest = timed(
            lambda i=index: optax_loop_point(
                problem, float(flat_b[i]), float(flat_g[i]), steps=steps, lr=lr
            )
        )
        point_times.append(seconds)
        point_max.append(largest)
    point_s = statistics.median(point_times)
    step_s = max(point_s - compile_s, 0.0) / max(steps - 1, 1)
    optax_total = cells * point_s
    optax_steps_only = cells * steps * step_s
    sweep_max = diagram.max_update.ravel()
    return {
        "phase_grid": f"{b1s.size}x{b2s.size}",
        "phase_cells": cells,
        "phase_steps": steps,
        "phase_dim": problem.size,
        "phase_element_steps": work,
        "phase_cold_s": sweep_cold,
        "phase_warm_s": sweep_warm,
        "phase_element_steps_per_s": work / sweep_warm,
        "minimal_kernel_cold_s": kernel_cold,
        "minimal_kernel_warm_s": kernel_warm,
        "minimal_kernel_element_steps_per_s": work / kernel_warm,
        "phase_vs_minimal_kernel": kernel_warm / sweep_warm,
        "minimal_kernel_matches_sweep": _same_max(kernel_max, sweep_max),
        "optax_loop_points_timed": n_points,
        "optax_loop_point_s": point_s,
        "optax_loop_compile_s": compile_s,
        "optax_loop_step_s": step_s,
        "optax_loop_grid_s": optax_total,
        "phase_vs_optax_loop": optax_total / sweep_warm,
        "phase_vs_optax_loop_cold": optax_total / sweep_cold,
        "phase_vs_optax_loop_steps_only": optax_steps_only / sweep_warm,
        "optax_loop_matches_sweep": _same_max(np.asarray(point_max), sweep_max[picks]),
    }


def bench_scaling(options: BenchOptions) -> dict[str, Any]:
    """Sweep time per cell-step as the grid grows 16² → 32² → 64² (1000 steps) and as the
    steps grow 500 → 1000 → 2000 (32² grid), on the default sparse problem. Linear cost
    means a flat time per cell-step; ``*_cost_ratio`` = largest size's / smallest's."""
    problem = problems.sparse()
    lr = float(DEFAULT_RUNS["sparse"]["lr"])
    repeats = options.repeats
    out: dict[str, Any] = {}

    def measure(prefix: str, side: int, steps: int) -> float:
        b1s, b2s = default_grid(side)
        cold, warm = cold_and_warm(
            lambda: _sweep(problem, b1s, b2s, steps=steps, lr=lr).max_update, repeats
        )
        per_cell_step = warm / (side * side * steps)
        out[f"{prefix}_s"] = warm
        out[f"{prefix}_cold_s"] = cold
        out[f"{prefix}_ns_per_cell_step"] = 1e9 * per_cell_step
        return per_cell_step

    grid_costs = [measure(f"scaling_grid_{side}", side, 1000) for side in (16, 32, 64)]
    step_costs = [measure(f"scaling_steps_{steps}", 32, steps) for steps in (500, 1000, 2000)]
    out["scaling_grid_cost_ratio"] = grid_costs[-1] / grid_costs[0]
    out["scaling_steps_cost_ratio"] = step_costs[-1] / step_costs[0]
    return out


def bench_gpu_scale(options: BenchOptions) -> dict[str, Any]:
    """The sweep and the minimal kernel at GPU scale (``gpu_grid``² cells, ``gpu_steps``
    steps, the sparse problem in ``gpu_dim`` dimensions): absolute cold and warm times,
    element-steps per second, their ratio, and one timed ``optax.adam`` loop point
    extrapolated to the grid. Sizes come from `BenchOptions` (``--gpu-grid`` ...), so it
    can be smoke-tested small on a CPU."""
    problem = problems.sparse(dim=options.gpu_dim)
    lr = float(DEFAULT_RUNS["sparse"]["lr"])
    steps, side = options.gpu_steps, options.gpu_grid
    b1s, b2s = default_grid(side)
    flat_b, flat_g = _flat_grid(b1s, b2s)
    work = element_steps(problem, flat_b.size, steps)
    chunk = min(options.gpu_chunk, flat_b.size)

    def sweep() -> Any:
        return _sweep(problem, b1s, b2s, steps=steps, lr=lr, chunk_size=chunk).max_update

    repeats = 1 if side * side * steps * options.gpu_dim > 1e9 else options.repeats
    sweep_cold, sweep_max = timed(sweep)
    sweep_warm = median_time(sweep, repeats)
    kernel = minimal_kernel(problem, steps=steps, lr=lr)

    def kernel_chunks() -> Any:
        return np.concatenate(
            [
                kernel(flat_b[i : i + chunk], flat_g[i : i + chunk])
                for i in range(0, flat_b.size, chunk)
            ]
        )

    kernel_cold, kernel_max = timed(kernel_chunks)
    kernel_warm = median_time(kernel_chunks, repeats)
    point_s, _ = timed(lambda: optax_loop_point(problem, 0.9, 0.999, steps=steps, lr=lr))
    return {
        "gpu_scale_devices": [str(d) for d in jax.devices()],
        "gpu_scale_grid": f"{side}x{side}",
        "gpu_scale_steps": steps,
        "gpu_scale_dim": options.gpu_dim,
        "gpu_scale_chunk": chunk,
        "gpu_scale_element_steps": work,
        "gpu_scale_repeats": repeats,
        "gpu_scale_sweep_cold_s": sweep_cold,
        "gpu_scale_sweep_warm_s": sweep_warm,
        "gpu_scale_sweep_element_steps_per_s": work / sweep_warm,
        "gpu_scale_kernel_cold_s": kernel_cold,
        "gpu_scale_kernel_warm_s": kernel_warm,
        "gpu_scale_kernel_element_steps_per_s": work / kernel_warm,
        "gpu_scale_phase_vs_minimal_kernel": kernel_warm / sweep_warm,
        "gpu_scale_kernel_matches_sweep": _same_max(kernel_max, np.ravel(sweep_max)),
        "gpu_scale_optax_loop_point_s": point_s,
        "gpu_scale_phase_vs_optax_loop": flat_b.size * point_s / sweep_warm,
    }


# ----------------------------------------------------------------------------- distributed

#: The distributed benchmark's sweep: grid side, steps, cells per chunk (4 chunks).
DISTRIBUTED_SWEEP = (32, 2000, 256)


def distributed_worker() -> None:
    """One process of `bench_distributed` (``python -c``): joins the ``jax.distributed``
    run `launch_local` set up, runs the sweep once to compile, then once timed, and process
    0 prints ``{"elapsed_s": ...}`` as its last line."""
    import json

    from ..phase import exit_hard_on_error, initialize_distributed

    initialize_distributed()

    def run() -> None:
        side, steps, chunk = DISTRIBUTED_SWEEP
        b1s, b2s = default_grid(side)
        problem = problems.sparse()
        lr = float(DEFAULT_RUNS["sparse"]["lr"])
        _sweep(problem, b1s, b2s, steps=steps, lr=lr, chunk_size=chunk)
        diagram = _sweep(problem, b1s, b2s, steps=steps, lr=lr, chunk_size=chunk)
        if jax.process_index() == 0:
            print(json.dumps({"elapsed_s": diagram.elapsed}), flush=True)

    exit_hard_on_error(run)


def _distributed_elapsed(processes: int) -> float:
    import json
    import os
    import tempfile

    from ..phase import launch_local

    code = "from adamflow.experiments.bench import distributed_worker; distributed_worker()"
    with tempfile.TemporaryFile("w+") as log:
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
        # launch_local's children write to our stdout: send it to the log meanwhile.
        saved = os.dup(1)
        try:
            os.dup2(log.fileno(), 1)
            status = launch_local([sys.executable, "-c", code], processes, env=env)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        lines = [line for line in log.read().splitlines() if line.startswith("{")]
    if status or not lines:
        raise RuntimeError(f"the {processes}-process sweep failed (status {status})")
    return float(json.loads(lines[-1])["elapsed_s"])


#: The small transformer of the projection: layers, width, heads, sequence, vocabulary.
TRANSFORMER = {"layers": 2, "width": 128, "heads": 4, "sequence": 64, "vocabulary": 256}


def _transformer_loss() -> tuple[Callable[[Any, Any], Any], Any, Any]:
    """A small decoder-only transformer (`TRANSFORMER`; pre-norm attention + MLP, tied
    embedding), its parameters and one batch of 8 token sequences."""
    cfg = TRANSFORMER
    width, heads, seq, vocab = cfg["width"], cfg["heads"], cfg["sequence"], cfg["vocabulary"]
    keys = iter(jax.random.split(jax.random.PRNGKey(0), 8 * cfg["layers"] + 4))

    def dense(n_in: int, n_out: int) -> jax.Array:
        return jax.random.normal(next(keys), (n_in, n_out)) / math.sqrt(n_in)

    params = {
        "embed": jax.random.normal(next(keys), (vocab, width)) * 0.02,
        "pos": jax.random.normal(next(keys), (seq, width)) * 0.02,
        "layers": [
            {
                "qkv": dense(width, 3 * width),
                "out": dense(width, width),
                "up": dense(width, 4 * width),
                "down": dense(4 * width, width),
            }
            for _ in range(cfg["layers"])
        ],
    }
    tokens = jax.random.randint(next(keys), (8, seq + 1), 0, vocab)

    def norm(x: jax.Array) -> jax.Array:
        return (x - x.mean(-1, keepdims=True)) / jnp.sqrt(x.var(-1, keepdims=True) + 1e-5)

    def loss(p: Any, batch: jax.Array) -> jax.Array:
        x = p["embed"][batch[:, :-1]] + p["pos"]
        mask = jnp.tril(jnp.ones((seq, seq), bool))
        for layer in p["layers"]:
            q, k, v = jnp.split(norm(x) @ layer["qkv"], 3, axis=-1)
            split = lambda t: t.reshape(t.shape[0], seq, heads, -1)  # noqa: E731
            att = jnp.einsum("bqhd,bkhd->bhqk", split(q), split(k)) / math.sqrt(width // heads)
            att = jax.nn.softmax(jnp.where(mask, att, -1e9), axis=-1)
            mixed = jnp.einsum("bhqk,bkhd->bqhd", att, split(v)).reshape(x.shape)
            x = x + mixed @ layer["out"]
            x = x + jax.nn.gelu(norm(x) @ layer["up"]) @ layer["down"]
        logits = norm(x) @ p["embed"].T
        target = batch[:, 1:]
        picked = jnp.take_along_axis(jax.nn.log_softmax(logits), target[..., None], -1)
        return -jnp.mean(picked)

    return loss, params, tokens


def bench_distributed(options: BenchOptions) -> dict[str, Any]:
    r"""The sweep across processes and the cost of a transformer-sized sweep.

    - 1 and 2 local ``jax.distributed`` CPU processes (`launch_local`) run the same sweep
      (sparse problem, `DISTRIBUTED_SWEEP`: 32² cells, 2000 steps, 4 chunks of 256 cells);
      each run compiles first and is timed on a second sweep (process start, compilation
      and the coordinator excluded). ``distributed_2_vs_1`` = 1-process time / 2-process
      time: the speed-up of a second process (at most 2; on a machine whose cores are
      already busy, less).
    - The projection: one Adam step (gradient + update, float32, jitted ``lax.scan`` of
      20 steps) of a small transformer (`TRANSFORMER`, batch 8) is timed, giving seconds
      per parameter element-step; a 256² × 10⁴ sweep of it is
      :math:`256^2 \cdot 10^4 \cdot n_\text{params}` element-steps, so its cost on one
      device of this kind is that product × the measured cost (a sweep vmaps the cells,
      which amortizes better than this one-cell timing on a GPU: an upper bound there,
      device-hours ``/ D`` on ``D`` devices, since cells never talk to each other).
    """
    side, steps, chunk = DISTRIBUTED_SWEEP
    work = element_steps(problems.sparse(), side * side, steps)
    one = _distributed_elapsed(1)
    two = _distributed_elapsed(2)

    loss, params, batch = _transformer_loss()
    n_params = sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(params))
    opt = Adam(1e-3).as_optax()
    n_steps = 20

    @jax.jit
    def train(p: Any) -> Any:
        def step(carry: Any, _: Any) -> Any:
            p, state = carry
            grads = jax.grad(loss)(p, batch)
            updates, state = opt.update(grads, state, p)
            return (jax.tree_util.tree_map(jnp.add, p, updates), state), None

        return jax.lax.scan(step, (p, opt.init(p)), None, length=n_steps)[0][0]

    with jax.enable_x64(False):
        params32 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)
        cold, warm = cold_and_warm(lambda: train(params32), 1 if options.quick else 3)
    per_element_step = warm / (n_steps * n_params)
    sweep_element_steps = 256**2 * 10**4 * n_params
    projected = sweep_element_steps * per_element_step
    return {
        "distributed_grid": f"{side}x{side}",
        "distributed_steps": steps,
        "distributed_chunk": chunk,
        "distributed_element_steps": work,
        "distributed_1_process_s": one,
        "distributed_2_process_s": two,
        "distributed_1_process_element_steps_per_s": work / one,
        "distributed_2_process_element_steps_per_s": work / two,
        "distributed_2_vs_1": one / two,
        "transformer_params": n_params,
        "transformer_step_cold_s": cold,
        "transformer_step_s": warm / n_steps,
        "transformer_ns_per_element_step": 1e9 * per_element_step,
        "transformer_sweep_256x256x1e4_element_steps": float(sweep_element_steps),
        "transformer_sweep_256x256x1e4_device_hours": projected / 3600,
    }


# ----------------------------------------------------------------------------- registry


#: name -> benchmark; each returns a flat dict of measurements.
BENCHMARKS: dict[str, Callable[[BenchOptions], dict[str, Any]]] = {
    "phase": bench_phase,
    "scaling": bench_scaling,
    "diffrax_vs_scipy": bench_diffrax_vs_scipy,
    "grad_evals": bench_grad_evals,
    "corrected_vs_discrete": bench_corrected_vs_discrete,
    "sharpness": bench_sharpness,
    "eos": bench_eos,
    "recompile": bench_recompile,
    "import": bench_import,
    "gpu_scale": bench_gpu_scale,
    "distributed": bench_distributed,
}
#: What runs when no benchmark is named (``gpu_scale`` and ``distributed`` only on demand).
DEFAULT_BENCHMARKS = tuple(n for n in BENCHMARKS if n not in ("gpu_scale", "distributed"))


def goal_status(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """For every `GOALS` key present: the goal as text and whether the value meets it."""
    status = {}
    for key, (comparison, goal) in GOALS.items():
        value = results.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        met = value >= goal if comparison == ">=" else value <= goal
        status[key] = {"goal": f"{comparison} {goal:g}", "met": bool(math.isfinite(value) and met)}
    return status


def run_benchmarks(names: list[str] | None, options: BenchOptions) -> dict[str, Any]:
    """Run the named benchmarks (`DEFAULT_BENCHMARKS` when ``None``) and merge their
    measurements; ``sections`` maps each benchmark to its keys and ``goals`` holds
    `goal_status`."""
    chosen = list(names) if names else list(DEFAULT_BENCHMARKS)
    for name in chosen:
        if name not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
    results: dict[str, Any] = {
        "quick": options.quick,
        "devices": [str(d) for d in jax.devices()],
    }
    sections: dict[str, list[str]] = {}
    for name in chosen:
        seconds, measured = timed(lambda name=name: BENCHMARKS[name](options))
        measured[f"{name}_bench_s"] = seconds
        results.update(measured)
        sections[name] = list(measured)
    results["sections"] = sections
    results["goals"] = goal_status(results)
    return results


def save_results(path: str | Path, results: dict[str, Any]) -> Path:
    """Write `run_benchmarks`' results to ``path`` as JSON, atomically (non-finite numbers
    as strings)."""
    return atomic_write_json(path, results)


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, list) and value and isinstance(value[0], list):
        return "; ".join(", ".join(f"{x:.3g}" for x in row) for row in value)
    return str(value)


def format_table(results: dict[str, Any]) -> str:
    """The goals first (value, goal, met), then every measurement by benchmark."""
    goals = results.get("goals", {})
    sections = results.get("sections", {})
    keys = [k for keys in sections.values() for k in keys] or list(results)
    width = max(len(k) for k in keys + ["measurement"])
    header = f"{'measurement':<{width}}  {'value':>12}  {'goal':>8}  met"
    lines = [f"devices: {', '.join(results.get('devices', []))}   quick: {results.get('quick')}"]
    if goals:
        lines += ["", "== goals", header]
        for key, status in goals.items():
            met = "yes" if status["met"] else "NO"
            lines.append(f"{key:<{width}}  {_shown(results[key]):>12}  {status['goal']:>8}  {met}")
    for name, section_keys in sections.items():
        lines += ["", f"== {name}", header]
        for key in section_keys:
            status = goals.get(key)
            goal, met = (status["goal"], "yes" if status["met"] else "NO") if status else ("", "")
            lines.append(f"{key:<{width}}  {_shown(results[key]):>12}  {goal:>8}  {met}".rstrip())
    return "\n".join(lines)
