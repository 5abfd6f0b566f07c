"""The preconditioned sharpness measured along runs and flows (``sharpness_every``), and
Adam's edge of stability: the discrete run holds λ_max(P⁻¹H) at `eos_threshold`."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adamflow as af
from adamflow.experiments import validity_calibration as calibration_models

CURVATURE = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])
THETA0 = jnp.array([1.0, -2.0, 0.5])


def quadratic(theta):
    return 0.5 * theta @ jnp.asarray(CURVATURE) @ theta


def dense_sharpness(v_hat, eps):
    """λ_max(P⁻¹H) by a dense NumPy eigensolve, P = diag(sqrt(v̂) + ε)."""
    p_inv = 1.0 / (np.sqrt(v_hat) + eps)
    return np.max(np.linalg.eigvals(p_inv[:, None] * CURVATURE).real)


def test_sharpness_along_a_run_equals_a_dense_eigensolve():
    opt = af.AdamW(0.01, b2=0.99, weight_decay=0.1)
    run = af.run_discrete(opt, quadratic, THETA0, 40, save_every=5, sharpness_every=10)
    assert list(np.flatnonzero(np.isfinite(run.sharpness))) == [2, 4, 6, 8]
    for j in (2, 4, 6, 8):
        n = run.steps[j]
        v_hat = np.asarray(run.v[0][j]) / (1 - 0.99**n)
        np.testing.assert_allclose(run.sharpness[j], dense_sharpness(v_hat, 1e-8), rtol=1e-9)


def test_sharpness_along_a_flow_uses_its_own_bias_correction():
    opt = af.Adam(0.01, b2=0.99)
    flow = af.integrate(opt, quadratic, THETA0, steps=20, convention="euler", sharpness_every=10)
    b = (1 - 0.99) / 0.01  # the Euler rate: v̂ = v / (1 - e^{-bt})
    for j in (10, 20):
        v_hat = np.asarray(flow.v[0][j]) / -np.expm1(-b * flow.ts[j])
        np.testing.assert_allclose(flow.sharpness[j], dense_sharpness(v_hat, 1e-8), rtol=1e-9)
    assert np.isnan(flow.sharpness[[0, 5, 15]]).all()


def test_sharpness_every_is_refused_where_it_has_no_meaning():
    with pytest.raises(ValueError, match="sharpness_every needs Adam or AdamW"):
        af.run_discrete(af.KAdam(0.01, k=2), quadratic, THETA0, 10, sharpness_every=5)
    with pytest.raises(ValueError, match="must be a multiple of save_every=3"):
        af.run_discrete(af.Adam(0.01), quadratic, THETA0, 10, save_every=3, sharpness_every=5)
    with pytest.raises(ValueError, match="sharpness_every must be an integer >= 1"):
        af.integrate(af.Adam(0.01), quadratic, THETA0, steps=10, sharpness_every=0)

    def numpy_grad(theta):
        return CURVATURE @ np.asarray(theta)

    with pytest.raises(ValueError, match="sharpness_every needs a JAX-traceable"):
        af.run_discrete(af.Adam(0.01), None, np.ones(3), 10, grad=numpy_grad, sharpness_every=5)


#: One loss object: the tests share its compiled functions.
tanh_mlp = functools.cache(calibration_models.tanh_mlp)


def test_adam_holds_its_preconditioned_sharpness_at_the_threshold():
    # Measured: ratio 0.95..1.02 at steps 250..3000 (lr 0.02, β₁ 0.9); the threshold is
    # 2(1 + β₁)/((1 - β₁)η) = 1900.
    loss, theta0 = tanh_mlp()
    opt = af.Adam(0.02)
    run = af.run_discrete(opt, loss, theta0, 3000, save_every=250, sharpness_every=250)
    ratio = run.sharpness[1:] / af.eos_threshold(opt)
    assert np.all((ratio >= 0.8) & (ratio <= 1.1)), ratio
    # At a 4x smaller lr the threshold is 4x higher and the run stays below it at first.
    slow = af.run_discrete(
        opt.replace(lr=0.005), loss, theta0, 250, save_every=250, sharpness_every=250
    )
    assert slow.sharpness[-1] < 0.8 * af.eos_threshold(opt.replace(lr=0.005))
    assert jax.tree_util.tree_structure(run.final) == jax.tree_util.tree_structure(theta0)


def test_the_eos_flow_holds_the_edge_where_the_leading_flow_passes_it():
    # Measured (600 steps, figure eos): after the onset near step 80 the eos flow's ratio
    # stays in 0.94..1.02 while the leading flow's climbs past 2 by step 250.
    loss, theta0 = tanh_mlp()
    opt = af.Adam(0.02)
    threshold = af.eos_threshold(opt)
    saved = np.arange(0, 251, 50)
    kwargs = dict(steps=250, save_steps=saved, sharpness_every=50)
    eos = af.integrate(opt, loss, theta0, order="eos", **kwargs)
    leading = af.integrate(opt, loss, theta0, **kwargs)
    late = saved >= 150
    assert np.all(np.abs(eos.sharpness[late] / threshold - 1) <= 0.2), eos.sharpness / threshold
    assert leading.sharpness[-1] / threshold > 1.5, leading.sharpness / threshold
    # It carries θ, m and v like every order, so the sharpness along it can be measured.
    assert len(eos.m) == len(eos.v) == 1 and eos.success
    # Its field takes five gradients (one, and two per tracked direction); the leading one.
    assert eos.stats["grad_evals"] == 5 * eos.stats["field_evals"] > 0
    assert leading.stats["grad_evals"] == leading.stats["field_evals"] > 0


def test_eos_directions_sets_the_tracked_directions_and_is_checked():
    # Far below the edge every σ² is 0 and the eos flow is the leading flow (§5.1), for
    # any number of directions; one direction costs 1 + 2 gradients per field evaluation.
    opt = af.Adam(0.01)
    kwargs = dict(steps=30, save_steps=[0, 10, 30], rtol=1e-10)
    one = af.integrate(opt, quadratic, THETA0, order="eos", eos_directions=1, **kwargs)
    leading = af.integrate(opt, quadratic, THETA0, **kwargs)
    np.testing.assert_allclose(one.theta_flat(), leading.theta_flat(), rtol=0, atol=1e-8)
    assert one.stats["grad_evals"] == 3 * one.stats["field_evals"] > 0
    for bad in (0, 4, 1.5, 2.0, "2", True):
        with pytest.raises(ValueError, match="eos_directions must be 1, 2 or 3"):
            af.integrate(opt, quadratic, THETA0, order="eos", eos_directions=bad, steps=2)
    with pytest.raises(ValueError, match="eos_directions applies to order='eos' only"):
        af.compare(opt, quadratic, THETA0, 2, eos_directions=1)


def test_fig1_sharpness_summary_names_a_catapult_and_its_drawing():
    from matplotlib.figure import Figure

    from adamflow.experiments.eos import fig1_sharpness_summary
    from adamflow.plotting.eos import draw_paper_fig1_sharpness

    runs = {
        "Adam": {"steps": [250, 500, 750], "ratio": [0.3, 0.7, 0.5]},
        "AdamW": {"steps": [250, 500, 750, 1000], "ratio": [0.5, 1.6, 0.9, 0.01]},
    }
    summary = fig1_sharpness_summary(runs)
    assert summary["Adam"]["reached_edge"] is False and summary["Adam"]["peak_step"] == 500
    assert summary["AdamW"]["reached_edge"] is True
    assert summary["AdamW"]["min_after_peak_step"] == 1000
    assert summary["AdamW"]["collapse_factor"] == pytest.approx(160.0)
    said = summary["what_it_was"]
    assert "Adam stays below the edge (largest ratio 0.70 at step 500)" in said
    assert "1.60× the threshold at step 500" in said and "collapses 160-fold by step 1000" in said
    figure = draw_paper_fig1_sharpness(runs)
    assert isinstance(figure, Figure)
    drawn = [list(line.get_ydata()) for line in figure.axes[0].lines]
    assert runs["AdamW"]["ratio"] in drawn and runs["Adam"]["ratio"] in drawn
