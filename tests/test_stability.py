"""Numeric bounds (adamflow.stability) against the symbolic forms and against the EMA itself."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from scipy.linalg import eigh

from adamflow import stability, symbolic

b1, b2 = sp.symbols("beta_1 beta_2")
STABLE_POINTS = [(0.9, 0.999), (0.9, 0.95), (0.5, 0.3), (0.0, 0.5), (0.99, 0.9999), (0.3, 0.1)]


def _ema_ratio(grads: np.ndarray, b: float, g: float) -> float:
    """|m_n| / sqrt(v_n) after running the raw EMAs (m_0 = v_0 = 0) over ``grads``."""
    m = v = 0.0
    for x in grads:
        m = b * m + (1 - b) * x
        v = g * v + (1 - g) * x * x
    return abs(m) / np.sqrt(v)


def _worst_sequence(b: float, g: float, n: int) -> np.ndarray:
    """The Cauchy-Schwarz maximiser g_{n-j} = w_j / c_j, in time order g_1 .. g_n."""
    j = np.arange(n)
    weights = (1 - b) / (1 - g) * (b / g) ** j  # (b/g)^j: no underflow of g^j
    return weights[::-1]


def test_value_at_adam_defaults():
    assert stability.update_bound(0.9, 0.999) == pytest.approx(7.2703, abs=5e-5)


def test_update_bound_equals_symbolic_form():
    bound = sp.lambdify([b1, b2], symbolic.update_bound(), "numpy")
    rng = np.random.default_rng(0)
    b = rng.uniform(0.0, 0.99, 200)
    g = rng.uniform(b**2 + 1e-3, 0.999)
    np.testing.assert_allclose(stability.update_bound(b, g), bound(b, g), rtol=1e-12)


def test_finite_n_bound_equals_symbolic_form():
    for n in (1, 5, 40):
        finite = sp.lambdify([b1, b2], symbolic.update_bound(n), "numpy")
        for b, g in [(0.9, 0.999), (0.9, 0.5), (0.5, 0.3), (0.95, 0.5)]:
            assert stability.update_bound(b, g, n=n) == pytest.approx(finite(b, g), rel=1e-11)
    # On the boundary b2 = b1^2 the bound grows like sqrt(n).
    b = 0.5
    assert stability.update_bound(b, b * b, n=400) == pytest.approx(
        (1 - b) / np.sqrt(1 - b * b) * 20.0, rel=1e-9
    )


@pytest.mark.parametrize(("b", "g"), STABLE_POINTS)
def test_bound_is_the_worst_case_of_the_ema(b, g):
    # The maximising sequence attains the bound; n long enough that (b1^2/b2)^n is tiny.
    r = b * b / g
    n = 40 if r == 0 else int(np.ceil(np.log(1e-13) / np.log(r))) + 1
    attained = _ema_ratio(_worst_sequence(b, g, n), b, g)
    assert attained == pytest.approx(stability.update_bound(b, g), rel=1e-9)
    assert attained == pytest.approx(stability.update_bound(b, g, n=n), rel=1e-9)


def test_bound_is_the_numerical_supremum():
    # sup_g m_n^2 / v_n is a generalised Rayleigh quotient, w w^T against diag(c): its largest
    # eigenvalue, computed numerically, is the squared finite-n bound; no random sequence
    # (heavy-tailed, to probe extremes) exceeds it.
    rng = np.random.default_rng(1)
    for n in (3, 12, 60):
        j = np.arange(n)
        for b, g in [(0.9, 0.99), (0.9, 0.5), (0.6, 0.3), (0.0, 0.7)]:
            w, c = (1 - b) * b**j, (1 - g) * g**j
            largest = eigh(np.outer(w, w), np.diag(c), eigvals_only=True)[-1]
            bound = stability.update_bound(b, g, n=n)
            assert np.sqrt(largest) == pytest.approx(bound, rel=1e-10)
            for _ in range(20):
                assert _ema_ratio(rng.standard_cauchy(n), b, g) <= bound * (1 + 1e-12)


def test_is_stable_equals_the_derived_condition_on_a_grid():
    condition = sp.lambdify([b1, b2], symbolic.stability_condition(), "numpy")
    grid_b, grid_g = np.meshgrid(np.linspace(0.005, 0.995, 67), np.linspace(0.005, 0.995, 71))
    stable = stability.is_stable(grid_b, grid_g)
    np.testing.assert_array_equal(stable, condition(grid_b, grid_g))
    np.testing.assert_array_equal(stable, grid_g > grid_b**2)
    bounds = stability.update_bound(grid_b, grid_g)
    np.testing.assert_array_equal(np.isinf(bounds), ~stable)
    # No memory in the first moment: bounded for every b2, |u| <= 1/sqrt(1-b2).
    assert stability.is_stable(0.0, 0.0) and stability.update_bound(0.0, 0.0) == 1.0


def test_growth_rate_equals_symbolic_factor_and_the_bound_growth():
    factor = sp.lambdify([b1, b2], symbolic.growth_factor(), "numpy")
    b = np.array([0.9, 0.9, 0.99, 0.5, 0.7])
    g = np.array([0.5, 0.999, 0.9, 0.2, 0.3])
    expected = np.maximum(0.0, np.log(factor(b, g)))
    np.testing.assert_allclose(stability.growth_rate(b, g), expected, rtol=1e-14)
    assert stability.growth_rate(0.9, 0.999) == 0.0 and stability.growth_rate(0.9, 0.5) > 0
    # Outside the region the finite-n bound grows by exp(growth_rate) per step.
    for bv, gv in [(0.9, 0.5), (0.99, 0.9)]:
        step_growth = stability.update_bound(bv, gv, n=301) / stability.update_bound(bv, gv, n=300)
        assert np.log(step_growth) == pytest.approx(stability.growth_rate(bv, gv), rel=1e-6)


def _switch_off_max_update(b: float, g: float, grad: float, eps: float) -> float:
    """Adam (bias-corrected) with gradient ``grad`` for a long time, then zero: the largest |u|
    from the last step with the gradient on."""
    m = v = 0.0
    n_on = int(np.ceil(np.log(1e-17) / np.log(max(b, g)))) + 1
    for _ in range(n_on):
        m, v = b * m + (1 - b) * grad, g * v + (1 - g) * grad * grad
    n = n_on
    largest = (m / (1 - b**n)) / (np.sqrt(v / (1 - g**n)) + eps)  # the last step with gradient
    while True:
        n += 1
        m, v = b * m, g * v
        u = (m / (1 - b**n)) / (np.sqrt(v / (1 - g**n)) + eps)
        largest = max(largest, abs(u))
        if np.sqrt(v) < 1e-3 * eps:
            return largest


@pytest.mark.parametrize(("b", "g"), [(0.9, 0.5), (0.95, 0.8), (0.99, 0.9)])
def test_eps_capped_amplification_against_the_ema(b, g):
    grad, eps = 1e-2, 1e-8
    measured = _switch_off_max_update(b, g, grad, eps)
    sharp = stability.eps_capped_amplification(b, g, grad, eps, sharp=True)
    leading = stability.eps_capped_amplification(b, g, grad, eps)
    assert measured == pytest.approx(sharp, rel=0.01)  # continuous vs integer step count
    assert sharp <= leading <= 2 * sharp
    # The symbolic forms, evaluated.
    p = 2 * np.log(1 / b) / np.log(1 / g)
    leading_sym = symbolic.eps_capped_amplification()
    values = {"beta_1": b, "beta_2": g, "G": grad, "epsilon": eps}
    assert leading == pytest.approx(
        float(leading_sym.subs({s: values[s.name] for s in leading_sym.free_symbols})), rel=1e-10
    )
    sharp_sym = symbolic.eps_capped_amplification(sharp=True)
    values["p"] = p
    assert sharp == pytest.approx(
        float(sharp_sym.subs({s: values[s.name] for s in sharp_sym.free_symbols})), rel=1e-10
    )


def test_eps_capped_amplification_theory_example_and_stable_region():
    # theory/stability.md §2: b1 0.9, b2 0.5, |g| 1e-2, eps 1e-8: measured 8.1e3, estimate 1.5e4.
    assert stability.eps_capped_amplification(0.9, 0.5, 1e-2, 1e-8) == pytest.approx(
        1.5e4, rel=0.01
    )
    assert stability.eps_capped_amplification(0.9, 0.5, 1e-2, 1e-8, sharp=True) == pytest.approx(
        8.1e3, rel=0.01
    )
    # Stable region: the first update after the switch-off is the largest, G/(G+eps).
    assert stability.eps_capped_amplification(0.9, 0.999, 1.0, 1e-3) == pytest.approx(1 / 1.001)
    assert _switch_off_max_update(0.9, 0.999, 1.0, 1e-3) == pytest.approx(1 / 1.001, rel=1e-3)


def test_vectorised_shapes_and_scalars():
    b = np.linspace(0.1, 0.95, 5)[:, None]
    g = np.linspace(0.1, 0.99, 4)[None, :]
    assert stability.update_bound(b, g).shape == (5, 4)
    assert stability.is_stable(b, g).shape == (5, 4)
    assert stability.growth_rate(b, g).shape == (5, 4)
    assert stability.eps_capped_amplification(b, g, 1e-2, 1e-8).shape == (5, 4)
    assert isinstance(stability.update_bound(0.9, 0.999), float)
    assert isinstance(stability.is_stable(0.9, 0.999), bool)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: stability.update_bound(1.0, 0.5), r"b1 must be in \[0, 1\)"),
        (lambda: stability.is_stable(0.5, [0.3, -0.1]), r"b2 must be in \[0, 1\)"),
        (lambda: stability.growth_rate(np.nan, 0.5), r"b1 must be in \[0, 1\)"),
        (lambda: stability.update_bound(0.5, 0.5, n=0), "n must be an integer >= 1"),
        (lambda: stability.eps_capped_amplification(0.9, 0.5, 0.0, 1e-8), "grad_scale"),
        (lambda: stability.eps_capped_amplification(0.9, 0.5, 1.0, -1.0), "eps"),
    ],
)
def test_invalid_inputs_name_the_parameter(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_log_growth_is_signed_and_growth_rate_its_positive_part():
    b1s = np.array([0.9, 0.5, 0.99, 0.0])
    b2s = np.array([0.999, 0.1, 0.97, 0.5])
    signed = stability.log_growth(b1s, b2s)
    # ln(β₁/√β₂) by hand, independent of the module's decay_per_step.
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(signed, np.log(b1s / np.sqrt(b2s)), rtol=1e-12, atol=1e-15)
    assert stability.log_growth(0.5, 0.1) == pytest.approx(0.458145, abs=1e-6)
    np.testing.assert_array_equal(stability.growth_rate(b1s, b2s), np.maximum(signed, 0.0))
