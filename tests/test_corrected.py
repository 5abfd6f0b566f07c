"""The corrected flows (theory/corrected_flow.md §2): their coefficients against independent
sums, orders two and three on a loss far from its minimum, the start after the first
discrete step, the refusals, and the validity indicator that says where no expansion in lr
holds."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adamflow as af
from adamflow import _corrected
from adamflow._compare import compare, fit_order
from adamflow.experiments.convergence import far_quadratic
from adamflow.experiments.corrected import far_log_cosh
from adamflow.experiments.validity_calibration import tanh_net as tanh_net_problem

# The setting: a 5-d quadratic plus log-cosh loss far from its minimum, T = 0.5.
THETA0 = jnp.zeros(5)
T1 = 0.5
LRS = [0.02, 0.01, 0.005, 0.0025]
TOL = dict(rtol=1e-12, atol=1e-14)


def spec(k=1, lr=0.01, weight_decay=0.0):
    return af.KAdam(lr, k=k, b1=0.85, b2=0.98, weight_decay=weight_decay)


# ----------------------------------------------------------------------- the coefficients


def _delay_cumulants(b1, offset):
    """Mean and variance (in steps) of the discrete weights (1-b) b^j at delay j + offset,
    minus those of the kernel a e^{-as} (1/ell and 1/ell^2): plain sums, independent of
    the generating functions."""
    j = np.arange(40000, dtype=float)
    w = (1 - b1) * b1**j
    mean = np.sum(w * (j + offset))
    var = np.sum(w * (j + offset) ** 2) - mean**2
    ell = math.log(1 / b1)
    return mean - 1 / ell, var - 1 / ell**2


@pytest.mark.parametrize("offset", [1, 0], ids=["level1", "upper"])
def test_coefficients_are_the_delay_cumulant_differences(offset):
    # P(z) = exp(-Δκ₁ z + Δκ₂ z²/2 + ...): c₁ = -Δκ₁, c₂ = (Δκ₁² + Δκ₂)/2.
    for b1 in (0.5, 0.85, 0.9, 0.99):
        mean, var = _delay_cumulants(b1, offset)
        c = _corrected.drive_coefficients(b1, offset, 2)
        assert c[0] == 1.0
        assert c[1] == pytest.approx(-mean, rel=1e-9)
        assert c[2] == pytest.approx((mean**2 + var) / 2, rel=1e-7)


def test_first_order_coefficients_equal_the_taylor_matched_lags():
    # Two derivations, one result: the generating-function coefficient c₁ and the lags
    # adamflow.symbolic derives by Taylor matching of the one-step maps.
    lags = af.symbolic.lag_functions()
    for b1 in (0.05, 0.3, 0.85, 0.98, 0.999):
        for offset, lag in ((1, lags.first_level), (0, lags.upper_levels)):
            c1 = _corrected.drive_coefficients(b1, offset, 1)[1]
            assert -c1 * 0.01 == pytest.approx(float(lag(b1, 0.01)), rel=1e-9, abs=1e-15)
    right, left = _corrected.parameter_coefficients(2)
    assert right == (1.0, 0.5, 1 / 12) and left == (1.0, -0.5, 1 / 12)


# ------------------------------------------------------------------------------- orders


def with_unused_coordinate(theta):
    """`far_log_cosh` of the first five coordinates and a sixth whose gradient is exactly 0
    (an unused embedding row): its second moment is exactly 0 and the corrected flows' jets
    differentiate sqrt(v̂) there, which must give 0, not inf·0 = nan."""
    return far_log_cosh(theta[:5]) + 0.0 * jnp.sum(theta[5:] ** 0)


PADDED_THETA0 = jnp.concatenate([THETA0, jnp.array([0.7])])


def _errors(opt, order, lrs):
    """Final and largest errors over ``lrs`` on `with_unused_coordinate` (the unused
    coordinate stays exactly put in the flow where there is no weight decay: checked)."""
    finals, maxima = [], []
    for lr in lrs:
        steps = round(T1 / lr)
        result = compare(
            opt.replace(lr=lr), with_unused_coordinate, PADDED_THETA0, steps, order=order, **TOL
        )
        if opt.weight_decay == 0:
            np.testing.assert_array_equal(result.flow.theta_flat()[:, 5], 0.7)
        finals.append(result.final_error)
        maxima.append(result.max_error)
    return finals, maxima


@pytest.mark.parametrize(
    "k, weight_decay",
    # AdamW's first-order terms are also checked by corrected2's third order for AdamW.
    [(1, 0.0), pytest.param(1, 0.05, marks=pytest.mark.slow), (2, 0.0)],
    ids=["adam", "adamw", "2-adam"],
)
def test_corrected_flow_is_second_order(k, weight_decay):
    finals, maxima = _errors(spec(k, weight_decay=weight_decay), "corrected", LRS)
    # Measured: final 2.62 / 2.60 / 2.66, largest along the path 2.04 / 2.01 / 2.24.
    assert fit_order(LRS, finals).order >= 1.8, finals
    assert fit_order(LRS, maxima).order >= 1.8, maxima


@pytest.mark.parametrize("weight_decay", [0.0, 0.05], ids=["adam", "adamw"])
def test_corrected2_flow_is_third_order_and_closer(weight_decay):
    finals, maxima = _errors(spec(weight_decay=weight_decay), "corrected2", LRS)
    assert fit_order(LRS, finals).order >= 2.7, finals  # measured 2.97 and 2.97
    assert fit_order(LRS, maxima).order >= 2.7, maxima  # measured 2.97 and 2.97
    first, _ = _errors(spec(weight_decay=weight_decay), "corrected", [0.01])
    assert finals[1] * 5 <= first[0], (finals[1], first[0])  # measured 112x and 101x


def test_order_test_catches_missing_lags(monkeypatch):
    # Without the drive corrections (c_j = 0 for j >= 1) only the θ terms are left and the
    # flow is first order.
    monkeypatch.setattr(
        _corrected, "drive_coefficients", lambda factor, offset, order: (1.0,) + (0.0,) * order
    )
    finals, _ = _errors(spec(), "corrected", LRS[:3])
    assert fit_order(LRS[:3], finals).order < 1.5, finals


# ----------------------------------------------------------------------------- the start


# One start serves both orders (the first discrete step); -m slow checks corrected2 too.
@pytest.mark.parametrize("order", ["corrected", pytest.param("corrected2", marks=pytest.mark.slow)])
def test_the_flow_starts_from_the_first_discrete_step(order):
    opt = spec(k=2, lr=0.02)
    disc = af.run_discrete(opt, far_quadratic, THETA0, 3)
    flow = af.integrate(
        opt, far_quadratic, THETA0, steps=3, order=order, save_steps=[0, 0.25, 1, 3], **TOL
    )
    theta = flow.theta_flat()
    np.testing.assert_array_equal(theta[0], np.asarray(THETA0))
    np.testing.assert_allclose(theta[2], disc.theta_flat()[1], rtol=0, atol=1e-15)
    # Before t = lr the path is the first step's straight segment.
    np.testing.assert_allclose(theta[1], 0.25 * theta[2], rtol=0, atol=1e-15)
    for level in range(2):
        assert np.all(np.asarray(flow.m[level])[0] == 0.0)  # raw moments start at zero
        np.testing.assert_allclose(
            np.asarray(flow.m[level])[2], np.asarray(disc.m[level])[1], rtol=1e-14
        )
    assert np.max(np.abs(theta[3] - disc.theta_flat()[3])) < 1e-7


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
    # Far from zero gradients the validity indicator is small.
    assert 0 < flow.validity < 0.05, flow.validity


# Both orders share one field code on both backends; -m slow compares corrected2 too.
@pytest.mark.parametrize("order", ["corrected", pytest.param("corrected2", marks=pytest.mark.slow)])
def test_diffrax_and_scipy_agree(order):
    opt = spec(k=2, lr=0.01, weight_decay=0.05)
    kwargs = dict(steps=50, order=order, rtol=1e-10, atol=1e-13, save_steps=[0, 50])
    a = af.integrate(opt, far_quadratic, THETA0, backend="diffrax", **kwargs)
    b = af.integrate(opt, far_quadratic, THETA0, backend="scipy", solver="DOP853", **kwargs)
    assert a.backend == "diffrax" and b.backend == "scipy" and b.order == order
    np.testing.assert_allclose(a.theta_flat(), b.theta_flat(), rtol=0, atol=1e-8)
    assert a.validity == pytest.approx(b.validity, rel=1e-6)


# ----------------------------------------------------------------------------- validity


def _dense_validity_at_step_one(loss, theta0, opt):
    """lr·|(H θ̇)_i|/(√v̂_i + ε) after Adam's first step, from a dense Hessian: there m̂ = g₀
    and v̂ = g₀² (one gradient averaged), θ̇ = -m̂/(√v̂ + ε) (leading order)."""
    from jax.flatten_util import ravel_pytree

    flat0, unravel = ravel_pytree(theta0)
    flat_loss = lambda x: loss(unravel(x))  # noqa: E731
    g0 = jax.grad(flat_loss)(flat0)
    theta1 = flat0 - opt.lr * g0 / (jnp.abs(g0) + opt.eps)
    g0_hat, v_hat = g0, g0**2
    velocity = -g0_hat / (jnp.sqrt(v_hat) + opt.eps)
    h = jax.hessian(flat_loss)(theta1)
    return np.asarray(opt.lr * jnp.abs(h @ velocity) / (jnp.sqrt(v_hat) + opt.eps))


def _refusal_text(opt, loss, state, order):
    with pytest.raises(af.IntegrationError) as refusal:
        af.integrate(opt, loss, None, start=state, steps=100, order=order)
    return str(refusal.value)


# The tanh net's corrected2 refusal compiles third-order jets of the network (~20 s); the
# default run checks corrected2's refusal on a two-parameter loss below.
@pytest.mark.parametrize("order", ["corrected", pytest.param("corrected2", marks=pytest.mark.slow)])
def test_a_start_the_calibration_says_loses_is_refused_naming_its_leaves(order):
    loss, theta0 = tanh_net_problem()
    g0 = np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(jax.grad(loss)(theta0))])
    assert np.min(np.abs(g0)) < 1e-4  # the premise: coordinates start near zero
    opt = af.Adam(0.005, b1=0.85, b2=0.98)
    dense = _dense_validity_at_step_one(loss, theta0, opt)
    rms = float(np.sqrt(np.mean(dense**2)))
    assert rms > _corrected.rms_limit()  # measured: 46.4 against the limit 32.9
    state = af.run_discrete(opt, loss, theta0, 1).state_at(1)
    text = _refusal_text(opt, loss, state, order)
    assert f"indicator rms(lr*|dx/dt|/(sqrt(v_hat)+eps)) is {rms:.3g}" in text
    assert f"{np.mean(dense > 1):.1%} of coordinates above 1" in text
    assert "limited by theta['W1']" in text and "farther from the discrete steps" in text
    assert "allow_invalid_start=True" in text and "start='auto'" in text
    if order == "corrected2":  # its jets are not finite there
        assert "second correction is not finite" in text
        return
    # Forced, it runs, says so, and keeps the indicator on the Trajectory.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flow = af.integrate(
            opt, loss, None, start=state, steps=2, order="corrected", allow_invalid_start=True
        )
    said = [str(w.message) for w in caught if w.category is af.ValidityWarning]
    assert any("would be refused" in text for text in said)  # at its start
    assert any(f"reaches {rms:.3g} at step 1," in text for text in said)  # along its path
    report = flow.start_validity
    assert flow.success and report.step == 1.0
    np.testing.assert_allclose(report.rms, rms, rtol=1e-9)
    np.testing.assert_allclose(report.max, dense.max(), rtol=1e-9)
    assert report.predicted_gain < 1 and report.series_ratio is None
    assert sum(share for _, share in report.limiting_leaves) == pytest.approx(1.0, abs=1e-6)


def coupled(theta):
    """Two parameters, the second with a gradient of 1e-7 at the start and a coupling of 5
    to the first: after one step v̂₂ is ~1e-14 and its update moves fast (the tanh net's
    near-zero hidden gradients, in two coordinates)."""
    return (
        jnp.log(jnp.cosh(theta[0] - 3.0))
        + 0.5 * theta[1] ** 2
        + 5.0 * jnp.tanh(theta[0]) * theta[1]
    )


COUPLED_THETA0 = jnp.array([0.0, 1e-7])


def test_corrected2_refuses_where_its_series_is_not_finite():
    # Measured: rms 1.31e5, far above the limit; corrected2's jets overflow.
    opt = af.Adam(0.005, b1=0.85, b2=0.98)
    dense = _dense_validity_at_step_one(coupled, COUPLED_THETA0, opt)
    rms = float(np.sqrt(np.mean(dense**2)))
    assert rms > _corrected.rms_limit()
    state = af.run_discrete(opt, coupled, COUPLED_THETA0, 1).state_at(1)
    text = _refusal_text(opt, coupled, state, "corrected2")
    assert f"indicator rms(lr*|dx/dt|/(sqrt(v_hat)+eps)) is {rms:.3g}" in text
    assert "its series in lr diverges there (the second correction is not finite)" in text


@pytest.mark.parametrize(
    "problem",
    # The tanh net's corrected field compiles the network's jets (~35 s): -m slow.
    ["coupled", pytest.param("tanh_net", marks=pytest.mark.slow)],
)
def test_by_default_a_corrected_flow_begins_where_its_expansion_holds(problem):
    # Measured on both: starts at step 3 (largest validity 0.77 there); largest error
    # 14x below the leading flow's (coupled 9.6e-5 against 1.37e-3; tanh net 1.4e-3
    # against 2.0e-2).
    loss, theta0 = (coupled, COUPLED_THETA0) if problem == "coupled" else tanh_net_problem()
    opt = af.Adam(0.005, b1=0.85, b2=0.98)
    step_one = af.run_discrete(opt, loss, theta0, 1).state_at(1)
    assert "start='auto'" in _refusal_text(opt, loss, step_one, "corrected")
    with pytest.raises(af.IntegrationError, match=r"no step before the horizon \(tried 1\.\.1\)"):
        af.integrate(opt, loss, theta0, steps=2, order="corrected")  # none to move to
    leading = af.compare(opt, loss, theta0, 100)
    auto = af.compare(opt, loss, theta0, 100, start="auto", order="corrected")
    default = af.integrate(opt, loss, theta0, steps=100, order="corrected")
    start = auto.flow.start_step
    assert 1 < start < 20 and default.start_step == start
    report = auto.flow.start_validity
    assert report.step == start and report.max <= 1.0 and report.fraction_above_one == 0.0
    np.testing.assert_array_equal(default.theta_flat(), auto.flow.theta_flat())
    assert auto.max_error * 5 <= leading.max_error
    before = auto.steps < start
    np.testing.assert_allclose(auto.error[before], 0.0, atol=1e-15)  # the discrete steps
    assert auto.flow.theta_flat().shape == auto.discrete.theta_flat().shape


def test_the_indicator_is_the_dense_hessian_one_where_a_flow_may_start():
    # A smooth start (log-cosh far from its minimum): every coordinate below 1, so the
    # corrected flow begins at step 1 with the indicator of the dense formula there.
    # (The order tests' loss and spec, so that their compiled corrected2 field serves.)
    opt = spec(lr=0.05)
    theta0 = jnp.array([0.0, 0.3, -0.2, 0.1, 0.0, 0.7])
    flow = af.integrate(opt, with_unused_coordinate, theta0, steps=20, order="corrected2")
    dense = _dense_validity_at_step_one(with_unused_coordinate, theta0, opt)
    report = flow.start_validity
    assert flow.start_step == 1.0 and report.max <= 1.0
    np.testing.assert_allclose(report.rms, np.sqrt(np.mean(dense**2)), rtol=1e-9)
    gain = _corrected.GAIN_SCALE * report.rms**-_corrected.GAIN_POWER
    np.testing.assert_allclose(report.predicted_gain, gain, rtol=1e-12)
    assert 0.0 <= report.series_ratio < 1.0


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("order", ["corrected", "corrected2"])
def test_refuses_what_it_cannot_integrate(order):
    with pytest.raises(ValueError, match="k <= 2.*crosses zero"):
        af.integrate(af.KAdam(0.01, k=3), far_quadratic, THETA0, steps=2, order=order)
    with pytest.raises(ValueError, match="convention='exact'"):
        af.integrate(spec(), far_quadratic, THETA0, steps=2, order=order, convention="euler")
    with pytest.raises(ValueError, match="b1 in"):
        af.integrate(af.Adam(0.01, b1=0.0), far_quadratic, THETA0, steps=2, order=order)

    def numpy_grad(theta):
        return np.asarray(jax.grad(far_quadratic)(jnp.asarray(theta)))  # a NumPy array out

    with pytest.raises(TypeError, match="JAX-traceable gradient"):
        af.integrate(spec(), None, np.zeros(5), grad=numpy_grad, steps=2, order=order)


@pytest.mark.slow  # the Results page's table row; the default run checks corrected2's gain below
def test_at_lr_005_the_best_flow_is_ten_times_closer_than_the_leading_one():
    # The 1-D table's hardest row (nonconvex_1d, β₁ 0.99, β₂ 0.999, T = 8, 160 steps).
    from adamflow.experiments.corrected import accuracy_table

    (row,) = accuracy_table((5e-2,))
    best = min(row["corrected_final_error"], row["corrected2_final_error"])
    # Measured: leading 2.8e-3, corrected 2.5e-3, corrected2 1.4e-5 (197x).
    assert best * 10 <= row["leading_final_error"], row


def test_a_horizon_shorter_than_one_step_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="starts after the first discrete step.*steps >= 1"):
        af.integrate(spec(), far_quadratic, THETA0, steps=0.5, order="corrected")


@pytest.mark.parametrize("backend", ["diffrax", "scipy"])
def test_saved_times_before_the_first_step_need_no_solve(backend):
    flow = af.integrate(
        spec(),
        with_unused_coordinate,
        PADDED_THETA0,
        steps=10,
        order="corrected2",
        save_steps=[0.25, 0.5],
        backend=backend,
    )
    disc = af.run_discrete(spec(), with_unused_coordinate, PADDED_THETA0, 1)
    # The first step's straight segment.
    theta0, theta1 = disc.theta_flat()[:2]
    expected = theta0 + np.outer([0.25, 0.5], theta1 - theta0)
    np.testing.assert_allclose(flow.theta_flat(), expected, rtol=1e-14)
    assert flow.success and flow.stats["num_steps"] == 0


def test_leaving_the_regime_along_the_path_is_a_warning():
    # A valley of width 1/1000 at 3: far from it the curvature vanishes (indicator 0 at the
    # start); crossing it, lr·|ġ|/√v̂ ~ lr·1000 (measured: 40 at step 30.3, limit 32.9).
    width = 1e-3

    def valley(theta):
        return width**2 * jnp.sum(jnp.logaddexp((theta - 3.0) / width, (3.0 - theta) / width))

    with pytest.warns(af.ValidityWarning, match=r"reaches \d+ at step \d.*above 3\d\.\d"):
        flow = af.integrate(
            af.Adam(0.1),
            valley,
            jnp.zeros(1),
            steps=60,
            order="corrected",
            save_steps=np.linspace(0, 60, 601),
        )
    assert flow.success and flow.message == "ok" and flow.start_validity.rms == 0.0


@pytest.mark.slow  # the order tests check that the unused coordinate stays put (_errors)
def test_a_coordinate_with_an_exactly_zero_gradient_leaves_the_rest_untouched():
    # The jets are elementwise: the other coordinates move as in the five-parameter flow.
    padded = af.integrate(
        spec(), with_unused_coordinate, PADDED_THETA0, steps=20, **TOL, order="corrected"
    )
    alone = af.integrate(spec(), far_log_cosh, THETA0, steps=20, order="corrected", **TOL)
    assert padded.success
    np.testing.assert_array_equal(padded.theta_flat()[:, 5], 0.7)
    np.testing.assert_allclose(
        padded.theta_flat()[:, :5], alone.theta_flat(), rtol=1e-9, atol=1e-12
    )
