"""Benchmarks behind ``scripts/bench.py``: each returns ratios measured in one run.

Times are medians over repeats after a warm-up call; compile ("cold") times are reported
separately. Nothing here is asserted: goals are printed beside the measurements.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._discrete import run_discrete
from ._integrate import integrate
from ._optimizers import Adam


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls (results blocked on)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cold_and_warm(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(first call time, median of the following ``repeats`` calls)."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start, median_time(fn, repeats)


def _logcosh_problem(dim: int, seed: int = 0) -> tuple[Callable[[Any], Any], jax.Array]:
    """A smooth non-quadratic loss ``Σ log cosh(Aθ - b) + 0.05|θ|²`` in ``dim`` dimensions."""
    key_a, key_b, key_t = jax.random.split(jax.random.PRNGKey(seed), 3)
    a_mat = jax.random.normal(key_a, (dim, dim)) / jnp.sqrt(dim)
    b_vec = jax.random.normal(key_b, (dim,))

    def loss(theta: jax.Array) -> jax.Array:
        return jnp.sum(jnp.log(jnp.cosh(a_mat @ theta - b_vec))) + 0.05 * jnp.sum(theta**2)

    return loss, jax.random.normal(key_t, (dim,))


def bench_diffrax_vs_scipy(quick: bool) -> dict[str, Any]:
    """The same leading-order flow (100-d log-cosh loss, rtol 1e-6) on both backends."""
    loss, theta0 = _logcosh_problem(100)
    opt = Adam(1e-3)
    steps = 500 if quick else 2000
    kwargs = dict(steps=steps, rtol=1e-6, atol=1e-9, save_steps=[0, steps])
    repeats = 3 if quick else 5

    def run(backend: str) -> Callable[[], Any]:
        return lambda: integrate(opt, loss, theta0, backend=backend, **kwargs).theta

    diffrax_cold, diffrax_warm = cold_and_warm(run("diffrax"), repeats)
    scipy_cold, scipy_warm = cold_and_warm(run("scipy"), repeats)
    return {
        "diffrax_vs_scipy": scipy_warm / diffrax_warm,
        "diffrax_vs_scipy_cold": scipy_cold / diffrax_cold,
        "diffrax_warm_s": diffrax_warm,
        "diffrax_cold_s": diffrax_cold,
        "scipy_warm_s": scipy_warm,
        "scipy_cold_s": scipy_cold,
        "goal_diffrax_vs_scipy": 10.0,
    }


def bench_grad_evals(quick: bool) -> dict[str, Any]:
    """Gradient evaluations of the flow per discrete step at lr = 1e-3 (100-d loss)."""
    loss, theta0 = _logcosh_problem(100)
    opt = Adam(1e-3)
    steps = 1000 if quick else 5000
    out: dict[str, Any] = {"grad_evals_steps": steps}
    for order in _available_orders():
        flow = integrate(opt, loss, theta0, steps=steps, order=order, save_steps=[0, steps])
        out[f"grad_evals_per_step_{order}"] = flow.stats["grad_evals"] / steps
    disc = run_discrete(opt, loss, theta0, steps, save_every=steps)
    out["grad_evals_per_step_discrete"] = disc.stats["grad_evals"] / steps
    return out


def _available_orders() -> list[str]:
    from ._integrate import MODELS

    return [order for order in ("leading", "corrected") if order in MODELS]


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


def bench_import(quick: bool) -> dict[str, Any]:
    """``import adamflow`` against ``import jax`` (fresh interpreters); sympy stays unloaded."""
    repeats = 3 if quick else 5
    adamflow_s, jax_s = _import_time("adamflow", repeats), _import_time("jax", repeats)
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


#: name -> benchmark; each returns a flat dict of measurements.
BENCHMARKS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "diffrax_vs_scipy": bench_diffrax_vs_scipy,
    "grad_evals": bench_grad_evals,
    "import": bench_import,
}


def run_benchmarks(names: list[str] | None, quick: bool) -> dict[str, Any]:
    """Run the named benchmarks (all by default) and merge their measurements."""
    results: dict[str, Any] = {"quick": quick, "devices": [str(d) for d in jax.devices()]}
    for name in names or list(BENCHMARKS):
        if name not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
        start = time.perf_counter()
        results.update(BENCHMARKS[name](quick))
        results[f"{name}_bench_s"] = time.perf_counter() - start
    return results


def format_table(results: dict[str, Any]) -> str:
    """Two aligned columns, numbers to 4 significant digits."""
    width = max(len(k) for k in results)
    rows = []
    for key, value in results.items():
        shown = f"{value:.4g}" if isinstance(value, float) and np.isfinite(value) else str(value)
        rows.append(f"{key:<{width}}  {shown}")
    return "\n".join(rows)
