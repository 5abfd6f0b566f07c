"""The scipy backend: the same flow through ``scipy.integrate.solve_ivp``.

A JAX-traceable gradient gets a jitted vector field (and its Jacobian, for implicit
methods); a plain NumPy gradient callable is evaluated with NumPy operations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.integrate
from jax.flatten_util import ravel_pytree
from tqdm.auto import tqdm

from ..rules import JAX_OPS, NUMPY_OPS
from . import FlowModel, SolveResult

#: ``solve_ivp`` methods; the implicit ones get an exact Jacobian when the field is JAX.
METHODS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")
_IMPLICIT = ("Radau", "BDF", "LSODA")


class _MaxStepsReached(Exception):
    pass


def make_method(solver: Any) -> str:
    """``None`` -> ``"RK45"``; otherwise one of `METHODS` (case-insensitive)."""
    if solver is None:
        return "RK45"
    if isinstance(solver, str):
        for name in METHODS:
            if solver.lower() == name.lower():
                return name
    raise ValueError(f"solver must be one of {list(METHODS)} for the scipy backend, got {solver!r}")


def _numpy_raveler(
    tree: Any,
) -> tuple[np.ndarray, Callable[[np.ndarray], Any], Callable[[Any], np.ndarray]]:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    shapes = [np.shape(x) for x in leaves]
    sizes = [int(np.prod(s)) for s in shapes]
    splits = np.cumsum(sizes)[:-1]

    def unravel(flat: np.ndarray) -> Any:
        parts = np.split(flat, splits)
        return jax.tree_util.tree_unflatten(treedef, [p.reshape(s) for p, s in zip(parts, shapes)])

    def ravel(tree: Any) -> np.ndarray:
        return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree_util.tree_leaves(tree)])

    return ravel(tree), unravel, ravel


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
    numpy_grad: bool = False,
    t0: float = 0.0,
) -> SolveResult:
    """Integrate ``model`` from ``t0`` to ``t1`` with ``solve_ivp`` (``max_steps`` bounds the
    number of vector-field evaluations divided by the method's stages)."""
    method = make_method(solver)
    unravel: Callable[[Any], Any]  # NumPy or JAX arrays, depending on the gradient
    if numpy_grad:
        xp = NUMPY_OPS
        flat0, unravel, ravel = _numpy_raveler(jax.tree_util.tree_map(np.asarray, y0))

        def field(t: float, y: np.ndarray) -> np.ndarray:
            return ravel(model.field(t, unravel(y), params, grad_fn, xp))

        jac = None
    else:
        xp = JAX_OPS
        flat0_j, unravel = ravel_pytree(y0)
        flat0 = np.asarray(flat0_j)

        def flat_field(t: Any, y: Any) -> Any:
            return ravel_pytree(model.field(t, unravel(y), params, grad_fn, xp))[0]

        field_jit = jax.jit(flat_field)
        jac_jit = jax.jit(jax.jacfwd(flat_field, argnums=1))

        def field(t: float, y: np.ndarray) -> np.ndarray:
            return np.asarray(field_jit(t, jnp.asarray(y)))

        def jac_np(t: float, y: np.ndarray) -> np.ndarray:
            return np.asarray(jac_jit(t, jnp.asarray(y)))

        jac = jac_np if method in _IMPLICIT else None

    max_evals = max_steps * 13  # 13 = DOP853's stages per step, the largest here
    bar = tqdm(
        total=float(t1),
        desc="integrate (scipy)",
        disable=not progress,
        bar_format="{desc}: t = {n:.4g} of {total:.4g} |{bar}| {elapsed}<{remaining}",
    )
    calls = 0

    def counted(t: float, y: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls > max_evals:
            raise _MaxStepsReached
        if progress and t > bar.n:
            bar.update(t - bar.n)
        return field(t, y)

    try:
        options: dict[str, Any] = {"jac": jac} if jac is not None else {}
        sol = scipy.integrate.solve_ivp(
            counted,
            (float(t0), float(t1)),
            flat0,
            method=method,
            t_eval=save_ts,
            rtol=rtol,
            atol=atol,
            **options,
        )
        success, message = bool(sol.success), ("ok" if sol.success else str(sol.message))
        ys_flat = sol.y.T  # on failure: the saved times reached before it
        nfev, njev = int(sol.nfev), int(sol.njev)
    except _MaxStepsReached:
        success, message = False, f"max_steps={max_steps} reached ({max_evals} field evaluations)"
        ys_flat, nfev, njev = None, calls - 1, 0
    finally:
        bar.close()
    if ys_flat is None or ys_flat.shape[0] != len(save_ts):
        reached = np.zeros((0, flat0.size)) if ys_flat is None else ys_flat
        missing = np.full((len(save_ts) - reached.shape[0], flat0.size), np.nan)
        ys_flat = np.concatenate([reached, missing])
    if numpy_grad:
        rows = [unravel(np.asarray(row)) for row in ys_flat]
        ys = jax.tree_util.tree_map(lambda *r: np.stack(r), *rows)
        us_rows = [model.update(t, y, params, grad_fn, xp) for t, y in zip(save_ts, rows)]
        us = jax.tree_util.tree_map(lambda *r: np.stack([np.asarray(x) for x in r]), *us_rows)
    else:
        ys = jax.vmap(unravel)(jnp.asarray(ys_flat))
        us = jax.jit(jax.vmap(lambda t, y: model.update(t, y, params, grad_fn, xp)))(
            jnp.asarray(save_ts), ys
        )
    stats = {"num_steps": None, "grad_evals": nfev, "nfev": nfev, "njev": njev, "solver": method}
    return SolveResult(ys, us, stats, success, message)
