r"""Grids of (β₁, β₂) for `adamflow.phase_diagram`, and the default sweep settings."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..validation import check_choice, check_int, check_real

SPACINGS = ("log", "linear")

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


def grid(low: float, high: float, n: int, *, spacing: str = "log") -> np.ndarray:
    r"""``n`` decay factors from ``low`` to ``high`` (both in [0, 1)).

    ``"log"``: :math:`x_i = 1 - (1-\mathrm{low})\,r^{i}`, :math:`r = ((1-\mathrm{high})/
    (1-\mathrm{low}))^{1/(n-1)}` -- :math:`1-x` spaced logarithmically, fine near 1, where
    Adam's β₁ and β₂ live (the boundary β₂ = β₁² of theory/stability.md §1 is then nearly a
    straight line, :math:`1-\beta_2 \approx 2(1-\beta_1)`); ``"linear"``: :math:`x` spaced
    evenly.

    Parameters
    ----------
    low : float
        The first value, in [0, 1).
    high : float
        The last value, in [0, 1) (above or below ``low``).
    n : int
        How many values (>= 1; ``n = 1`` gives ``[low]``).
    spacing : str, optional
        ``"log"`` (default) or ``"linear"``.

    Returns
    -------
    numpy.ndarray
        ``n`` float64 values from ``low`` to ``high``.

    Raises
    ------
    ValueError
        ``n`` < 1 or not an integer; ``spacing`` not ``"log"`` or ``"linear"``; ``low`` or
        ``high`` outside [0, 1) or not finite.
    TypeError
        ``low`` or ``high`` not a real number.

    Examples
    --------
    >>> from adamflow.phase import grid
    >>> [round(float(x), 5) for x in grid(0.5, 0.999, 3)]  # 1 - x: 0.5, 0.0224, 0.001
    [0.5, 0.97764, 0.999]
    >>> grid(0.0, 0.5, 3, spacing="linear").tolist()
    [0.0, 0.25, 0.5]
    """
    n = check_int("n", n, 1)
    spacing = check_choice("spacing", spacing, SPACINGS)
    low = check_real("low", low, 0.0, 1.0, high_open=True)
    high = check_real("high", high, 0.0, 1.0, high_open=True)
    if spacing == "log":
        return 1.0 - np.logspace(np.log10(1.0 - low), np.log10(1.0 - high), n)
    return np.linspace(low, high, n)


def default_grid(n: int = DEFAULT_GRID, *, spacing: str = "log") -> tuple[np.ndarray, np.ndarray]:
    """The default ``(b1s, b2s)``: `grid` over `DEFAULT_B1_RANGE` and `DEFAULT_B2_RANGE`,
    ``n`` values each (``n`` × ``n`` cells), crossed diagonally by the boundary β₂ = β₁²
    (theory/stability.md §1) and holding Adam's default (0.9, 0.999).

    Parameters
    ----------
    n : int, optional
        Values per axis (>= 1; default `DEFAULT_GRID`, 40).
    spacing : str, optional
        ``"log"`` (default) or ``"linear"``, as in `grid`.

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray]
        ``(b1s, b2s)``: β₁ from 0.5 to 0.999 and β₂ from 0.1 to 0.9999, ``n`` values each.

    Raises
    ------
    ValueError
        ``n`` < 1 or not an integer; ``spacing`` not ``"log"`` or ``"linear"``.

    Examples
    --------
    >>> from adamflow.phase import default_grid
    >>> b1s, b2s = default_grid(4)
    >>> b1s.round(4).tolist(), b2s.round(4).tolist()
    ([0.5, 0.937, 0.9921, 0.999], [0.1, 0.9567, 0.9979, 0.9999])
    """
    return (
        grid(*DEFAULT_B1_RANGE, n, spacing=spacing),
        grid(*DEFAULT_B2_RANGE, n, spacing=spacing),
    )
