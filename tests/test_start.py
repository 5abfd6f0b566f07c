"""Runs and flows from a later state: `Trajectory.state_at`, ``run_discrete(start=)``,
``integrate(start=)`` (a `TrainingState` or ``"auto"``), and the comparison helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from test_corrected import THETA0 as FAR_THETA0
from test_corrected import far_quadratic, spec

import adamflow as af

CURVATURES = np.array([1.0, 3.0, 0.5])
THETA0 = jnp.array([1.0, -2.0, 0.5])


def loss(theta):
    return 0.5 * jnp.sum(jnp.asarray(CURVATURES) * theta**2) + jnp.sum(jnp.cos(theta))


def numpy_gradient(theta):
    return CURVATURES * theta - np.sin(theta)


def test_a_continued_discrete_run_equals_the_uninterrupted_one():
    for opt in (af.AdamW(0.01, weight_decay=0.1), af.KAdam(0.01, k=2, b1=(0.9, 0.8))):
        full = af.run_discrete(opt, loss, THETA0, 60, save_every=5)
        state = full.state_at(20)
        assert state.step == 20 and len(state.m) == len(state.v) == opt.k
        rest = af.run_discrete(opt, loss, None, 60, save_every=5, start=state)
        assert rest.start_step == 20 and list(rest.steps) == list(range(20, 61, 5))
        np.testing.assert_array_equal(rest.theta_flat(), full.theta_flat()[4:])
        for level in range(opt.k):
            np.testing.assert_array_equal(rest.v[level][-1], full.v[level][-1])
        # The NumPy-gradient loop continues the same way.
        looped = af.run_discrete(opt, None, None, 60, grad=numpy_gradient, start=state)
        np.testing.assert_allclose(looped.theta_flat()[-1], full.theta_flat()[-1], rtol=1e-12)


def test_a_leading_flow_from_a_state_equals_the_flow_integrated_by_hand():
    # Adam's leading flow written out here (theory/adam.md §4, exact rates), integrated by
    # scipy from the discrete state (θ_K, m_K, v_K) at t = Kη.
    opt = af.Adam(0.02, b1=0.9, b2=0.99, eps=1e-8)
    state = af.run_discrete(opt, loss, THETA0, 30, save_every=30).state_at(30)
    a, b = np.log(1 / 0.9) / 0.02, np.log(1 / 0.99) / 0.02

    def field(t, y):
        theta, m, v = np.split(y, 3)
        g = numpy_gradient(theta)
        m_hat, v_hat = m / -np.expm1(-a * t), v / -np.expm1(-b * t)
        return np.concatenate([-m_hat / (np.sqrt(v_hat) + 1e-8), a * (g - m), b * (g * g - v)])

    y0 = np.concatenate([np.asarray(x) for x in (state.theta, state.m[0], state.v[0])])
    ts = np.arange(30, 81) * 0.02
    hand = solve_ivp(field, (ts[0], ts[-1]), y0, t_eval=ts, rtol=1e-11, atol=1e-13)
    flow = af.integrate(opt, loss, None, start=state, steps=80, rtol=1e-11, atol=1e-13)
    assert flow.start_step == 30 and flow.steps[0] == 30 and flow.steps[-1] == 80
    np.testing.assert_allclose(flow.theta_flat(), hand.y[:3].T, atol=1e-8)
    np.testing.assert_allclose(np.asarray(flow.v[0]), hand.y[6:].T, atol=1e-8)


def test_a_flow_from_a_later_state_converges_at_its_order():
    # From the discrete state at t = 0.3, against the discrete steps after it. Measured:
    # leading 0.98, corrected 2.53 (at lr 0.02..0.005 the leading errors do not fall yet:
    # from the discrete state its O(lr) and O(lr²) terms nearly cancel there).
    fits = af.compare_orders(
        spec(),
        far_quadratic,
        FAR_THETA0,
        [0.005, 0.0025, 0.00125],
        t1=0.6,
        start=0.3,
        orders=("leading", "corrected"),
        metric="max",
        rtol=1e-12,
        atol=1e-14,
    )
    assert not fits["leading"].refused and not fits["corrected"].refused
    assert 0.8 <= fits["leading"].order <= 1.2, fits["leading"]
    assert 1.8 <= fits["corrected"].order <= 2.8, fits["corrected"]


def test_start_auto_leaves_flows_that_start_at_zero_alone():
    flow = af.integrate(af.Adam(0.01), loss, THETA0, steps=10, start="auto")
    plain = af.integrate(af.Adam(0.01), loss, THETA0, steps=10)
    assert flow.start_step == 0.0
    np.testing.assert_array_equal(flow.theta_flat(), plain.theta_flat())


def test_every_order_starts_from_the_state_it_is_given():
    opt = af.AdamW(0.01, weight_decay=0.1)
    state = af.run_discrete(opt, loss, THETA0, 10, save_every=10).state_at(10)
    for order in ("leading", "corrected", "paper"):
        flow = af.integrate(opt, loss, None, start=state, steps=12, order=order)
        np.testing.assert_array_equal(flow.theta_flat()[0], np.asarray(state.theta))
        # Raw moments are handed back as given (the exact convention's bias correction
        # matches the discrete one at t = Kη).
        np.testing.assert_allclose(np.asarray(flow.m[0][0]), np.asarray(state.m[0]), rtol=1e-12)
    # Under the paper's rates the raw moments change; the bias-corrected ones are kept.
    flow = af.integrate(opt, loss, None, start=state, steps=12, order="paper", convention="paper")
    rate = (1 - 0.9) / (0.9 * 0.01)
    m_hat = np.asarray(flow.m[0][0]) / -np.expm1(-rate * 0.1)
    np.testing.assert_allclose(m_hat, np.asarray(state.m[0]) / (1 - 0.9**10), rtol=1e-12)


def test_bad_starts_are_refused_naming_the_cause():
    opt = af.Adam(0.01)
    run = af.run_discrete(opt, loss, THETA0, 10, save_every=5)
    with pytest.raises(ValueError, match=r"step=3 is not a saved step.*saved: 0, 5, 10"):
        run.state_at(3)
    state = run.state_at(5)
    with pytest.raises(ValueError, match="theta0 or start=, not both"):
        af.integrate(opt, loss, THETA0, start=state, steps=10)
    with pytest.raises(ValueError, match=r"save_steps must lie in \[5, 10\]"):
        af.integrate(opt, loss, None, start=state, steps=10, save_steps=[2, 10])
    with pytest.raises(ValueError, match="needs a horizon beyond it"):
        af.integrate(opt, loss, None, start=state, steps=4)
    with pytest.raises(
        ValueError,
        match=r"start.m\[0\] must be a PyTree with the structure and shapes of start.theta",
    ):
        af.integrate(opt, loss, None, start=state._replace(m=(jnp.zeros(2),)), steps=10)
    with pytest.raises(ValueError, match="start.m must be a tuple of 2"):
        af.run_discrete(af.KAdam(0.01, k=2), loss, None, 10, start=state)
    with pytest.raises(TypeError, match="start must be a TrainingState"):
        af.run_discrete(opt, loss, None, 10, start=run)
    with pytest.raises(ValueError, match="start must be None, 'auto'"):
        af.integrate(opt, loss, THETA0, start="later", steps=10)
    with pytest.raises(ValueError, match="steps=5 must exceed the start's step 5"):
        af.run_discrete(opt, loss, None, 5, start=state)
    # A step-0 state is its θ: the same flow as from theta0.
    zero = run.state_at(0)
    np.testing.assert_array_equal(
        af.integrate(opt, loss, None, start=zero, steps=3).theta_flat(),
        af.integrate(opt, loss, THETA0, steps=3).theta_flat(),
    )
    with pytest.raises(ValueError, match="start.step is 0 but start.m is not zero"):
        af.run_discrete(opt, loss, None, 3, start=zero._replace(m=state.m))


def test_pytree_states_round_trip():
    theta0 = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}

    def tree_loss(p):
        return jnp.sum(jnp.tanh(p["w"] @ jnp.array([1.0, -1.0]) + p["b"]) ** 2)

    run = af.run_discrete(af.Adam(0.05), tree_loss, theta0, 8, save_every=4)
    state = run.state_at(4)
    assert jax.tree_util.tree_structure(state.m[0]) == jax.tree_util.tree_structure(theta0)
    rest = af.run_discrete(af.Adam(0.05), tree_loss, None, 8, save_every=4, start=state)
    np.testing.assert_array_equal(rest.theta_flat(), run.theta_flat()[1:])


def test_at_refuses_an_index_out_of_range():
    run = af.run_discrete(af.Adam(0.01), loss, THETA0, 10, save_every=5)  # 3 saved points
    np.testing.assert_array_equal(np.asarray(run.at(-3)), np.asarray(run.at(0)))
    np.testing.assert_array_equal(np.asarray(run.at(jnp.argmax(jnp.arange(3)))), run.final)
    for index in (3, -4):  # JAX arrays would clamp these to the last or first point
        with pytest.raises(IndexError, match="out of range for 3 saved points"):
            run.at(index)
    with pytest.raises(IndexError, match="must be an integer"):
        run.at(1.0)  # type: ignore[arg-type]


def test_compare_refuses_a_bad_start_before_running_anything():
    calls = []

    def grad(theta):
        calls.append(1)
        return jax.grad(loss)(theta)

    for bad in ("later", jnp.zeros(3)):
        with pytest.raises(ValueError, match="start must be None, 'auto' or a TrainingState"):
            af.compare(af.Adam(0.01), None, THETA0, 10, grad=grad, start=bad)  # type: ignore[arg-type]
    assert calls == []
