"""The elementary formulas of Adam-type optimizers, written once.

Every reading of an optimizer spec -- the discrete recurrence (`_discrete`), the
continuous-time vector field (`_flows`) and the symbolic derivation (`symbolic`) -- builds
on these functions, so a formula lives in exactly one place. Each takes an array namespace
``xp`` (``jax.numpy`` by default; `adamflow.symbolic` passes a sympy namespace) so the same
code yields numbers and expressions.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = [
    "JAX_OPS",
    "NUMPY_OPS",
    "ema_increment",
    "bias_correction",
    "normalized_update",
    "preconditioner",
    "parameter_velocity",
    "decay_per_step",
    "moment_rate",
]


def _sqrt_nonneg(x: Any) -> Any:
    """``sqrt(max(x, 0))`` whose derivatives at ``x <= 0`` are 0, not ``inf·0 = nan``: a
    coordinate whose second moment is exactly 0 (a gradient that is exactly 0, e.g. an
    unused embedding row) then gives finite JVPs, as the corrected flows' jets need."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


#: The array namespace used for numbers. A namespace needs ``sqrt``, ``expm1``, ``log``,
#: ``sqrt_nonneg`` (sqrt(max(x, 0)); ``sqrt`` for symbols, where v >= 0 is known), and for
#: the flows ``where``, ``isfinite`` and ``zeros_like``.
JAX_OPS = SimpleNamespace(
    sqrt=jnp.sqrt,
    expm1=jnp.expm1,
    log=jnp.log,
    sqrt_nonneg=_sqrt_nonneg,
    where=jnp.where,
    isfinite=jnp.isfinite,
    zeros_like=jnp.zeros_like,
)
#: The same in NumPy, for the scipy backend with a NumPy gradient callable.
NUMPY_OPS = SimpleNamespace(
    sqrt=np.sqrt,
    expm1=np.expm1,
    log=np.log,
    sqrt_nonneg=lambda x: np.sqrt(np.maximum(x, 0.0)),
    where=np.where,
    isfinite=np.isfinite,
    zeros_like=np.zeros_like,
)


def ema_increment(moment: Any, drive: Any, weight: Any) -> Any:
    r"""Increment of an exponential moving average: ``weight * (drive - moment)``.

    Discrete: :math:`m_n - m_{n-1} = (1-\beta_1)(g_n - m_{n-1})` (weight ``1 - b1``).
    Continuous: :math:`\dot m = a (g - m)` (weight = the rate ``a``) (theory/adam.md §1, §3).

    Parameters
    ----------
    moment : Any
        The average's current value (:math:`m_{n-1}`, or :math:`m` of the flow): a number,
        an array or a sympy expression.
    drive : Any
        What the average follows (:math:`g_n`, or :math:`g^2` for the second moment).
    weight : Any
        ``1 - b1`` for a discrete step, the rate ``a`` for the flow's derivative.

    Returns
    -------
    Any
        ``weight * (drive - moment)``, broadcast as the operands' arithmetic does.

    Raises
    ------
    Nothing: it checks no argument (operands that do not broadcast fail in their arithmetic).

    Examples
    --------
    >>> from adamflow.rules import ema_increment
    >>> m = 0.5
    >>> m + ema_increment(m, 1.5, 1.0 - 0.9)  # 0.9 * 0.5 + 0.1 * 1.5
    0.6
    """
    return weight * (drive - moment)


def bias_correction(decay_exponent: Any, xp: Any = JAX_OPS) -> Any:
    r"""Bias-correction divisor :math:`1 - e^{-x}`.

    Discrete: :math:`x = n \ln(1/\beta_1)` gives :math:`1-\beta_1^n`. Continuous:
    :math:`x = a t` gives :math:`1 - e^{-a t}`. Computed as ``-expm1(-x)`` so it stays
    accurate as ``x -> 0`` (theory/adam.md §2).

    Parameters
    ----------
    decay_exponent : Any
        :math:`x`: a number, array or traced value (a sympy expression with a sympy ``xp``).
    xp : Any, optional
        The array namespace (`JAX_OPS` by default, `NUMPY_OPS`, or
        ``adamflow.symbolic.SYMPY_OPS``); it must provide ``expm1``.

    Returns
    -------
    Any
        :math:`1 - e^{-x}`, of ``xp``'s kind (a JAX array with the default ``xp``).

    Raises
    ------
    Nothing: it checks no argument; ``x = 0`` gives 0 and ``x = inf`` gives 1.

    Examples
    --------
    >>> from adamflow.rules import bias_correction, decay_per_step
    >>> round(float(bias_correction(3 * decay_per_step(0.9))), 6)  # 1 - 0.9**3
    0.271
    """
    return -xp.expm1(-decay_exponent)


def preconditioner(v_hat: Any, eps: Any, xp: Any = JAX_OPS) -> Any:
    r"""Adam's diagonal preconditioner :math:`P = \sqrt{\hat v} + \varepsilon`.

    The square root is ``xp.sqrt_nonneg``: :math:`\sqrt{\max(\hat v, 0)}`, whose derivatives
    at :math:`\hat v \le 0` are 0 with `JAX_OPS` (theory/adam.md §3 writes the update
    :math:`\hat m / P`).

    Parameters
    ----------
    v_hat : Any
        The bias-corrected second moment :math:`\hat v` (number, array or sympy expression).
    eps : Any
        :math:`\varepsilon`.
    xp : Any, optional
        The array namespace (`JAX_OPS` by default); it must provide ``sqrt_nonneg``.

    Returns
    -------
    Any
        :math:`P`, shaped as ``v_hat`` and ``eps`` broadcast together.

    Raises
    ------
    Nothing: it checks no argument; a negative ``v_hat`` counts as 0 and a nan stays nan.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from adamflow.rules import preconditioner
    >>> [round(float(p), 6) for p in preconditioner(jnp.array([4.0, -1.0]), 0.5)]
    [2.5, 0.5]
    """
    return xp.sqrt_nonneg(v_hat) + eps


def normalized_update(m_hat: Any, v_hat: Any, eps: Any, xp: Any = JAX_OPS) -> Any:
    r"""Adam's update direction :math:`u = \hat m / P`, :math:`P = \sqrt{\hat v} + \varepsilon`
    (`preconditioner`; theory/adam.md §3).

    Parameters
    ----------
    m_hat : Any
        The bias-corrected first moment :math:`\hat m` (number, array or sympy expression).
    v_hat : Any
        The bias-corrected second moment :math:`\hat v`.
    eps : Any
        :math:`\varepsilon`.
    xp : Any, optional
        The array namespace (`JAX_OPS` by default).

    Returns
    -------
    Any
        :math:`u`, shaped as the arguments broadcast together.

    Raises
    ------
    Nothing: it checks no argument; ``P = 0`` (``v_hat <= 0``, ``eps = 0``) gives inf or nan.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from adamflow.rules import normalized_update
    >>> u = normalized_update(jnp.array([1.0, -3.0]), jnp.array([4.0, 9.0]), 0.0)
    >>> [round(float(x), 6) for x in u]
    [0.5, -1.0]
    """
    return m_hat / preconditioner(v_hat, eps, xp)


def parameter_velocity(update: Any, theta: Any, weight_decay: Any) -> Any:
    r"""Parameter velocity with decoupled weight decay: :math:`-(u + \lambda \theta)`.

    Discrete: :math:`\theta_n = \theta_{n-1} + \eta\,(\text{this})`; continuous:
    :math:`\dot\theta = \text{this}` in time :math:`t = n\eta` (theory/adamw.md §1).

    Parameters
    ----------
    update : Any
        The normalized update :math:`u` (`normalized_update`).
    theta : Any
        The parameters :math:`\theta` (:math:`\theta_{n-1}` for a discrete step).
    weight_decay : Any
        :math:`\lambda`, 0 for Adam.

    Returns
    -------
    Any
        :math:`-(u + \lambda\theta)`, shaped as the arguments broadcast together.

    Raises
    ------
    Nothing: it checks no argument (operands that do not broadcast fail in their arithmetic).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from adamflow.rules import parameter_velocity
    >>> round(float(parameter_velocity(jnp.array(0.5), jnp.array(2.0), 0.1)), 6)
    -0.7
    """
    return -(update + weight_decay * theta)


def decay_per_step(factor: Any, xp: Any = JAX_OPS) -> Any:
    r"""The per-step log decay :math:`\ln(1/\beta)` of an EMA with factor β (β₁ or β₂), so
    that :math:`\beta^n = e^{-n \ln(1/\beta)}`.

    ``factor = 0`` gives ``+inf`` (no memory: the average equals its latest input)
    (theory/adam.md §1).

    Parameters
    ----------
    factor : Any
        :math:`\beta`, in [0, 1) for an optimizer (number, array or sympy expression).
    xp : Any, optional
        The array namespace (`JAX_OPS` by default); it must provide ``log``.

    Returns
    -------
    Any
        :math:`\ln(1/\beta) = -\ln\beta`, ``inf`` at :math:`\beta = 0`.

    Raises
    ------
    Nothing: it checks no argument; a factor above 1 gives a negative value, below 0 ``nan``.

    Examples
    --------
    >>> from adamflow.rules import decay_per_step
    >>> round(float(decay_per_step(0.9)), 6), float(decay_per_step(0.0))
    (0.105361, inf)
    """
    return -xp.log(factor)


def moment_rate(factor: Any, lr: Any, convention: str, xp: Any = JAX_OPS) -> Any:
    r"""Continuous relaxation rate of an EMA with factor β (β₁ or β₂) at learning rate η
    (theory/adam.md §1).

    ``"exact"``: :math:`a = \ln(1/\beta)/\eta`, so :math:`e^{-a t} = \beta^n` at
    :math:`t = n\eta` (the default). ``"euler"``: :math:`a = (1-\beta)/\eta`, the
    first-order expansion. ``"paper"``: :math:`a = (1-\beta)/(\beta\eta)`, the paper's
    backward expansion (reconstructed). ``factor = 0`` gives ``inf`` in the exact and paper
    conventions. Works on arrays and traced values.

    Parameters
    ----------
    factor : Any
        :math:`\beta` (:math:`\beta_1` for the rate ``a``, :math:`\beta_2` for ``b``).
    lr : Any
        The learning rate :math:`\eta`; ``1.0`` gives the rate per step.
    convention : str
        ``"exact"``, ``"euler"`` or ``"paper"``.
    xp : Any, optional
        The array namespace (`JAX_OPS` by default), used by the exact convention.

    Returns
    -------
    Any
        The rate :math:`a` (or :math:`b`), per unit of time :math:`t = n\eta`.

    Raises
    ------
    ValueError
        If ``convention`` is not ``"exact"``, ``"euler"`` or ``"paper"``.

    Examples
    --------
    >>> from adamflow.rules import moment_rate
    >>> [round(float(moment_rate(0.9, 0.1, c)), 6) for c in ("exact", "euler", "paper")]
    [1.053605, 1.0, 1.111111]
    """
    if convention == "exact":
        return decay_per_step(factor, xp) / lr
    if convention == "euler":
        return (1.0 - factor) / lr
    if convention == "paper":  # backward expansion m_{n-1} = m - eta*mdot; inf for factor 0
        return (1.0 - factor) / (factor * lr)
    raise ValueError(f"convention must be 'exact', 'euler' or 'paper', got {convention!r}")
