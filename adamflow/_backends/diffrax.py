"""The diffrax backend: the flow integrated in JAX (jitted; CPU or GPU)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._trajectory import save_bucket
from ..rules import JAX_OPS
from . import FlowModel, SolveResult

#: Solvers selectable by name (``solver="kvaerno5"`` and so on).
SOLVERS: dict[str, type[diffrax.AbstractSolver]] = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "kvaerno3": diffrax.Kvaerno3,
    "kvaerno5": diffrax.Kvaerno5,
}


def make_solver(solver: Any) -> diffrax.AbstractSolver:
    """``None`` -> Tsit5; a name from `SOLVERS`; or a diffrax solver instance as is."""
    if solver is None:
        return diffrax.Tsit5()
    if isinstance(solver, str):
        key = solver.lower()
        if key not in SOLVERS:
            raise ValueError(f"solver must be one of {sorted(SOLVERS)} for diffrax, got {solver!r}")
        return SOLVERS[key]()
    if isinstance(solver, diffrax.AbstractSolver):
        return solver
    raise TypeError(f"solver must be None, a name or a diffrax solver, got {solver!r}")


class _LabelledProgressMeter(diffrax.TqdmProgressMeter):
    """diffrax's tqdm meter, labelled with what it measures (its bar is the share of the
    time span [0, t1] solved). Overrides the meter's bar factory; if diffrax renames that
    hook, the unlabelled bar is shown instead."""

    @staticmethod
    def _init_bar() -> Any:
        from tqdm.auto import tqdm

        return tqdm(
            total=100,
            desc="integrate (diffrax)",
            bar_format="{desc}: {n:.1f}% of [0, t1] |{bar}| {elapsed}<{remaining}",
        )


def grad_evals_per_step(solver: diffrax.AbstractSolver) -> int | None:
    """New vector-field evaluations per step of an explicit Runge-Kutta solver (FSAL aware);
    ``None`` for implicit solvers, whose Newton iterations are not counted."""
    tableau = getattr(solver, "tableau", None)
    if tableau is None or getattr(tableau, "implicit", False):
        return None
    return int(tableau.num_stages) - (1 if tableau.fsal else 0)


@eqx.filter_jit
def _solve(
    model: FlowModel,
    grad_fn: Callable[[Any], Any],
    params: Any,
    y0: Any,
    save_ts: jax.Array,
    t0: jax.Array,
    t1: jax.Array,
    solver: diffrax.AbstractSolver,
    rtol: jax.Array,
    atol: jax.Array,
    max_steps: int,
    progress_meter: diffrax.AbstractProgressMeter,
) -> Any:
    term = diffrax.ODETerm(lambda t, y, args: model.field(t, y, args, grad_fn, JAX_OPS))
    sol = diffrax.diffeqsolve(
        term,
        solver,
        t0=t0,
        t1=t1,
        dt0=None,
        y0=y0,
        args=params,
        saveat=diffrax.SaveAt(ts=save_ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        throw=False,
        progress_meter=progress_meter,
    )
    us = jax.vmap(lambda t, y: model.update(t, y, params, grad_fn, JAX_OPS))(sol.ts, sol.ys)
    return sol.ys, us, sol.stats, sol.result


def solve(
    model: FlowModel,
    grad_fn: Callable[[Any], Any],
    params: Any,
    y0: Any,
    save_ts: np.ndarray,
    t1: float,
    *,
    solver: Any,
    rtol: float,
    atol: float,
    max_steps: int,
    progress: bool,
    t0: float = 0.0,
) -> SolveResult:
    """Integrate ``model`` from ``t0`` to ``t1`` with an adaptive step (PID controller)."""
    solver = make_solver(solver)
    meter = _LabelledProgressMeter() if progress else diffrax.NoProgressMeter()
    params = jax.tree_util.tree_map(jnp.asarray, params)
    n_saves = len(save_ts)  # padded with the last time: one compile for many save counts
    padded = np.full(save_bucket(n_saves, y0), save_ts[-1], dtype=float)
    padded[:n_saves] = save_ts
    ys, us, stats, result = _solve(
        model,
        grad_fn,
        params,
        y0,
        jnp.asarray(padded),
        jnp.asarray(t0),
        jnp.asarray(t1),
        solver,
        jnp.asarray(rtol),  # arrays, not floats: a tolerance sweep compiles once
        jnp.asarray(atol),
        int(max_steps),
        meter,
    )
    ys, us = (jax.tree_util.tree_map(lambda x: x[:n_saves], tree) for tree in (ys, us))
    num_steps = int(stats["num_steps"])
    per_step = grad_evals_per_step(solver)
    out_stats = {
        "num_steps": num_steps,
        "num_accepted_steps": int(stats["num_accepted_steps"]),
        "num_rejected_steps": int(stats["num_rejected_steps"]),
        "grad_evals": None if per_step is None else 1 + per_step * num_steps,
        "solver": type(solver).__name__,
    }
    success = result == diffrax.RESULTS.successful
    message = "ok" if success else str(diffrax.RESULTS[result])
    return SolveResult(ys, us, out_stats, bool(success), message)
