"""The meta-adaptive effect (theory/kadam.md §4): scale-invariant problems and the |θ|²
dynamics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adamflow import AdamW, KAdam
from adamflow.experiments.meta import (
    angle_between,
    equilibrium_norm_sq,
    integrate_norm_flow,
    norm_identity,
    predicted_angular_step,
    record_norm_dynamics,
    summarize_norm_dynamics,
)
from adamflow.experiments.scale_invariant import normalized_linear_classifier, normalized_mlp


@pytest.fixture(scope="module")
def mlp_problem():
    return normalized_mlp(0, hidden=16)


@pytest.fixture(scope="module")
def adamw_run(mlp_problem):
    opt = AdamW(0.01, b1=0.9, b2=0.999, weight_decay=0.2)
    grad = mlp_problem.minibatch_grad(32)
    return record_norm_dynamics(opt, grad, mlp_problem.theta0, 600, seed=1)


@pytest.mark.parametrize("factory", [normalized_linear_classifier, normalized_mlp])
def test_problems_are_scale_invariant_per_group(factory):
    problem = factory(0)
    theta = problem.theta0
    loss, grad = jax.jit(problem.loss), jax.jit(jax.grad(problem.loss))
    base = loss(theta)
    grads = grad(theta)
    for group in problem.groups:
        for c in (0.3, 7.0):
            scaled = {**theta, group: c * theta[group]}
            assert loss(scaled) == pytest.approx(float(base), rel=1e-12)
            # ∇_g L(cθ_g) = ∇_g L(θ_g)/c
            g_scaled = grad(scaled)[group]
            np.testing.assert_allclose(c * g_scaled, grads[group], rtol=1e-9, atol=1e-14)
        # θ_g · ∇_g L = 0 to round-off
        dot = float(jnp.sum(theta[group] * grads[group]))
        scale = float(jnp.linalg.norm(theta[group]) * jnp.linalg.norm(grads[group]))
        assert abs(dot) < 1e-12 * scale
    assert 0.0 <= float(problem.test_accuracy(theta)) <= 1.0


def test_discrete_norm_identity_holds_to_round_off(adamw_run):
    """(a): |θ_n|² = (1-ηλ)²|θ_{n-1}|² - 2η(1-ηλ)θ_{n-1}·u_n + η²|u_n|² along a real
    minibatch AdamW run, for each group."""
    dyn = adamw_run
    assert dyn.groups == ("W1", "W2")
    assert dyn.norm_sq.shape == (601, 2) and dyn.theta_dot_u.shape == (600, 2)
    predicted = norm_identity(
        dyn.norm_sq[:-1], dyn.theta_dot_u, dyn.update_sq, dyn.lr, dyn.weight_decay
    )
    np.testing.assert_allclose(predicted, dyn.norm_sq[1:], rtol=1e-12)
    # A wrong decay factor is caught far above round-off.
    wrong = norm_identity(
        dyn.norm_sq[:-1], dyn.theta_dot_u, dyn.update_sq, dyn.lr, 1.01 * dyn.weight_decay
    )
    assert np.max(np.abs(wrong / dyn.norm_sq[1:] - 1)) > 1e-6
    summary = summarize_norm_dynamics(dyn)
    assert summary["W1"]["max_rel_error_identity"] < 1e-12


def test_integrate_norm_flow_is_exact_for_constant_forcing():
    """dN/dt = -2λN + f with constant f: N(t) = e^{-2λt}N0 + f(1-e^{-2λt})/(2λ)."""
    lr, lam, n0, steps = 0.01, 0.7, 3.0, 500
    theta_dot_u = np.full((steps, 1), -0.2)
    update_sq = np.full((steps, 1), 5.0)
    forcing = lr * 5.0 + 0.4
    t = lr * np.arange(steps + 1)
    exact = np.exp(-2 * lam * t) * n0 + forcing * -np.expm1(-2 * lam * t) / (2 * lam)
    out = integrate_norm_flow(np.array([n0]), theta_dot_u, update_sq, lr, lam)
    np.testing.assert_allclose(out[:, 0], exact, rtol=1e-12)
    ema = integrate_norm_flow(
        np.array([n0]), theta_dot_u, update_sq, lr, lam, drop_theta_dot_u=True
    )
    # (c) is the EMA of η|u|² with rate 2λ: its limit is the equilibrium η E|u|²/(2λ).
    assert ema[-1, 0] == pytest.approx(
        equilibrium_norm_sq(5.0, lr, lam) + (n0 - lr * 5.0 / (2 * lam)) * np.exp(-2 * lam * t[-1])
    )
    no_decay = integrate_norm_flow(np.array([n0]), theta_dot_u, update_sq, lr, 0.0)
    assert no_decay[-1, 0] == pytest.approx(n0 + forcing * t[-1])


def test_first_order_flow_error_is_order_eta():
    """(b) d|θ|²/dt = -2λ|θ|² - 2θ·u + η|u|², driven by the measured θ·u and |u|², is a
    first-order model: its error at fixed T halves when η halves (deterministic run)."""
    problem = normalized_linear_classifier(0)
    grad = problem.minibatch_grad(None)
    lam, t1, errors = 0.5, 2.0, []
    for lr in (0.02, 0.01):
        dyn = record_norm_dynamics(
            AdamW(lr, weight_decay=lam), grad, problem.theta0, int(round(t1 / lr))
        )
        flow = integrate_norm_flow(dyn.norm_sq[0], dyn.theta_dot_u, dyn.update_sq, lr, lam)
        errors.append(np.max(np.abs(flow / dyn.norm_sq - 1)))
    order = np.log2(errors[0] / errors[1])
    assert 0.7 < order < 1.3, (errors, order)
    assert errors[1] < 0.05


def test_summary_and_angles(adamw_run, mlp_problem):
    dyn = adamw_run
    summary = summarize_norm_dynamics(dyn, equilibrium_from=0.5)
    for g, name in enumerate(dyn.groups):
        entry = summary[name]
        # The flow with θ·u is far closer than the EMA that drops it (both are measured).
        assert entry["max_rel_error_flow"] < entry["max_rel_error_ema"]
        # |∫2θ·u dt| / ∫η|u|² dt, recomputed from the recorded sums.
        cross, self_term = 2 * dyn.theta_dot_u[:, g].sum(), dyn.lr * dyn.update_sq[:, g].sum()
        assert entry["cross_over_self"] == pytest.approx(abs(cross) / self_term, rel=1e-12)
        assert entry["signed_cross_over_self"] == pytest.approx(cross / self_term, rel=1e-12)
        # With momentum (β₁ = 0.9) θ·u is not small and points inward: -2θ·u pushes |θ|²
        # up by several times η|u|² (measured 14 and 6; 2β₁/(1-β₁) = 18 for uncorrelated g).
        assert entry["signed_cross_over_self"] < -2.0
        assert np.isfinite(entry["angle_ratio_median"])
    # The recorded angle is the angle between consecutive parameter vectors.
    a, b = jnp.array([1.0, 0.0, 0.0]), jnp.array([1.0, 1e-9, 0.0])
    assert float(angle_between(a, b)) == pytest.approx(1e-9, rel=1e-6)
    assert float(angle_between(a, jnp.array([0.0, 2.0, 0.0]))) == pytest.approx(np.pi / 2)
    np.testing.assert_allclose(
        predicted_angular_step(np.array([4.0]), 4.0, 0.01, 0.5), np.sqrt(2 * 0.01 * 0.5)
    )
    # Adam's normalized gradient before momentum, ĝ = g/(sqrt(v̂)+ε): at step 1, v̂ = g² and
    # m̂ = g, so ĝ = u = g/(|g|+ε), whose squared norm counts the coordinates with a
    # gradient (at most the group's size); afterwards momentum makes u differ from ĝ.
    np.testing.assert_allclose(dyn.normalized_grad_sq[0], dyn.update_sq[0], rtol=1e-12)
    sizes = np.array([mlp_problem.theta0[name].size for name in dyn.groups])
    assert np.all(dyn.normalized_grad_sq[0] <= sizes * (1 + 1e-12))
    assert np.all(dyn.normalized_grad_sq[0] > 0.5 * sizes)
    assert np.all(np.abs(dyn.normalized_grad_sq[1:] / dyn.update_sq[1:] - 1).max(axis=0) > 0.1)


def test_normalized_gradient_is_the_update_without_momentum(mlp_problem):
    """With β₁ = 0, m̂_n = g_n, so Adam's update u_n is exactly ĝ_n = g_n/(sqrt(v̂_n)+ε):
    the recorded |ĝ|² must equal |u|² at every step."""
    grad = mlp_problem.minibatch_grad(32)
    opt = AdamW(0.01, b1=0.0, b2=0.999, weight_decay=0.2)
    dyn = record_norm_dynamics(opt, grad, mlp_problem.theta0, 50, seed=1)
    np.testing.assert_allclose(dyn.normalized_grad_sq, dyn.update_sq, rtol=1e-12)


def test_record_validates_and_handles_k2(mlp_problem):
    grad = mlp_problem.minibatch_grad(16)
    dyn = record_norm_dynamics(
        KAdam(0.01, k=2, weight_decay=0.1), grad, mlp_problem.theta0, 20, groups=["W2"]
    )
    assert dyn.groups == ("W2",) and dyn.norm_sq.shape == (21, 1)
    assert np.all(np.isnan(dyn.normalized_grad_sq))
    with pytest.raises(ValueError, match="groups"):
        record_norm_dynamics(AdamW(0.01), grad, mlp_problem.theta0, 5, groups=["W9"])
    with pytest.raises(ValueError, match="steps"):
        record_norm_dynamics(AdamW(0.01), grad, mlp_problem.theta0, 0)
    with pytest.raises(ValueError, match="weight_decay"):
        equilibrium_norm_sq(1.0, 0.01, 0.0)
