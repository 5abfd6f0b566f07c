"""Learning-rate schedules: the discrete run is optax's, the flow follows the schedule in
time t_n = Σ_{i<n} η_i, and its error falls at order one as the schedule is scaled down."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamflow as af

THETA0 = jnp.array([0.3, -1.2, 2.0])
SCHEDULE = optax.warmup_cosine_decay_schedule(1e-3, 2e-2, 20, 200, 1e-3)


def loss(theta):
    return jnp.sum(jnp.log(jnp.cosh(theta - 1.0))) + 0.05 * jnp.sum(theta**2)


def optax_path(tx, steps):
    def body(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    _, path = jax.lax.scan(body, (THETA0, tx.init(THETA0)), None, length=steps)
    return np.asarray(path)


def test_discrete_run_and_as_optax_equal_optax_adamw_with_the_schedule():
    opt = af.AdamW(SCHEDULE, b1=0.9, b2=0.99, weight_decay=0.01)
    reference = optax_path(optax.adamw(SCHEDULE, b1=0.9, b2=0.99, weight_decay=0.01), 200)
    run = af.run_discrete(opt, loss, THETA0, 200)
    np.testing.assert_allclose(run.theta_flat()[1:], reference, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(optax_path(opt.as_optax(), 200), reference, rtol=1e-12, atol=1e-14)
    # Times are the sums of the steps taken.
    etas = np.array([float(SCHEDULE(i)) for i in range(200)])
    np.testing.assert_allclose(run.ts, np.concatenate([[0.0], np.cumsum(etas)]), rtol=1e-12)


def test_flow_with_a_schedule_converges_at_order_one():
    def profile(t):
        return 0.5 + 0.5 * jnp.sin(2.0 * t) ** 2  # the step size over time, scaled by c

    lrs = (0.02, 0.01, 0.005)  # with 0.0025 too the fitted order is the same, 1.074
    errors = []
    for c in lrs:
        steps = round(1.0 / c)
        opt = af.AdamW(lambda n, c=c: c * profile(c * n), b1=0.9, b2=0.99, weight_decay=0.05)
        errors.append(af.compare(opt, loss, THETA0, steps, save_every=steps).final_error)
    fit = af.fit_order(lrs, errors)
    assert 0.85 < fit.order < 1.25, (fit.order, errors)  # measured 1.074


def test_a_constant_schedule_is_the_constant_lr_flow():
    steps = 60
    scheduled = af.integrate(af.Adam(lambda n: 0.01), loss, THETA0, steps=steps, rtol=1e-10)
    constant = af.integrate(af.Adam(0.01), loss, THETA0, steps=steps, rtol=1e-10)
    np.testing.assert_allclose(scheduled.ts, constant.ts, rtol=1e-12)
    np.testing.assert_allclose(scheduled.theta_flat(), constant.theta_flat(), rtol=1e-7, atol=1e-9)


def test_schedules_are_refused_where_they_have_no_meaning():
    opt = af.Adam(SCHEDULE)
    with pytest.raises(ValueError, match="constant lr"):
        af.integrate(opt, loss, THETA0, steps=10, order="corrected")
    with pytest.raises(ValueError, match="give steps="):
        af.integrate(opt, loss, THETA0, t1=0.1)
    with pytest.raises(ValueError, match=r"lr\(0\)"):
        af.Adam(lambda n: 0.0 * n)


def test_zero_dimensional_scalars_are_accepted():
    opt = af.KAdam(
        jnp.asarray(0.01), k=2, b1=np.float32(0.5), b2=jnp.asarray(0.9), eps=np.float64(1e-8)
    )
    assert opt == af.KAdam(0.01, k=2, b1=0.5, b2=0.9)
    assert isinstance(opt.lr, float)
