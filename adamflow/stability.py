r"""Numeric bounds on Adam's update and the stable region of (β₁, β₂) (theory/stability.md §1).

Fast, vectorised NumPy versions of the results `adamflow.symbolic` derives (the tests check
them against the lambdified symbolic forms); this module does not import sympy.

With :math:`w_j = (1-\beta_1)\beta_1^j` and :math:`c_j = (1-\beta_2)\beta_2^j`, Cauchy-Schwarz gives
for every gradient sequence (raw moments, :math:`\varepsilon = 0`)

.. math:: |m_n|/\sqrt{v_n} \le \sqrt{\textstyle\sum_{j<n} w_j^2/c_j},

attained by :math:`g_{n-j} \propto w_j/c_j`. As :math:`n \to \infty` the bound is finite iff
:math:`\beta_2 > \beta_1^2`, where it equals
:math:`C(\beta_1,\beta_2) = (1-\beta_1)/\sqrt{(1-\beta_2)(1-\beta_1^2/\beta_2)}`; outside, it
grows by :math:`\beta_1/\sqrt\beta_2` per step. ``b1 = 0`` (no memory in the first moment)
is bounded for every β₂, including the corner ``b1 = b2 = 0`` where :math:`|u| = 1`.

Every function takes scalars or arrays (broadcast together) and returns a Python scalar for
scalar inputs, an array otherwise. ``b1`` and ``b2`` must lie in [0, 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .rules import NUMPY_OPS, moment_rate
from .validation import check_array, check_choice, check_int

__all__ = [
    "eps_capped_amplification",
    "growth_rate",
    "is_stable",
    "log_growth",
    "paper_criterion",
    "update_bound",
]


def _result(array: np.ndarray) -> Any:
    return array.item() if array.ndim == 0 else array


def _b1_b2(b1: Any, b2: Any) -> tuple[np.ndarray, np.ndarray]:
    b1 = check_array("b1", b1, 0.0, 1.0, high_open=True)
    b2 = check_array("b2", b2, 0.0, 1.0, high_open=True)
    b1, b2 = np.broadcast_arrays(b1, b2)
    return b1, b2


CONVENTIONS = ("exact", "euler", "paper")


def is_stable(b1: Any, b2: Any, convention: str = "exact") -> Any:
    r"""Whether the update is bounded (theory/stability.md §1). ``"exact"`` (the discrete
    optimizer's): :math:`\beta_2 > \beta_1^2` or :math:`\beta_1 = 0`. ``"euler"`` and
    ``"paper"``: the continuous condition :math:`b < 2a` under that convention's rates,
    :math:`\beta_2 > 2\beta_1 - 1` and :math:`\beta_2 > \beta_1/(2-\beta_1)` (the paper's
    :math:`C > 0`); :math:`\beta_1 = 0` is bounded in every convention.

    Parameters
    ----------
    b1, b2 : Any
        β₁ and β₂, scalars or arrays (broadcast together), each in [0, 1).
    convention : str, optional
        ``"exact"`` (the discrete optimizer's), ``"euler"`` or ``"paper"`` (the moment rates
        of `adamflow.rules.moment_rate`).

    Returns
    -------
    bool | np.ndarray
        A bool for scalar inputs, else a bool array of the broadcast shape.

    Raises
    ------
    TypeError
        If ``b1`` or ``b2`` is not a number or an array of numbers.
    ValueError
        If an entry of ``b1`` or ``b2`` is not in [0, 1), or their shapes do not broadcast;
        or ``convention`` is not one of the three.

    Examples
    --------
    >>> from adamflow.stability import is_stable
    >>> is_stable(0.9, 0.999), is_stable(0.9, 0.8)  # b2 > b1**2 = 0.81?
    (True, False)
    >>> is_stable([0.9, 0.99], 0.95).tolist()
    [True, False]
    """
    check_choice("convention", convention, CONVENTIONS)
    b1, b2 = _b1_b2(b1, b2)
    if convention != "exact":  # b1 = 0: no memory in m, |u| <= 1 whatever b2 (as exact)
        return _result((np.asarray(log_growth(b1, b2, convention)) < 0.0) | (b1 == 0.0))
    return _result((b2 > b1**2) | (b1 == 0.0))


def update_bound(b1: Any, b2: Any, n: int | None = None) -> Any:
    r"""The worst case of :math:`|m_n|/\sqrt{v_n}` over all gradient sequences.

    ``n=None``:
    :math:`C(\beta_1,\beta_2) = (1-\beta_1)/\sqrt{(1-\beta_2)(1-\beta_1^2/\beta_2)}` in the
    stable region, ``inf`` outside. ``n`` (an integer >= 1): the bound after ``n`` steps,

    .. math:: \sqrt{\sum_{j<n} w_j^2/c_j} = \frac{1-\beta_1}{\sqrt{1-\beta_2}}
              \sqrt{(r^n - 1)/(r - 1)},

    :math:`r = \beta_1^2/\beta_2` (:math:`\sqrt n` factor at :math:`r = 1`), finite
    everywhere.

    Parameters
    ----------
    b1, b2 : Any
        β₁ and β₂, scalars or arrays (broadcast together), each in [0, 1).
    n : int | None, optional
        ``None`` for the supremum over all steps, else the number of steps (>= 1).

    Returns
    -------
    float | np.ndarray
        The bound, a float for scalar inputs, else an array of the broadcast shape.

    Raises
    ------
    TypeError
        If ``b1`` or ``b2`` is not a number or an array of numbers.
    ValueError
        If an entry of ``b1`` or ``b2`` is not in [0, 1), or their shapes do not broadcast;
        or ``n`` is not an integer >= 1.

    Examples
    --------
    >>> from adamflow.stability import update_bound
    >>> round(update_bound(0.9, 0.999), 6), update_bound(0.9, 0.5)
    (7.270292, inf)
    >>> round(update_bound(0.9, 0.5, n=10), 6)
    1.995919
    """
    b1, b2 = _b1_b2(b1, b2)
    scale = (1.0 - b1) / np.sqrt(1.0 - b2)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # log r = 2 log(b1) - log(b2); b1 = 0 leaves only the j = 0 term.
        log_r = np.where(b1 > 0.0, 2.0 * np.log(b1) - np.log(b2), -np.inf)
        if n is None:
            stable = (b2 > b1**2) | (b1 == 0.0)  # the same test as is_stable
            series = np.where(stable, -1.0 / np.expm1(log_r), np.inf)
        else:
            n = check_int("n", n, 1)
            # (r^n - 1)/(r - 1), accurate near r = 1, equal to n at r = 1.
            ratio = np.expm1(n * log_r) / np.expm1(log_r)
            series = np.where(log_r == 0.0, float(n), np.where(np.isneginf(log_r), 1.0, ratio))
    return _result(scale * np.sqrt(series))


def log_growth(b1: Any, b2: Any, convention: str = "exact") -> Any:
    r"""Signed per-step change of :math:`\ln|u|` while a coordinate's gradient is zero (ε
    negligible, bias corrections settled): :math:`(b/2 - a)\eta` with the convention's
    rates (theory/stability.md §1). ``"exact"`` (what the discrete optimizer does):
    :math:`\ln(\beta_1/\sqrt{\beta_2}) = \tfrac12\ln(1/\beta_2) - \ln(1/\beta_1)`;
    ``"euler"``: :math:`((1-\beta_2) - 2(1-\beta_1))/2`; ``"paper"``: :math:`-C/2`
    (`paper_criterion`). Growth where positive. ``nan`` at ``b1 = b2 = 0``.

    Parameters
    ----------
    b1, b2 : Any
        β₁ and β₂, scalars or arrays (broadcast together), each in [0, 1).
    convention : str, optional
        ``"exact"`` (the discrete optimizer's), ``"euler"`` or ``"paper"`` (the moment rates
        of `adamflow.rules.moment_rate`).

    Returns
    -------
    float | np.ndarray
        The signed rate per step, a float for scalar inputs, else an array.

    Raises
    ------
    TypeError
        If ``b1`` or ``b2`` is not a number or an array of numbers.
    ValueError
        If an entry of ``b1`` or ``b2`` is not in [0, 1), or their shapes do not broadcast;
        or ``convention`` is not one of the three.

    Examples
    --------
    >>> from adamflow.stability import log_growth
    >>> round(log_growth(0.9, 0.999), 6), round(log_growth(0.9, 0.5), 6)
    (-0.10486, 0.241213)
    >>> round(log_growth(0.9, 0.5, "euler"), 6)
    0.15
    """
    check_choice("convention", convention, CONVENTIONS)
    b1, b2 = _b1_b2(b1, b2)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_b = moment_rate(b2, 1.0, convention, NUMPY_OPS)
        rate = 0.5 * rate_b - moment_rate(b1, 1.0, convention, NUMPY_OPS)
    return _result(rate)


def paper_criterion(b1: Any, b2: Any) -> Any:
    r"""The paper's stability quantity :math:`C = 2(1-\beta_1)/\beta_1 - (1-\beta_2)/\beta_2`
    (its Eq. 6 in Adam's letters; theory/stability.md §1): bounded updates for :math:`C > 0`
    and growth by :math:`|C|/2` per step for :math:`C < 0` in its model. It is
    :math:`-2` `log_growth` ``(b1, b2, "paper")``.

    Parameters
    ----------
    b1, b2 : Any
        β₁ and β₂, scalars or arrays (broadcast together), each in [0, 1).

    Returns
    -------
    float | np.ndarray
        :math:`C`, a float for scalar inputs, else an array (``inf`` where ``b1 = 0``).

    Raises
    ------
    TypeError
        If ``b1`` or ``b2`` is not a number or an array of numbers.
    ValueError
        If an entry of ``b1`` or ``b2`` is not in [0, 1), or their shapes do not broadcast.

    Examples
    --------
    >>> from adamflow.stability import paper_criterion
    >>> round(paper_criterion(0.9, 0.999), 6), round(paper_criterion(0.9, 0.5), 6)
    (0.221221, -0.777778)
    """
    return _result(-2.0 * np.asarray(log_growth(b1, b2, "paper")))


def growth_rate(b1: Any, b2: Any, convention: str = "exact") -> Any:
    r"""Per-step log growth of the bound, `log_growth` clipped at 0
    (:math:`\max(0, \ln(\beta_1/\sqrt\beta_2))` in the default ``"exact"`` convention,
    :math:`\max(0, -C/2)` in ``"paper"``): zero in the stable region, ``inf`` for
    ``b2 = 0 < b1``. In time :math:`t = n\eta` the rate is this divided by η,
    :math:`b/2 - a` (theory/stability.md §1).

    Parameters
    ----------
    b1, b2 : Any
        β₁ and β₂, scalars or arrays (broadcast together), each in [0, 1).
    convention : str, optional
        ``"exact"`` (the discrete optimizer's), ``"euler"`` or ``"paper"`` (the moment rates
        of `adamflow.rules.moment_rate`).

    Returns
    -------
    float | np.ndarray
        The rate (>= 0), a float for scalar inputs, else an array.

    Raises
    ------
    TypeError
        If ``b1`` or ``b2`` is not a number or an array of numbers.
    ValueError
        If an entry of ``b1`` or ``b2`` is not in [0, 1), or their shapes do not broadcast;
        or ``convention`` is not one of the three.

    Examples
    --------
    >>> from adamflow.stability import growth_rate
    >>> growth_rate(0.9, 0.999), round(growth_rate(0.9, 0.5), 6)
    (0.0, 0.241213)
    >>> round(growth_rate(0.9, 0.5, "paper"), 6), growth_rate(0.5, 0.0)
    (0.388889, inf)
    """
    rate = np.asarray(log_growth(b1, b2, convention))
    return _result(np.where(np.isnan(rate) | (rate < 0.0), 0.0, rate))


def eps_capped_amplification(
    b1: Any, b2: Any, grad_scale: Any, eps: Any, *, sharp: bool = False
) -> Any:
    r"""Largest update of a coordinate whose gradient of size ``grad_scale`` = G switches off
    (moments in equilibrium before, bias corrections ≈ 1): the growth by β₁/√β₂ per step stops
    once :math:`\sqrt{\hat v}` reaches ε.

    With :math:`p = 2\ln(1/\beta_1)/\ln(1/\beta_2)` (:math:`p < 1` iff :math:`\beta_2 < \beta_1^2`):
    ``sharp=False`` gives the simple estimate :math:`(G/\varepsilon)^{1-p}`; ``sharp=True``
    the exact maximum over continuous steps, :math:`p^p(1-p)^{1-p}(G/\varepsilon)^{1-p}`
    (a factor 1/2 to 1 below), reached at :math:`\beta_2^{\nu/2} = p\varepsilon/((1-p)G)`.
    Where there is no growth (stable region, or the peak would come before the switch-off)
    the largest update is the first, :math:`G/(G+\varepsilon)`, and that is returned
    (theory/stability.md §2).

    Parameters
    ----------
    b1, b2 : Any
        β₁ and β₂, scalars or arrays (broadcast together), each in [0, 1).
    grad_scale : Any
        :math:`G`, the gradient's size before it switches off, > 0.
    eps : Any
        :math:`\varepsilon` > 0.
    sharp : bool, optional
        The exact maximum instead of the simple estimate.

    Returns
    -------
    float | np.ndarray
        The largest :math:`|u|`, a float for scalar inputs, else an array of the broadcast
        shape of all four arrays.

    Raises
    ------
    TypeError
        If ``b1``, ``b2``, ``grad_scale`` or ``eps`` is not a number or an array of numbers.
    ValueError
        If an entry of ``b1`` or ``b2`` is not in [0, 1), of ``grad_scale`` or ``eps`` not
        finite and > 0, or the shapes do not broadcast.

    Examples
    --------
    >>> from adamflow.stability import eps_capped_amplification
    >>> round(eps_capped_amplification(0.9, 0.5, 1.0, 1e-8))  # (G/eps)**(1 - p)
    369786
    >>> round(eps_capped_amplification(0.9, 0.5, 1.0, 1e-8, sharp=True))
    200077
    >>> round(eps_capped_amplification(0.9, 0.999, 1.0, 1e-8), 6)  # stable: G/(G + eps)
    1.0
    """
    b1, b2 = _b1_b2(b1, b2)
    G = check_array("grad_scale", grad_scale, 0.0, low_open=True)
    eps = check_array("eps", eps, 0.0, low_open=True)
    b1, b2, G, eps = np.broadcast_arrays(b1, b2, G, eps)
    first = G / (G + eps)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p = np.log(b1) / (0.5 * np.log(b2))  # b1 = 0 -> inf; b2 = 0 -> 0
        p = np.where(b1 == 0.0, np.inf, p)
        growing = p < 1.0
        q = np.where(growing, 1.0 - p, 1.0)
        p_safe = np.where(growing, p, 0.0)
        leading = (G / eps) ** q
        prefactor = np.where(p_safe > 0.0, p_safe**p_safe, 1.0) * q**q
        peak_reached = p_safe * eps < q * G  # y_* = p eps / ((1-p) G) < 1
        estimate = prefactor * leading if sharp else leading
        amplification = np.where(growing & peak_reached, np.maximum(estimate, first), first)
    return _result(amplification)
