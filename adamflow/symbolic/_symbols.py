r"""Symbols and small sympy helpers shared by the derivations.

Public expressions use assumption-free Symbols: ``beta_1`` (Adam's momentum factor, optax's
``b1``), ``beta_2`` (second-moment factor, optax's ``b2``), ``eta`` (learning rate),
``epsilon``, ``lambda`` (decoupled weight decay), ``a`` and ``b`` (the moment rates), ``t``,
``n``, ``g``. A k-level cascade (k >= 2) has per-level ``beta_1,i``, ``beta_2,i``, ``m_i``,
``v_i``, ``a_i``, ``b_i`` (rendered :math:`\beta_{1,i}` …). The derivations work with
positive or real symbols of the same names; `plain` maps the results to the public ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, NamedTuple, TypeAlias

import sympy as sp

#: The `adamflow.rules` array namespace for symbols: ``expm1(x) = e^x - 1``; ``v >= 0`` is
#: known for the symbolic second moment, so ``sqrt_nonneg`` is ``sqrt``.
SYMPY_OPS = SimpleNamespace(
    sqrt=sp.sqrt,
    expm1=lambda x: sp.exp(x) - 1,
    log=sp.log,
    sqrt_nonneg=sp.sqrt,
)

#: A substitution rule as `sympy.Basic.subs` declares it (its Mapping key is invariant, so a
#: ``dict[Symbol, Expr]`` must be annotated with this type to be accepted).
Rule: TypeAlias = dict[sp.Basic | complex, sp.Basic | complex]

#: Names of the public symbols of Adam's two factors.
B1, B2 = "beta_1", "beta_2"


def pos(name: str) -> sp.Symbol:
    """A positive Symbol."""
    return sp.Symbol(name, positive=True)


def real(name: str) -> sp.Symbol:
    """A real Symbol."""
    return sp.Symbol(name, real=True)


def expr(value: Any) -> sp.Expr:
    """``value`` as a sympy expression; sympy's stubs type most results as `sympy.Basic`."""
    result = sp.sympify(value)
    if not isinstance(result, sp.Expr):
        raise TypeError(f"expected a sympy expression, got {type(result).__name__}: {result}")
    return result


def relational(value: Any) -> sp.Rel:
    """``value`` as a sympy relation (a condition derived by sympy, not a boolean constant)."""
    if not isinstance(value, sp.Rel):
        raise TypeError(f"expected a sympy relation, got {type(value).__name__}: {value}")
    return value


def plain(obj: Any) -> Any:
    """Replace every Symbol by the assumption-free Symbol of the same name."""
    if isinstance(obj, dict):
        return {key: plain(value) for key, value in obj.items()}
    if isinstance(obj, tuple):
        return tuple(plain(value) for value in obj)
    if isinstance(obj, sp.Basic):
        return obj.xreplace(
            {s: sp.Symbol(s.name) for s in obj.free_symbols if isinstance(s, sp.Symbol)}
        )
    return obj


def check_k(k: object) -> int:
    """``k`` if it is an integer >= 1 (the number of levels of a cascade)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return k


class LevelNames(NamedTuple):
    """Symbol names of one level of a k-level cascade."""

    m: str
    v: str
    b1: str
    b2: str
    a: str
    b: str


def level_names(k: int, i: int) -> LevelNames:
    """Names of level ``i`` (from 1): ``m, v, beta_1, beta_2, a, b`` for ``k = 1``, else
    ``m_i, v_i, beta_1,i, beta_2,i, a_i, b_i``."""
    if k == 1:
        return LevelNames("m", "v", B1, B2, "a", "b")
    return LevelNames(f"m_{i}", f"v_{i}", f"{B1},{i}", f"{B2},{i}", f"a_{i}", f"b_{i}")


def sqrt_positive(value: sp.Expr, positives: Sequence[sp.Expr]) -> sp.Expr:
    """``sqrt(value)`` knowing that each sub-expression in ``positives`` is > 0 (sympy cannot
    be told ``beta_1 < 1``; positive placeholders let it split the root)."""
    placeholders = {p: sp.Dummy(positive=True) for p in positives}
    root = sp.sqrt(value.xreplace(placeholders))
    return expr(root.xreplace({v: k for k, v in placeholders.items()}))
