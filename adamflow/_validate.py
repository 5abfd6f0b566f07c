"""Argument checks shared by the public functions: each error names the parameter and its
allowed range."""

from __future__ import annotations

import math

import numpy as np


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int, which must be an integer (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as a float, which must be finite and ``> 0`` (``>= 0`` with ``allow_zero``)."""
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, finite and {bound}, got {value!r}")
    x = float(value)
    if not (math.isfinite(x) and (x >= 0.0 if allow_zero else x > 0.0)):
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return x


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """``value``, which must be one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value  # type: ignore[return-value]
