"""The leading-order flow: backends agree, order-one convergence, limits and failures."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adamflow as af
from adamflow import _flows

THETA0 = {"w": jnp.array([0.3, -1.2, 2.0]), "b": jnp.array([0.5, -0.4])}
LRS = [0.02, 0.01, 0.005, 0.0025]


def smooth_loss(p):
    """Smooth, non-quadratic, coupled; gradients stay away from zero over t <= 0.5."""
    return (
        jnp.sum(jnp.log(jnp.cosh(p["w"] - 1.0)))
        + 0.5 * jnp.sum(p["b"] ** 2)
        + 0.1 * jnp.sum(p["w"]) * p["b"][0]
    )


def assert_first_order(fit):
    """Error falls like lr (0.8 <= order <= 1.5) and is small: below lr/2 at every lr."""
    assert 0.8 <= fit.order <= 1.5, fit
    assert np.all(fit.errors < 0.5 * fit.lrs), fit


@pytest.mark.parametrize(
    "opt",
    [
        af.Adam(0.01, b1=0.85, b2=0.98),
        af.AdamW(0.01, b1=0.85, b2=0.98, weight_decay=0.05),
        af.KAdam(0.01, k=2, b1=0.85, b2=0.98),
    ],
    ids=["adam", "adamw", "kadam2"],
)
def test_leading_flow_converges_at_order_one(opt):
    exact = af.convergence_order(opt, smooth_loss, THETA0, LRS, t1=0.5)
    euler = af.convergence_order(opt, smooth_loss, THETA0, LRS, t1=0.5, convention="euler")
    # First order: error halves with lr. A wrong rate or a missing bias correction leaves
    # an O(1) error; an accidental second-order flow would exceed 1.5.
    assert_first_order(exact)
    # THEORY §2: the exact-decay convention is the more accurate one, at every lr.
    assert np.all(exact.errors < euler.errors), (exact.errors, euler.errors)


def test_order_band_catches_a_missing_bias_correction(monkeypatch):
    # The order test must be able to fail: drop the bias correction and it does.
    monkeypatch.setattr(_flows, "_bias_corrected", lambda m, drive, rate, t, xp: m + 1e-300)
    opt = af.Adam(0.01, b1=0.85, b2=0.98)
    fit = af.convergence_order(opt, smooth_loss, THETA0, LRS[:3], t1=0.5, backend="scipy")
    with pytest.raises(AssertionError):
        assert_first_order(fit)
    assert np.all(fit.errors > 0.1)


def test_mismatched_kernel_weight_does_not_converge(monkeypatch):
    # THEORY §2 pitfall: decay ln(1/β₁)/η with weight (1-β₁)/η is not normalised; its error
    # stays O(1) as lr shrinks. Reproduce it by scaling the EMA increment.
    real = _flows.rules.ema_increment
    opt = af.Adam(0.01, b1=0.9, b2=0.99)
    ratio = (1 - 0.9) / -np.log(0.9)

    def mismatched(moment, drive, weight):
        return real(moment, drive, weight) - (1 - ratio) * weight * drive

    monkeypatch.setattr(_flows.rules, "ema_increment", mismatched)
    fit = af.convergence_order(opt, smooth_loss, THETA0, LRS[:3], t1=0.5, backend="scipy")
    with pytest.raises(AssertionError):
        assert_first_order(fit)


def test_diffrax_and_scipy_agree_in_tolerance_units():
    opt = af.KAdam(0.01, k=2, b1=0.9, b2=0.99, weight_decay=0.01)
    kwargs = dict(steps=50, rtol=1e-8, atol=1e-10, save_steps=[0, 10, 25, 50])
    a = af.integrate(opt, smooth_loss, THETA0, backend="diffrax", **kwargs)
    b = af.integrate(opt, smooth_loss, THETA0, backend="scipy", solver="DOP853", **kwargs)
    xa, xb = a.theta_flat(), b.theta_flat()
    scale = 1e-10 + 1e-8 * np.abs(xb)
    # Global error of two adaptive solvers: tens of tolerance units, not thousands.
    assert np.max(np.abs(xa - xb) / scale) < 200
    assert a.backend == "diffrax" and b.backend == "scipy"
    assert a.stats["grad_evals"] == 1 + 6 * a.stats["num_steps"]
    assert b.stats["grad_evals"] > 0


def test_scipy_implicit_method_and_numpy_gradient():
    opt = af.Adam(0.01, b1=0.9, b2=0.99)
    ref = af.integrate(opt, None, np.array([1.0, -2.0]), grad=lambda p: 2 * p, steps=30)
    calls = []

    def numpy_grad(p):
        calls.append(type(p))
        return 2.0 * np.asarray(p)  # NumPy only: np.asarray fails under tracing

    def untraceable(p):
        return np.asarray(numpy_grad(p))

    out = af.integrate(opt, None, np.array([1.0, -2.0]), grad=untraceable, steps=30)
    assert out.backend == "scipy"
    # One traced probe finds the callable NumPy-only; then the field runs in NumPy.
    assert len(calls) > 30 and set(calls[1:]) == {np.ndarray}, set(calls)
    np.testing.assert_allclose(out.theta[-1], ref.theta[-1], rtol=1e-5)
    radau = af.integrate(
        opt, None, np.array([1.0, -2.0]), grad=lambda p: 2 * p, steps=30, solver="Radau"
    )
    np.testing.assert_allclose(radau.theta[-1], ref.theta[-1], rtol=1e-5)
    kv = af.integrate(
        opt, None, np.array([1.0, -2.0]), grad=lambda p: 2 * p, steps=30, solver="kvaerno5"
    )
    np.testing.assert_allclose(kv.theta[-1], ref.theta[-1], rtol=1e-5)
    assert kv.stats["grad_evals"] is None  # implicit: Newton iterations are not counted
    with pytest.raises(ValueError, match="JAX-traceable"):
        af.integrate(opt, None, np.array([1.0]), grad=untraceable, steps=3, backend="diffrax")


def test_no_nan_at_t_to_zero_and_update_limit():
    opt = af.AdamW(0.01, b1=0.9, b2=0.999, weight_decay=0.1, eps=1e-8)
    traj = af.integrate(opt, smooth_loss, THETA0, steps=5, save_steps=[0, 1e-9, 1e-4, 0.01, 1])
    assert traj.success
    for leaf in [traj.theta["w"], traj.u["w"], traj.m[0]["w"], traj.v[0]["w"]]:
        assert np.all(np.isfinite(leaf))
    # u(0) is the t -> 0 limit g/(|g|+eps), and u stays continuous there.
    g = np.array([np.tanh(0.3 - 1.0) + 0.03, np.tanh(-1.2 - 1.0) + 0.03, np.tanh(2.0 - 1.0) + 0.03])
    np.testing.assert_allclose(traj.u["w"][0], g / (np.abs(g) + 1e-8), rtol=1e-7)
    np.testing.assert_allclose(traj.u["w"][1], traj.u["w"][0], atol=1e-6)


def test_b1_zero_has_no_memory_and_tracks_discrete():
    opt = af.Adam(0.005, b1=0.0, b2=0.99)
    cmp = af.compare(opt, smooth_loss, THETA0, 100)
    assert cmp.flow.success and cmp.relative_error < 0.02
    # No memory: the raw first moment is the gradient itself at every saved point after the
    # start (0 at t = 0, like every raw moment), as the discrete m_n = g_n; it is no state.
    grads = jax.vmap(jax.grad(smooth_loss))(cmp.flow.theta)
    np.testing.assert_allclose(cmp.flow.m[0]["w"][1:], grads["w"][1:], rtol=1e-12)
    assert np.all(cmp.flow.m[0]["w"][0] == 0)
    gap = np.abs(cmp.flow.m[0]["w"] - cmp.discrete.m[0]["w"]).max()
    assert 0 < gap < 0.02 * np.abs(cmp.discrete.m[0]["w"]).max()  # O(lr), as theta's


@pytest.mark.parametrize("backend", ["diffrax", "scipy"])
def test_b2_zero_flow_second_moment_is_the_squared_gradient(backend):
    opt = af.Adam(0.005, b1=0.9, b2=0.0)
    flow = af.integrate(opt, smooth_loss, THETA0, steps=20, backend=backend)
    grads = jax.vmap(jax.grad(smooth_loss))(flow.theta)
    np.testing.assert_allclose(flow.v[0]["b"][1:], grads["b"][1:] ** 2, rtol=1e-12)
    assert np.all(flow.m[0]["b"][1:] != 0)  # the first moment keeps its memory


def test_failures_are_loud_or_flagged():
    opt = af.Adam(0.01)
    with pytest.raises(af.IntegrationError, match="max_steps"):
        af.integrate(opt, smooth_loss, THETA0, steps=100, max_steps=2)
    traj = af.integrate(opt, smooth_loss, THETA0, steps=100, max_steps=2, throw=False)
    assert not traj.success and "maximum number of solver steps" in traj.message
    traj = af.integrate(
        opt, smooth_loss, THETA0, steps=100, max_steps=2, throw=False, backend="scipy"
    )
    assert not traj.success and "max_steps" in traj.message
    # A gradient that turns NaN: tests/test_robust.py (named, with its time, both backends).


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(), "steps"),
        (dict(steps=10, t1=0.1), "steps"),
        (dict(steps=-1), "steps"),
        (dict(t1=float("inf")), "t1"),
        (dict(steps=10, order="second"), "order"),
        (dict(steps=10, convention="midpoint"), "convention"),
        (dict(steps=10, backend="torch"), "backend"),
        (dict(steps=10, rtol=0.0), "rtol"),
        (dict(steps=10, atol=-1.0), "atol"),
        (dict(steps=10, max_steps=0), "max_steps"),
        (dict(steps=10, save_steps=[0, 20]), "save_steps"),
        (dict(steps=10, save_steps=[5, 1]), "save_steps"),
        (dict(steps=10, solver="rk4"), "solver"),
    ],
)
def test_integrate_rejects_bad_arguments(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        af.integrate(af.Adam(0.01), smooth_loss, THETA0, **kwargs)


@pytest.mark.parametrize(("backend", "done"), [("scipy", "t = 0.2 of 0.2"), ("diffrax", "100.0%")])
def test_progress_bar_reaches_the_end_and_changes_nothing(capsys, backend, done):
    quiet = af.integrate(af.Adam(0.01), smooth_loss, THETA0, steps=20, backend=backend)
    capsys.readouterr()
    shown = af.integrate(
        af.Adam(0.01), smooth_loss, THETA0, steps=20, progress=True, backend=backend
    )
    bar = capsys.readouterr().err
    assert f"integrate ({backend})" in bar and done in bar, bar
    np.testing.assert_allclose(shown.theta_flat(), quiet.theta_flat(), rtol=1e-12)
