"""The reviewers' questions (adamflow.experiments.reviewers): each answer is asserted."""

import numpy as np
import pytest

from adamflow.experiments import reviewers


@pytest.fixture(scope="module")
def quick():
    return reviewers.paper_reviewers_experiment(quick=True)


@pytest.mark.slow  # the quick experiment: ~30 s of sweeps
def test_lr_does_not_move_the_boundary_outside_the_band(quick):
    lr = quick.results["lr"]
    assert set(lr) == {"0.1", "0.01", "0.001"}
    for stats in lr.values():
        assert stats["agreement_outside_band"] == 1.0
        assert stats["unstable_measured_stable_outside_band"] == 0.0
        assert stats["band_cells"] > 0  # the apparent stable growth lives in the band
    # the quadratic has no silences: measured stable everywhere at every lr
    for stats in quick.results["lr_quadratic"].values():
        assert stats["unstable_measured_stable"] == 1.0


@pytest.mark.slow  # the quick experiment: ~30 s of sweeps
def test_noise_without_zeros_flips_nothing_zeros_flip_unstable_cells(quick):
    flips = quick.results["noise_flips"]
    assert flips["deterministic_vs_gaussian"]["flipped"] == 0
    bernoulli = flips["gaussian_vs_bernoulli"]
    assert bernoulli["flipped"] > 0
    assert bernoulli["flipped_theory_stable"] == 0  # only theory-unstable cells flip


@pytest.mark.slow  # the quick experiment: ~30 s of sweeps
def test_weight_decay_keeps_the_boundary(quick):
    for stats in quick.results["weight_decay"].values():
        assert stats["agreement_outside_band"] == 1.0
    for flips in quick.results["weight_decay_flips"].values():
        assert flips["flipped_theory_stable"] == 0
        assert flips["flipped"] == flips["flipped_in_band"]  # any change is in the ε-cap band


def test_noise_problems_share_mean_and_variance():
    import jax

    theta = np.zeros(reviewers.DIM)
    keys = jax.random.split(jax.random.PRNGKey(1), 20000)
    with jax.enable_x64(True):
        draws = {}
        for kind in reviewers.NOISE_KINDS:
            problem = reviewers.noise_problem(kind)
            draws[kind] = np.asarray(jax.vmap(lambda k: problem.grad(theta, k))(keys))  # noqa: B023
    det, gauss, bern = (draws[kind] for kind in reviewers.NOISE_KINDS)
    assert np.all(gauss != 0) and np.all(det != 0) and np.mean(bern == 0) > 0.9
    mean, n = det[0], len(keys)
    assert np.all(det == mean)  # deterministic: the same gradient at every key
    # Each noisy mean within 4 of its own standard errors of the deterministic gradient
    # (the SE is about 5% of it per coordinate here), and the two total variances within 4
    # SEs of each other: a bound set by the sampling error, not a fixed 30%.
    for draw in (gauss, bern):
        standard_error = draw.std(0) / np.sqrt(n)
        assert np.all(np.abs(draw.mean(0) - mean) <= 4 * standard_error)
        assert np.all(standard_error < 0.06 * np.abs(mean))

    def variance_and_error(draw: np.ndarray) -> tuple[float, float]:
        centred = draw - draw.mean(0)
        per_sample = (centred**2).sum(1)  # the total variance's summand
        return float(per_sample.mean()), float(per_sample.std() / np.sqrt(n))

    (vg, eg), (vb, eb) = variance_and_error(gauss), variance_and_error(bern)
    assert abs(vg - vb) <= 4 * np.hypot(eg, eb) and np.hypot(eg, eb) < 0.02 * vg


@pytest.mark.slow  # the quick experiment: ~30 s of sweeps
def test_drawing_has_three_panels(quick):
    from adamflow.plotting.reviewers import draw_paper_reviewers

    figure = draw_paper_reviewers(quick.data)
    assert len(figure.axes) == 3
    # Every panel draws something, and each is labelled.
    for axis in figure.axes:
        assert axis.get_title() or axis.get_xlabel(), axis
        assert axis.lines or axis.images or axis.collections or axis.patches, axis
