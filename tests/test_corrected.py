"""The first-order corrected flow (theory/corrected_flow.md §1): order two, its start, its
refusals, and the validity indicator that says where no expansion in lr holds."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adamflow as af
from adamflow import _corrected, _flows
from adamflow._compare import compare, compare_orders
from adamflow.experiments.convergence import far_quadratic

# The setting of theory/corrected_flow.md §1: a 5-d coupled quadratic far from its minimum,
# T = 0.5 (the same loss the convergence figure uses).
THETA0 = jnp.zeros(5)
T1 = 0.5
LRS = [0.02, 0.01, 0.005, 0.0025]
TOL = dict(rtol=1e-11, atol=1e-13)


def spec(k=1, lr=0.01, weight_decay=0.0):
    return af.KAdam(lr, k=k, b1=0.85, b2=0.98, weight_decay=weight_decay)


# ----------------------------------------------------------------------------- the lags


def test_lag_is_the_difference_of_mean_delays():
    # Independent of the closed form: the discrete average of gradients read at step starts
    # is sum_j (1-b) b^j (j+1) lr old; the kernel a e^{-as} is 1/a old.
    lr = 0.01
    for b1 in (0.5, 0.85, 0.9, 0.99):
        j = np.arange(20000)
        discrete_delay = lr * np.sum((1 - b1) * b1**j * (j + 1))
        kernel_delay = lr / math.log(1 / b1)
        assert _corrected.lag(b1, lr) == pytest.approx(discrete_delay - kernel_delay, rel=1e-9)
        # Upper levels average the end-of-step output: one step less old.
        assert _corrected.lead(b1, lr) == pytest.approx(
            discrete_delay - lr - kernel_delay, rel=1e-9
        )
    assert _corrected.lag(1 - 1e-6, lr) / lr == pytest.approx(0.5, abs=1e-6)
    assert _corrected.lag(1e-12, lr) / lr == pytest.approx(1.0, abs=0.05)
    assert _corrected.lead(1 - 1e-6, lr) / lr == pytest.approx(-0.5, abs=1e-6)


# ----------------------------------------------------------------------------- order two


@pytest.mark.parametrize("weight_decay", [0.0, 0.05], ids=["adam", "adamw"])
def test_corrected_flow_is_second_order_for_adam_and_adamw(weight_decay):
    opt = spec(weight_decay=weight_decay)
    fits = compare_orders(opt, far_quadratic, THETA0, LRS, t1=T1, orders=("corrected",), **TOL)
    corrected = fits["corrected"]
    # Measured 3.45 (Adam) and 3.57 (AdamW) at the final time: at least two.
    assert corrected.order >= 1.8, corrected
    steps = round(T1 / 0.01)
    lead = compare(opt, far_quadratic, THETA0, steps, save_every=steps, backend="scipy", **TOL)
    at_001 = LRS.index(0.01)
    # Measured 257x (Adam) and 118x (AdamW).
    assert corrected.errors[at_001] * 10 <= lead.final_error, (corrected, lead.final_error)


def test_corrected_flow_is_second_order_for_two_level_kadam():
    # Level 2 averages u⁽¹⁾, which moves on the scale of a few steps while level 1's bias
    # correction settles; the sampled and the continuous averages of that transient differ
    # by O(lr·(ln β₂/β₁)²) and level 2 remembers it for 1/b = 50 steps. At T = 0.5 that
    # pre-asymptotic term dominates for lr >= 0.005 (fitted order 1.05 over 0.02..0.0025,
    # while already 500x below the leading flow), so the order is fitted below it.
    opt = spec(k=2)
    corrected = af.convergence_order(
        opt, far_quadratic, THETA0, [0.005, 0.0025, 0.00125], t1=T1, order="corrected", **TOL
    )
    assert corrected.order >= 1.7, corrected  # measured 2.04
    steps = round(T1 / 0.01)
    lead = compare(opt, far_quadratic, THETA0, steps, save_every=steps, backend="scipy", **TOL)
    corr = compare(opt, far_quadratic, THETA0, steps, save_every=steps, order="corrected", **TOL)
    assert corr.final_error * 10 <= lead.final_error, (corr.final_error, lead.final_error)
    # Far from zero gradients, the validity indicator is small (max over the saved points).
    assert lead.flow.validity is None
    assert 0 < corr.flow.validity < 0.05, corr.flow.validity


def test_order_test_catches_missing_lags(monkeypatch):
    # Without the lags (δ = δ' = 0) only the θ correction is left and the flow is first order.
    monkeypatch.setattr(_corrected, "lag", lambda b1, lr, xp=None: 0.0)
    monkeypatch.setattr(_corrected, "lead", lambda b1, lr, xp=None: 0.0)
    fit = af.convergence_order(
        spec(), far_quadratic, THETA0, LRS[:3], t1=T1, order="corrected", **TOL
    )
    assert fit.order < 1.5, fit


# ----------------------------------------------------------------------------- the start


def test_start_is_consistent_and_finite_as_t_goes_to_zero():
    opt = spec(k=2, lr=0.02)
    params = jax.tree_util.tree_map(jnp.asarray, _flows.flow_params(opt))
    grad_fn = jax.grad(far_quadratic)
    y0 = _corrected.initial_state(opt, params, THETA0, grad_fn)
    consts = _corrected.corrected_constants(opt)
    rates = _corrected.corrected_terms(consts, jnp.asarray(0.0), y0, params, grad_fn).rates
    # Every moment rate vanishes at t = 0 (a mismatch r would act as r/t).
    for rate in rates.m + rates.v:
        assert np.max(np.abs(np.asarray(rate))) < 1e-9
    assert np.all(np.isfinite(np.asarray(rates.theta)))
    for tiny in (1e-12, 1e-9, 1e-6):
        trajectory = af.integrate(
            opt, far_quadratic, THETA0, steps=tiny, order="corrected", save_steps=[0, tiny], **TOL
        )
        for leaf in jax.tree_util.tree_leaves((trajectory.theta, trajectory.m, trajectory.v)):
            assert np.all(np.isfinite(np.asarray(leaf)))
        # θ moves at the start velocity; raw moments start at zero like the discrete ones.
        moved = trajectory.theta_flat()[1] - trajectory.theta_flat()[0]
        np.testing.assert_allclose(moved, tiny * opt.lr * np.asarray(rates.theta), rtol=1e-4)
        assert np.all(np.asarray(trajectory.m[0])[0] == 0.0)
        assert np.all(np.asarray(trajectory.v[1])[0] == 0.0)


def test_raw_moments_and_update_track_the_discrete_ones():
    opt = spec(k=2, lr=0.01)
    steps = 50
    result = compare(opt, far_quadratic, THETA0, steps, save_every=steps, order="corrected", **TOL)
    disc, flow = result.discrete, result.flow
    for level in range(2):
        for a, b in ((disc.m[level], flow.m[level]), (disc.v[level], flow.v[level])):
            a, b = np.asarray(a)[1:], np.asarray(b)[1:]
            assert np.max(np.abs(a - b)) < 1e-5 * np.max(np.abs(a)), (level, a - b)
    u_disc, u_flow = np.asarray(disc.u)[1:], np.asarray(flow.u)[1:]
    assert np.max(np.abs(u_disc - u_flow)) < 1e-5


def test_diffrax_and_scipy_agree():
    opt = spec(k=2, lr=0.01, weight_decay=0.05)
    kwargs = dict(steps=50, order="corrected", rtol=1e-9, atol=1e-12, save_steps=[0, 50])
    a = af.integrate(opt, far_quadratic, THETA0, backend="diffrax", **kwargs)
    b = af.integrate(opt, far_quadratic, THETA0, backend="scipy", solver="DOP853", **kwargs)
    assert a.backend == "diffrax" and b.backend == "scipy" and b.order == "corrected"
    np.testing.assert_allclose(a.theta_flat(), b.theta_flat(), rtol=0, atol=1e-7)
    assert a.validity == pytest.approx(b.validity, rel=1e-6)


# ----------------------------------------------------------------------------- validity


def tanh_net_problem():
    """A 2-4-1 tanh network on 16 points with a nearly silent output layer (W2 ~ 1e-3): the
    hidden-layer gradients start near zero (|g| ~ 1e-4) and grow by O(0.1) per unit time as
    W2 moves, so lr·|ġ|/|g| is of order one in the first steps."""
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 2))
    y = jnp.sin(x[:, 0]) * jnp.cos(x[:, 1])

    def loss(p):
        hidden = jnp.tanh(x @ p["W1"] + p["b1"])
        return 0.5 * jnp.mean((hidden @ p["W2"] + p["b2"] - y) ** 2)

    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    theta0 = {
        "W1": 0.5 * jax.random.normal(k1, (2, 4)),
        "b1": jnp.zeros(4),
        "W2": 1e-3 * jax.random.normal(k2, (4,)),
        "b2": jnp.zeros(()),
    }
    return loss, theta0


def test_tanh_network_near_zero_gradients_flag_a_large_validity():
    loss, theta0 = tanh_net_problem()
    g0 = np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(jax.grad(loss)(theta0))])
    assert np.min(np.abs(g0)) < 1e-4  # the premise: coordinates start near zero
    opt = af.Adam(0.005, b1=0.85, b2=0.98)
    steps = 100
    kwargs = dict(save_every=steps, backend="scipy", rtol=1e-9, atol=1e-12)
    lead = compare(opt, loss, theta0, steps, **kwargs)
    corr = compare(opt, loss, theta0, steps, order="corrected", throw=True, **kwargs)
    # It integrates, is no worse than the leading flow, and says it left the regime.
    assert corr.flow.success
    assert corr.final_error <= 1.5 * lead.final_error, (corr.final_error, lead.final_error)
    assert corr.flow.validity >= 1.0, corr.flow.validity  # measured 2.8


# ----------------------------------------------------------------------------- refusals


def test_refuses_what_it_cannot_integrate():
    with pytest.raises(ValueError, match="k <= 2"):
        af.integrate(af.KAdam(0.01, k=3), far_quadratic, THETA0, steps=2, order="corrected")
    with pytest.raises(ValueError, match="convention='exact'"):
        af.integrate(spec(), far_quadratic, THETA0, steps=2, order="corrected", convention="euler")
    with pytest.raises(ValueError, match="b1 in"):
        af.integrate(af.Adam(0.01, b1=0.0), far_quadratic, THETA0, steps=2, order="corrected")

    def numpy_grad(theta):
        return np.asarray(jax.grad(far_quadratic)(jnp.asarray(theta)))  # a NumPy array out

    with pytest.raises(TypeError, match="JAX-traceable gradient"):
        af.integrate(spec(), None, np.zeros(5), grad=numpy_grad, steps=2, order="corrected")


def test_flow_lags_equal_the_sympy_derived_ones():
    # One formula, two homes: the field's δ and δ' (JAX-friendly, in _corrected) must be the
    # lags adamflow.symbolic derives by matching the one-step maps.
    lags = af.symbolic.lag_functions()
    factors = np.array([0.05, 0.3, 0.5, 0.85, 0.9, 0.98, 0.999])
    for lr in (0.02, 1e-3):
        np.testing.assert_allclose(
            _corrected.lag(factors, lr), lags.first_level(factors, lr), rtol=1e-9
        )
        np.testing.assert_allclose(
            _corrected.lead(factors, lr), lags.upper_levels(factors, lr), rtol=1e-9, atol=1e-15
        )
