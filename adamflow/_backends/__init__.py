"""Integration backends: diffrax (JAX, default) and scipy's ``solve_ivp`` (fallback)."""

from __future__ import annotations

from typing import Any, NamedTuple

from .._flows import FlowModel as FlowModel
from .._trajectory import PyTree


class SolveResult(NamedTuple):
    """What a backend returns: states and updates at the saved times, counters, status."""

    ys: Any
    us: PyTree
    stats: dict[str, Any]
    success: bool
    message: str
