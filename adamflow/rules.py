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
    Continuous: :math:`\dot m = a (g - m)` (weight = the rate ``a``).
    """
    return weight * (drive - moment)


def bias_correction(decay_exponent: Any, xp: Any = JAX_OPS) -> Any:
    r"""Bias-correction divisor :math:`1 - e^{-x}`.

    Discrete: :math:`x = n \ln(1/\beta_1)` gives :math:`1-\beta_1^n`. Continuous:
    :math:`x = a t` gives :math:`1 - e^{-a t}`. Computed as ``-expm1(-x)`` so it stays
    accurate as ``x -> 0``.
    """
    return -xp.expm1(-decay_exponent)


def preconditioner(v_hat: Any, eps: Any, xp: Any = JAX_OPS) -> Any:
    r"""Adam's diagonal preconditioner :math:`P = \sqrt{\hat v} + \varepsilon`."""
    return xp.sqrt_nonneg(v_hat) + eps


def normalized_update(m_hat: Any, v_hat: Any, eps: Any, xp: Any = JAX_OPS) -> Any:
    r"""Adam's update direction :math:`u = \hat m / P`, :math:`P = \sqrt{\hat v} + \varepsilon`
    (`preconditioner`)."""
    return m_hat / preconditioner(v_hat, eps, xp)


def parameter_velocity(update: Any, theta: Any, weight_decay: Any) -> Any:
    r"""Parameter velocity with decoupled weight decay: :math:`-(u + \lambda \theta)`.

    Discrete: :math:`\theta_n = \theta_{n-1} + \eta\,(\text{this})`; continuous:
    :math:`\dot\theta = \text{this}` in time :math:`t = n\eta`.
    """
    return -(update + weight_decay * theta)


def decay_per_step(factor: Any, xp: Any = JAX_OPS) -> Any:
    r"""The per-step log decay :math:`\ln(1/\beta)` of an EMA with factor β (β₁ or β₂), so
    that :math:`\beta^n = e^{-n \ln(1/\beta)}`.

    ``factor = 0`` gives ``+inf`` (no memory: the average equals its latest input).
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
    """
    if convention == "exact":
        return decay_per_step(factor, xp) / lr
    if convention == "euler":
        return (1.0 - factor) / lr
    if convention == "paper":  # backward expansion m_{n-1} = m - eta*mdot; inf for factor 0
        return (1.0 - factor) / (factor * lr)
    raise ValueError(f"convention must be 'exact', 'euler' or 'paper', got {convention!r}")
