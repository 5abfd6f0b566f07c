"""Optimizer specifications: one frozen, validated object per optimizer.

k-Adam is a cascade of ``k`` adaptive-normalization levels; Adam is the cascade with
``k = 1`` and AdamW adds decoupled weight decay. The discrete recurrence, the
continuous-time flow and the symbolic form are all read off this one spec.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import jax.numpy as jnp

if TYPE_CHECKING:
    import optax


class Hyper(NamedTuple):
    """Array-valued hyperparameters of a spec (vmappable; ``k = len(betas)`` is static)."""

    lr: jnp.ndarray
    betas: jnp.ndarray  # shape (k,)
    gammas: jnp.ndarray  # shape (k,)
    eps: jnp.ndarray
    weight_decay: jnp.ndarray


def _check_real(name: str, value: object, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number ({allowed}), got {value!r}")
    as_float = float(value)
    if math.isnan(as_float):
        raise ValueError(f"{name} must be {allowed}, got nan")
    return as_float


def _check_lr(value: object) -> float:
    lr = _check_real("lr", value, "finite and > 0")
    if not (math.isfinite(lr) and lr > 0.0):
        raise ValueError(f"lr must be finite and > 0, got {value!r}")
    return lr


def _check_unit_interval(name: str, value: object) -> float:
    x = _check_real(name, value, "in [0, 1)")
    if not 0.0 <= x < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return x


def _check_nonnegative(name: str, value: object) -> float:
    x = _check_real(name, value, "finite and >= 0")
    if not (math.isfinite(x) and x >= 0.0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return x


def _check_levels(name: str, value: object, k: int) -> tuple[float, ...]:
    """A scalar (shared by all k levels) or a sequence of exactly k values in [0, 1)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != k:
            raise ValueError(
                f"{name} must be a scalar or a sequence of length k={k}, got length {len(value)}"
            )
        return tuple(_check_unit_interval(f"{name}[{i}]", x) for i, x in enumerate(value))
    if hasattr(value, "shape") and getattr(value, "shape", ()) != ():
        return _check_levels(name, list(value.tolist()), k)  # type: ignore[attr-defined]
    return (_check_unit_interval(name, value),) * k


@dataclass(frozen=True)
class KAdam:
    r"""k-Adam: ``k`` adaptive normalizations in cascade (THEORY.md §1-2).

    Discrete step ``n`` (``u⁽⁰⁾ = g_n = ∇L(θ_{n-1})``), for levels ``i = 1..k``::

        m⁽ⁱ⁾_n = β_i m⁽ⁱ⁾_{n-1} + (1-β_i) u⁽ⁱ⁻¹⁾_n
        v⁽ⁱ⁾_n = γ_i v⁽ⁱ⁾_{n-1} + (1-γ_i) (u⁽ⁱ⁻¹⁾_n)²
        u⁽ⁱ⁾_n = [m⁽ⁱ⁾_n/(1-β_iⁿ)] / (sqrt(v⁽ⁱ⁾_n/(1-γ_iⁿ)) + ε)
        θ_n    = θ_{n-1} - η (u⁽ᵏ⁾_n + λ θ_{n-1})

    Continuous time ``t = nη`` (leading order), rates ``a_i, b_i`` from the convention::

        dm_i/dt = a_i (u⁽ⁱ⁻¹⁾ - m_i),   dv_i/dt = b_i ((u⁽ⁱ⁻¹⁾)² - v_i)
        dθ/dt   = -(u⁽ᵏ⁾ + λ θ),  u⁽ⁱ⁾ = m̂_i/(sqrt(v̂_i)+ε),  m̂_i = m_i/(1-e^{-a_i t})

    Parameters
    ----------
    lr : learning rate η, finite and > 0.
    k : number of levels, an integer >= 1 (k = 1 is Adam).
    beta, gamma : first/second-moment factors in [0, 1); a scalar shared by all levels or a
        sequence of length k (level 1 first, the one fed by the gradient).
    eps : ε >= 0 added to sqrt(v̂).
    weight_decay : decoupled weight decay λ >= 0 (AdamW's).
    """

    lr: float
    k: int = 2
    beta: float | tuple[float, ...] = 0.9
    gamma: float | tuple[float, ...] = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    name: str = field(default="KAdam", compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, numbers.Integral):
            raise TypeError(f"k must be an integer >= 1, got {self.k!r}")
        if self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k!r}")
        k = int(self.k)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "lr", _check_lr(self.lr))
        betas = _check_levels("beta", self.beta, k)
        gammas = _check_levels("gamma", self.gamma, k)
        # Store scalars when all levels share a value, so reprs stay readable.
        object.__setattr__(self, "beta", betas[0] if len(set(betas)) == 1 else betas)
        object.__setattr__(self, "gamma", gammas[0] if len(set(gammas)) == 1 else gammas)
        object.__setattr__(self, "eps", _check_nonnegative("eps", self.eps))
        object.__setattr__(
            self, "weight_decay", _check_nonnegative("weight_decay", self.weight_decay)
        )

    @property
    def betas(self) -> tuple[float, ...]:
        """β_i for each level i = 1..k."""
        return self.beta if isinstance(self.beta, tuple) else (self.beta,) * self.k

    @property
    def gammas(self) -> tuple[float, ...]:
        """γ_i for each level i = 1..k."""
        return self.gamma if isinstance(self.gamma, tuple) else (self.gamma,) * self.k

    def hyper(self) -> Hyper:
        """The hyperparameters as arrays, for jitted and vmapped code."""
        return Hyper(
            lr=jnp.asarray(self.lr),
            betas=jnp.asarray(self.betas),
            gammas=jnp.asarray(self.gammas),
            eps=jnp.asarray(self.eps),
            weight_decay=jnp.asarray(self.weight_decay),
        )

    def replace(self, **changes: object) -> KAdam:
        """A copy with some fields changed (validated again)."""
        fields = dict(
            lr=self.lr,
            k=self.k,
            beta=self.beta,
            gamma=self.gamma,
            eps=self.eps,
            weight_decay=self.weight_decay,
            name=self.name,
        )
        fields.update(changes)
        return KAdam(**fields)  # type: ignore[arg-type]

    def as_optax(self) -> optax.GradientTransformation:
        """This optimizer as an ``optax.GradientTransformation`` (see `adamflow.as_optax`)."""
        from ._discrete import as_optax

        return as_optax(self)

    def __repr__(self) -> str:
        if self.name == "Adam":
            return f"Adam(lr={self.lr}, beta={self.beta}, gamma={self.gamma}, eps={self.eps})"
        if self.name == "AdamW":
            return (
                f"AdamW(lr={self.lr}, beta={self.beta}, gamma={self.gamma}, eps={self.eps}, "
                f"weight_decay={self.weight_decay})"
            )
        return (
            f"KAdam(lr={self.lr}, k={self.k}, beta={self.beta}, gamma={self.gamma}, "
            f"eps={self.eps}, weight_decay={self.weight_decay})"
        )


def Adam(lr: float, beta: float = 0.9, gamma: float = 0.999, eps: float = 1e-8) -> KAdam:
    r"""Adam: the one-level cascade, no weight decay (THEORY.md §1).

    ``m_n = β m + (1-β) g``, ``v_n = γ v + (1-γ) g²``,
    ``θ_n = θ_{n-1} - η m̂_n/(sqrt(v̂_n)+ε)``; flow ``dθ/dt = -m̂/(sqrt(v̂)+ε)``.
    Same as ``optax.adam(lr, b1=beta, b2=gamma, eps=eps)``.
    """
    return KAdam(lr, k=1, beta=beta, gamma=gamma, eps=eps, weight_decay=0.0, name="Adam")


def AdamW(
    lr: float,
    beta: float = 0.9,
    gamma: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
) -> KAdam:
    r"""AdamW: Adam with decoupled weight decay λ (THEORY.md §1).

    ``θ_n = θ_{n-1} - η (m̂_n/(sqrt(v̂_n)+ε) + λ θ_{n-1})``; flow
    ``dθ/dt = -(m̂/(sqrt(v̂)+ε) + λθ)``. Same as
    ``optax.adamw(lr, b1=beta, b2=gamma, eps=eps, weight_decay=weight_decay)``.
    """
    return KAdam(lr, k=1, beta=beta, gamma=gamma, eps=eps, weight_decay=weight_decay, name="AdamW")
