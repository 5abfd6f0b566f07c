"""Failures name their cause: bad starting points, gradients of the wrong shape, NaN
gradients and 0/0 updates are reported as such, not as a solver's step limit."""

import jax.numpy as jnp
import numpy as np
import pytest

import adamflow as af

OPT = af.Adam(1e-2, b1=0.9, b2=0.99)


def runaway(theta):
    """Pushes θ₀ upward; the gradient turns NaN once θ₀ passes 0.5 (near t = 0.4)."""
    return jnp.where(theta[0] > 0.5, jnp.nan, -1.0) * jnp.ones_like(theta)


@pytest.mark.parametrize("backend", ["diffrax", "scipy"])
def test_a_gradient_that_turns_nan_is_named_with_its_time(backend):
    with pytest.raises(af.IntegrationError, match="gradient became non-finite") as info:
        af.integrate(OPT, None, jnp.array([0.1, 0.2]), grad=runaway, steps=100, backend=backend)
    t = float(str(info.value).split("at t = ")[1].split(" ")[0])
    assert 0.38 < t < 0.42, str(info.value)  # θ₀ = 0.1 + t crosses 0.5 at t = 0.4
    assert "maximum number" not in str(info.value).split("(the solver said")[0]
    flow = af.integrate(
        OPT, None, jnp.array([0.1, 0.2]), grad=runaway, steps=100, backend=backend, throw=False
    )
    assert not flow.success and "gradient became non-finite" in flow.message


CURVATURES = np.logspace(0, 2, 8)


def spread_quadratic(theta):
    """Curvatures 1..100: as Adam converges v̂ shrinks and λ_max(P⁻¹H) grows; discrete Adam
    stops at the edge (docs/how-to/sharpness.md), the leading flow passes it."""
    return 0.5 * jnp.sum(jnp.asarray(CURVATURES) * theta**2)


@pytest.mark.parametrize(
    "max_steps, past_the_edge",
    # Measured: 200 solver steps pass step 1000 at 0.055x the threshold; 2500 pass step
    # 2200 at 22.9x (the flow's ratio: 1.1 at step 1600, 62 at 2400).
    [(200, False), (2500, True)],
)
def test_a_solve_out_of_solver_steps_says_where_it_got_and_its_sharpness(max_steps, past_the_edge):
    opt = af.Adam(1e-2, b1=0.9, b2=0.99)
    saved = np.arange(0, 2401, 200)
    kwargs = dict(steps=2400, save_steps=saved, max_steps=max_steps, sharpness_every=200)
    with pytest.raises(af.IntegrationError) as failure:
        af.integrate(opt, spread_quadratic, jnp.ones(8), **kwargs)
    flow = failure.value.trajectory  # the path up to the failure comes with the error
    assert flow.message == str(failure.value)
    reached = int(np.flatnonzero(np.isfinite(flow.theta_flat()).all(axis=1))[-1])
    assert not flow.success and 0 < reached < len(saved) - 1
    # P⁻¹H is diagonal: its largest entry, from the saved raw moment (exact-convention rate).
    b = np.log(1 / 0.99) / 1e-2
    v_hat = np.asarray(flow.v[0][reached]) / -np.expm1(-b * flow.ts[reached])
    ratio = np.max(CURVATURES / (np.sqrt(v_hat) + 1e-8)) / af.eos_threshold(opt)
    assert (ratio > 1.5) == past_the_edge
    said = flow.message.split(" (the solver said")[0]
    passed = f"took all max_steps={max_steps} steps and passed step {flow.steps[reached]:.6g}"
    assert passed in said and "throw=False" in said
    assert f"{max_steps / flow.steps[reached]:.3g} solver steps per discrete step" in said
    if past_the_edge:
        assert f"lambda_max(P^-1 H) is {ratio:.3g}x the edge-of-stability threshold" in said
        assert "order='eos' follows Adam through the edge" in said
        return
    assert f"is {ratio:.3g}x the edge-of-stability threshold eos_threshold(opt) (below it" in said
    # The sharpness is measured where the flow got to, nan beyond; throw=False returns
    # the same path.
    np.testing.assert_allclose(flow.sharpness[reached] / af.eos_threshold(opt), ratio, rtol=1e-6)
    assert np.isnan(flow.sharpness[reached + 1 :]).all()
    returned = af.integrate(opt, spread_quadratic, jnp.ones(8), throw=False, **kwargs)
    np.testing.assert_array_equal(flow.theta_flat(), returned.theta_flat())
    # Stopped before its first save after t = 0: no sharpness (v̂ there is a 0/0 limit).
    kwargs["max_steps"] = 1
    early = af.integrate(opt, spread_quadratic, jnp.ones(8), throw=False, **kwargs)
    assert "passed step 0 (the last" in early.message
    assert "sharpness" not in early.message.split(" (the solver said")[0]


def test_zero_eps_and_zero_gradient_is_named_as_zero_over_zero():
    with pytest.raises(af.IntegrationError, match="update u .* non-finite .* eps=0 gives 0/0"):
        af.integrate(
            af.Adam(1e-2, eps=0.0),
            None,
            jnp.ones(2),
            grad=lambda th: th * jnp.array([1.0, 0.0]),
            steps=5,
        )


def test_non_finite_theta0_is_refused_before_any_run():
    for run in (
        lambda th: af.integrate(OPT, lambda p: jnp.sum(p**2), th, steps=5),
        lambda th: af.run_discrete(OPT, lambda p: jnp.sum(p**2), th, 5),
        lambda th: af.compare(OPT, lambda p: jnp.sum(p**2), th, 5),
    ):
        with pytest.raises(ValueError, match=r"theta0 must be finite; \['w'\]"):
            run({"w": jnp.array([0.0, jnp.inf]), "b": jnp.zeros(1)})


def test_a_gradient_of_the_wrong_structure_is_named():
    theta0 = {"w": jnp.zeros(3), "b": jnp.zeros(())}
    bad_shape = lambda th: {"w": th["w"][:2], "b": th["b"]}  # noqa: E731
    bad_tree = lambda th: th["w"]  # noqa: E731
    for grad in (bad_shape, bad_tree):
        with pytest.raises(ValueError, match=r"grad must return .* expected \{\['b'\]: \(\)"):
            af.integrate(OPT, None, theta0, grad=grad, steps=3)
        with pytest.raises(ValueError, match="grad must return"):
            af.run_discrete(OPT, None, theta0, 3, grad=grad)
    with pytest.raises(ValueError, match="grad must return"):  # NumPy callables too
        af.run_discrete(OPT, None, np.zeros(3), 3, grad=lambda p: np.asarray(p)[:2])


def test_numpy_gradients_run_discretely_and_compare():
    numpy_grad = lambda p: 2.0 * np.asarray(p)  # noqa: E731  (fails under tracing)
    jax_grad = lambda p: 2.0 * p  # noqa: E731
    theta0 = np.array([1.0, -2.0])
    a = af.run_discrete(OPT, None, theta0, 25, grad=numpy_grad, save_every=4)
    b = af.run_discrete(OPT, None, theta0, 25, grad=jax_grad, save_every=4)
    np.testing.assert_allclose(a.theta_flat(), b.theta_flat(), rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(a.steps, b.steps)
    c = af.compare(OPT, None, theta0, 25, grad=numpy_grad)
    d = af.compare(OPT, None, theta0, 25, grad=jax_grad, backend="scipy")
    assert c.flow.backend == "scipy" and c.max_error == pytest.approx(d.max_error, rel=1e-9)


def test_progress_run_is_the_same_run():
    loss = lambda p: jnp.sum(jnp.log(jnp.cosh(p - 1.0)))  # noqa: E731
    kwargs = dict(save_every=7)
    a = af.run_discrete(OPT, loss, jnp.array([0.3, -1.0]), 50, progress=True, **kwargs)
    b = af.run_discrete(OPT, loss, jnp.array([0.3, -1.0]), 50, **kwargs)
    np.testing.assert_array_equal(a.steps, b.steps)
    np.testing.assert_allclose(a.theta_flat(), b.theta_flat(), rtol=1e-14, atol=1e-16)


def test_compare_orders_keeps_every_result_and_names_refused_lrs():
    loss = lambda p: jnp.sum(jnp.log(jnp.cosh(p - 1.0)))  # noqa: E731
    # The corrected flow refuses k = 3 for every lr; the leading flow fits all of them.
    fits = af.compare_orders(
        af.KAdam(0.01, k=3), loss, jnp.array([0.3, -1.0]), [0.02, 0.01], t1=0.2
    )
    assert set(fits) == {"leading", "corrected"}
    assert fits["leading"].lrs.size == 2 and not fits["leading"].refused
    assert np.isfinite(fits["leading"].order)
    assert set(fits["corrected"].refused) == {0.02, 0.01}
    assert "k <= 2" in fits["corrected"].refused[0.01] and np.isnan(fits["corrected"].order)
