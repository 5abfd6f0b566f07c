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
    (bounds are closed unless ``low_open``/``high_open``). A 0-d array counts as a scalar.

    Parameters
    ----------
    name : str
        The parameter's name, quoted by the error message.
    value : object
        A Python, NumPy or 0-d array real number (not a bool).
    low, high : float | None, optional
        The interval's bounds; ``None`` leaves that side unbounded.
    low_open, high_open : bool, optional
        Exclude ``low`` / ``high`` from the interval.

    Returns
    -------
    float
        ``value`` as a Python float.

    Raises
    ------
    TypeError
        If ``value`` is a bool or not a real number (a string, a complex, a non-0-d array).
    ValueError
        If ``value`` is not finite or lies outside the interval; the message names ``name``
        and the allowed range.

    Examples
    --------
    >>> from adamflow.validation import check_real
    >>> check_real("b1", 0.9, 0.0, 1.0, high_open=True)
    0.9
    >>> check_real("b1", 1.0, 0.0, 1.0, high_open=True)
    Traceback (most recent call last):
    ...
    ValueError: b1 must be in [0, 1), got 1.0
    """
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
    """``value`` as a float, finite and ``> 0`` (``>= 0`` with ``allow_zero``).

    Parameters
    ----------
    name : str
        The parameter's name, quoted by the error message.
    value : object
        A real number (see `check_real`).
    allow_zero : bool, optional
        Accept 0 as well.

    Returns
    -------
    float
        ``value`` as a Python float.

    Raises
    ------
    TypeError
        If ``value`` is a bool or not a real number.
    ValueError
        If ``value`` is not finite, or ``<= 0`` (``< 0`` with ``allow_zero``).

    Examples
    --------
    >>> from adamflow.validation import check_positive
    >>> check_positive("eps", 0, allow_zero=True)
    0.0
    >>> check_positive("lr", 0.0)
    Traceback (most recent call last):
    ...
    ValueError: lr must be finite and > 0, got 0.0
    """
    return check_real(name, value, 0.0, low_open=not allow_zero)


def check_unit_interval(name: str, value: object) -> float:
    """A decay factor (β₁, β₂): a real number in [0, 1).

    Parameters
    ----------
    name : str
        The parameter's name, quoted by the error message.
    value : object
        A real number (see `check_real`).

    Returns
    -------
    float
        ``value`` as a Python float.

    Raises
    ------
    TypeError
        If ``value`` is a bool or not a real number.
    ValueError
        If ``value`` is not in [0, 1).

    Examples
    --------
    >>> from adamflow.validation import check_unit_interval
    >>> check_unit_interval("b2", 0.999)
    0.999
    >>> check_unit_interval("b2", 1.0)
    Traceback (most recent call last):
    ...
    ValueError: b2 must be in [0, 1), got 1.0
    """
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
    the error quotes the first offending entry.

    Parameters
    ----------
    name : str
        The parameter's name, quoted by the error message.
    value : Any
        A number or an array-like of numbers.
    low, high : float | None, optional
        The interval's bounds; ``None`` leaves that side unbounded.
    low_open, high_open : bool, optional
        Exclude ``low`` / ``high`` from the interval.

    Returns
    -------
    np.ndarray
        ``value`` as a float64 array (0-d for a scalar).

    Raises
    ------
    TypeError
        If ``value`` cannot be converted to a float64 array (strings, ragged lists).
    ValueError
        If an entry is not finite or lies outside the interval.

    Examples
    --------
    >>> from adamflow.validation import check_array
    >>> check_array("eps", [1e-8, 0.0], 0.0).tolist()
    [1e-08, 0.0]
    >>> check_array("eps", [1e-8, -1.0], 0.0)
    Traceback (most recent call last):
    ...
    ValueError: eps must be finite and >= 0, got -1.0
    """
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
    level, or a sequence (or 1-D array) of exactly ``k`` such values, level 1 first.

    Parameters
    ----------
    name : str
        The parameter's name, quoted by the error message.
    value : object
        A real number, or a sequence or 1-D array of ``k`` real numbers.
    k : int
        The number of levels.

    Returns
    -------
    tuple[float, ...]
        ``k`` floats, level 1 first (a scalar repeated ``k`` times).

    Raises
    ------
    TypeError
        If a value is a bool or not a real number.
    ValueError
        If a sequence's length is not ``k``, or a value is not in [0, 1) (the message names
        ``name[i]``).

    Examples
    --------
    >>> from adamflow.validation import check_levels
    >>> check_levels("b1", 0.9, 2), check_levels("b1", [0.9, 0.5], 2)
    ((0.9, 0.9), (0.9, 0.5))
    >>> check_levels("b1", [0.9], 2)
    Traceback (most recent call last):
    ...
    ValueError: b1 must be a scalar or a sequence of length k=2, got length 1
    """
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
    """A non-empty, strictly monotone 1-D grid of decay factors inside [0, 1).

    Parameters
    ----------
    name : str
        The parameter's name, quoted by the error message.
    values : Any
        An array-like of numbers.

    Returns
    -------
    np.ndarray
        The grid as a 1-D float64 array.

    Raises
    ------
    TypeError
        If ``values`` cannot be converted to a float64 array.
    ValueError
        If an entry is not in [0, 1), the grid is not 1-D, is empty, or is not strictly
        increasing or strictly decreasing.

    Examples
    --------
    >>> from adamflow.validation import check_grid
    >>> check_grid("b1s", [0.0, 0.5, 0.9]).tolist()
    [0.0, 0.5, 0.9]
    >>> check_grid("b1s", [0.5, 0.5])
    Traceback (most recent call last):
    ...
    ValueError: b1s must be strictly increasing or strictly decreasing
    """
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
    """``value`` as an int, which must be an integer (not a bool) ``>= minimum``.

    Parameters
    ----------
    name : str
        The parameter's name, quoted by the error message.
    value : object
        A Python or NumPy integer.
    minimum : int
        The smallest allowed value.

    Returns
    -------
    int
        ``value`` as a Python int.

    Raises
    ------
    ValueError
        If ``value`` is a bool, not an integer (a float such as ``3.0`` included) or below
        ``minimum``.

    Examples
    --------
    >>> from adamflow.validation import check_int
    >>> check_int("steps", 10, 1)
    10
    >>> check_int("steps", 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: steps must be an integer >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """``value``, which must be one of ``allowed``.

    Parameters
    ----------
    name : str
        The parameter's name, quoted by the error message.
    value : object
        The choice.
    allowed : tuple[str, ...]
        The allowed choices.

    Returns
    -------
    str
        ``value`` unchanged.

    Raises
    ------
    ValueError
        If ``value`` is not in ``allowed``; the message lists them.

    Examples
    --------
    >>> from adamflow.validation import check_choice
    >>> check_choice("metric", "max", ("final", "max"))
    'max'
    >>> check_choice("metric", "mean", ("final", "max"))
    Traceback (most recent call last):
    ...
    ValueError: metric must be one of ['final', 'max'], got 'mean'
    """
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value  # type: ignore[return-value]


def check_bool(name: str, value: object) -> bool:
    """``value``, which must be ``True`` or ``False`` (NumPy booleans included).

    Parameters
    ----------
    name : str
        The parameter's name, quoted by the error message.
    value : object
        A Python or NumPy bool.

    Returns
    -------
    bool
        ``value`` as a Python bool.

    Raises
    ------
    TypeError
        If ``value`` is not a bool (``0`` and ``1`` included).

    Examples
    --------
    >>> from adamflow.validation import check_bool
    >>> check_bool("throw", True)
    True
    >>> check_bool("throw", 1)
    Traceback (most recent call last):
    ...
    TypeError: throw must be True or False, got 1
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)
