"""Integration backends: diffrax (JAX, default) and scipy's ``solve_ivp`` (fallback)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from .._trajectory import PyTree


class FlowModel(NamedTuple):
    """How one flow is integrated: its state, vector field, update and raw moments.

    ``field(t, y, params, grad_fn, xp)`` is the time derivative of the state ``y``;
    ``update(t, y, params, grad_fn, xp)`` the update ``u⁽ᵏ⁾`` applied there;
    ``init(k, theta0, zeros_like)`` the state at ``t = 0``; ``theta(y)`` the parameters;
    ``moments(t, y, params, xp)`` the raw moments ``(m_i, v_i)`` per level.
    """

    init: Callable[..., Any]
    field: Callable[..., Any]
    update: Callable[..., PyTree]
    theta: Callable[[Any], PyTree]
    moments: Callable[..., tuple[tuple[PyTree, ...], tuple[PyTree, ...]]]


class SolveResult(NamedTuple):
    """What a backend returns: states and updates at the saved times, counters, status."""

    ys: Any
    us: PyTree
    stats: dict[str, Any]
    success: bool
    message: str
