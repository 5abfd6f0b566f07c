"""Argument checks shared by every public function: each error names the parameter and its
allowed range. Scalars and arrays are checked by the same interval test (`check_array`),
so a rule such as "in [0, 1)" is written once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "check_real",
    "check_positive",
    "check_unit_interval",
    "check_array",
    "check_levels",
    "check_grid",
    "check_int",
    "check_choice",
    "check_bool",
]

#: Python, NumPy and 0-d JAX/NumPy array scalars are all accepted as reals.
_REAL_TYPES = (int, float, np.integer, np.floating)


def _describe(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is None and high is None:
        return "finite"
    if high is None:
        return f"finite and {'>' if low_open else '>='} {low:g}"
    if low is None:
        return f"finite and {'<' if high_open else '<='} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def _inside(x: Any, low: float | None, high: float | None, low_open: bool, high_open: bool) -> Any:
    ok = np.isfinite(x)
    if low is not None:
        ok &= (x > low) if low_open else (x >= low)
    if high is not None:
        ok &= (x < high) if high_open else (x <= high)
    return ok


def check_real(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a float, which must be a finite real number inside the given interval
    (bounds are closed unless ``low_open``/``high_open``). A 0-d array counts as a scalar."""
    allowed = _describe(low, high, low_open, high_open)
    if hasattr(value, "shape") and getattr(value, "shape", None) == ():
        value = np.asarray(value).item()
    if isinstance(value, bool) or not isinstance(value, _REAL_TYPES):
        raise TypeError(f"{name} must be a real number, {allowed}, got {value!r}")
    x = float(value)
    if not _inside(x, low, high, low_open, high_open):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return x


def check_positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as a float, finite and ``> 0`` (``>= 0`` with ``allow_zero``)."""
    return check_real(name, value, 0.0, low_open=not allow_zero)


def check_unit_interval(name: str, value: object) -> float:
    """A decay factor (β₁, β₂): a real number in [0, 1)."""
    return check_real(name, value, 0.0, 1.0, high_open=True)


def check_array(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> np.ndarray:
    """``value`` as a float64 array whose every entry is finite and inside the interval;
    the error quotes the first offending entry."""
    allowed = _describe(low, high, low_open, high_open)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    bad = ~_inside(array, low, high, low_open, high_open)
    if np.any(bad):
        example = array[bad].flat[0] if array.ndim else array.item()
        raise ValueError(f"{name} must be {allowed}, got {float(example)!r}")
    return array


def check_levels(name: str, value: object, k: int) -> tuple[float, ...]:
    """A per-level decay factor of a k-level cascade: a scalar in [0, 1) shared by every
    level, or a sequence (or 1-D array) of exactly ``k`` such values, level 1 first."""
    if hasattr(value, "shape") and getattr(value, "shape", ()) != ():
        value = list(np.asarray(value).tolist())
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != k:
            raise ValueError(
                f"{name} must be a scalar or a sequence of length k={k}, got length {len(value)}"
            )
        return tuple(check_unit_interval(f"{name}[{i}]", x) for i, x in enumerate(value))
    return (check_unit_interval(name, value),) * k


def check_grid(name: str, values: Any) -> np.ndarray:
    """A non-empty, strictly monotone 1-D grid of decay factors inside [0, 1)."""
    grid = check_array(name, values, 0.0, 1.0, high_open=True)
    if grid.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence, got shape {grid.shape}")
    if grid.size == 0:
        raise ValueError(f"{name} must not be empty")
    steps = np.diff(grid)
    if grid.size > 1 and not (np.all(steps > 0) or np.all(steps < 0)):
        raise ValueError(f"{name} must be strictly increasing or strictly decreasing")
    return grid


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int, which must be an integer (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """``value``, which must be one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value  # type: ignore[return-value]


def check_bool(name: str, value: object) -> bool:
    """``value``, which must be ``True`` or ``False`` (NumPy booleans included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)
