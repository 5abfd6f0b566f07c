"""The benchmark objectives of adamflow.problems: gradients, randomness, gates, validation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adamflow import problems
from adamflow.problems import Problem


def keys(count: int, seed: int = 0) -> jax.Array:
    return jax.random.split(jax.random.PRNGKey(seed), count)


def loss_of(problem: Problem) -> Callable[[Any], Any]:
    """The problem's full objective (every built-in has one)."""
    assert problem.loss is not None
    return problem.loss


def support_of(problem: Problem) -> Callable[[jax.Array], Any]:
    """The problem's declared gradient support."""
    assert problem.support is not None
    return problem.support


_MADE: dict[str, Problem] = {}


def builtin(name: str) -> Problem:
    """Each built-in made once per test session (the digits MLP imports scikit-learn)."""
    if name not in _MADE:
        _MADE[name] = problems.get(name)
    return _MADE[name]


@pytest.mark.parametrize("name", sorted(problems.PROBLEMS))
def test_every_builtin_gives_a_finite_gradient_shaped_like_theta0(name: str) -> None:
    problem = builtin(name)
    assert isinstance(problem, Problem) and problem.name == name
    theta = jax.tree_util.tree_map(jnp.asarray, problem.theta0)
    g = jax.jit(lambda t, k: problem.step_gradient(t, k, 1))(theta, jax.random.PRNGKey(3))
    assert jax.tree_util.tree_structure(g) == jax.tree_util.tree_structure(theta)
    for leaf_g, leaf_t in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(theta)):
        assert leaf_g.shape == leaf_t.shape
        assert np.all(np.isfinite(leaf_g))
    assert np.isfinite(float(jax.jit(loss_of(problem))(theta)))
    assert problem.size == sum(np.size(x) for x in jax.tree_util.tree_leaves(problem.theta0))


def test_sparse_coordinates_see_their_gradient_with_probability_p() -> None:
    p, dim = 0.05, 40
    problem = problems.sparse(dim=dim, p=p, seed=1)
    theta = jnp.full(dim, 10.0)  # far from every target: no gradient is zero by accident
    full = jax.grad(loss_of(problem))(theta)
    grads = jax.jit(jax.vmap(lambda k: problem.grad(theta, k)))(keys(2000))
    seen = np.asarray(grads != 0)
    # Where seen, the gradient is the full quadratic gradient h (θ - θ*), exactly.
    np.testing.assert_allclose(np.where(seen, grads, 0), np.where(seen, full, 0), rtol=1e-14)
    # Frequency p within 5 binomial standard deviations (a wrong p = 0.06 would fail).
    n = seen.size
    assert abs(seen.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    # The declared support is exactly the set of coordinates with a gradient.
    support = jax.jit(jax.vmap(support_of(problem)))(keys(2000))
    np.testing.assert_array_equal(np.asarray(support), seen)


def test_switch_off_gradient_is_constant_then_exactly_zero() -> None:
    problem = problems.switch_off(dim=3, n0=7, scale=2.0)
    theta = jnp.array([0.3, -1.0, 5.0])
    key = jax.random.PRNGKey(0)
    np.testing.assert_array_equal(problem.step_gradient(theta, key, 7), [2.0, 0.2, 0.02])
    np.testing.assert_array_equal(problem.step_gradient(theta, key, 8), [0.0, 0.0, 0.0])
    on, off = problem.step_support(key, 7), problem.step_support(key, 8)
    assert on is not None and off is not None
    assert bool(on.all()) and not bool(off.any())
    np.testing.assert_allclose(jax.grad(loss_of(problem))(theta), [2.0, 0.2, 0.02])


def test_quadratic_gradient_is_the_gradient_of_its_loss() -> None:
    problem = problems.quadratic(dim=6, condition=50.0)
    theta = jnp.linspace(-1.0, 2.0, 6)
    np.testing.assert_allclose(
        problem.grad(theta, jax.random.PRNGKey(0)), jax.grad(loss_of(problem))(theta), rtol=1e-13
    )


@pytest.mark.parametrize("name", ["logistic", "mlp_digits"])
def test_minibatch_gradients_average_to_the_full_gradient(name: str) -> None:
    problem = builtin(name)
    theta = jax.tree_util.tree_map(lambda x: jnp.asarray(x) + 0.1, problem.theta0)
    full = jax.jit(jax.grad(loss_of(problem)))(theta)
    batches = jax.jit(jax.vmap(lambda k: problem.grad(theta, k)))(keys(400, seed=2))
    mean = jax.tree_util.tree_map(lambda g: g.mean(axis=0), batches)
    spread = jax.tree_util.tree_map(lambda g: g.std(axis=0) / np.sqrt(400), batches)
    for m, f, s in zip(*(jax.tree_util.tree_leaves(t) for t in (mean, full, spread))):
        # within 6 standard errors of the mean (plus round-off) everywhere
        assert np.all(np.abs(m - f) <= 6 * s + 1e-12)
    # and the minibatches differ from each other (the key is used)
    first = jax.tree_util.tree_leaves(batches)[0]
    assert not np.allclose(first[0], first[1])


def test_mlp_digits_is_a_ten_class_network_on_the_digits() -> None:
    problem = problems.mlp_digits(hidden=8, seed=1)
    shapes = {k: np.shape(v) for k, v in problem.theta0.items()}
    assert shapes == {"w1": (64, 8), "b1": (8,), "w2": (8, 10), "b2": (10,)}
    loss = float(jax.jit(loss_of(problem))(problem.theta0))
    assert 1.0 < loss < 10.0  # cross-entropy of an untrained 10-class model, about ln 10


def test_load_digits_is_the_one_raw_loader() -> None:
    """scikit-learn's digits as they ship (pixels 0..16, labels 0..9), read-only and cached;
    `mlp_digits` scales the same pixels to [0, 1]."""
    from sklearn.datasets import load_digits as sklearn_digits

    images, labels = problems.load_digits()
    x, y = sklearn_digits(return_X_y=True)
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, y)
    assert images.shape == (1797, 64) and images.dtype == np.float64
    assert images.min() == 0.0 and images.max() == 16.0 and set(np.unique(labels)) == set(range(10))
    assert not images.flags.writeable and not labels.flags.writeable
    assert problems.load_digits()[0] is images  # cached: loaded once per process
    problem = problems.mlp_digits(hidden=4, batch=1797)
    full = jax.jit(loss_of(problem))(problem.theta0)
    # The loss over all images equals the mean of per-image losses on images / 16.
    theta = problem.theta0
    hidden = np.maximum(images / 16.0 @ theta["w1"] + theta["b1"], 0.0)
    logits = hidden @ theta["w2"] + theta["b2"]
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert float(full) == pytest.approx(-log_probs[np.arange(1797), labels].mean(), rel=1e-12)


def test_fingerprint_identifies_parameters_and_theta0() -> None:
    a, b = problems.sparse(p=0.02), problems.sparse(p=0.03)
    assert a.fingerprint() == problems.sparse(p=0.02).fingerprint()
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint()["params"]["p"] == 0.02
    moved = Problem("sparse", np.ones(32), a.grad, params=a.params)
    assert moved.fingerprint()["theta0_sha256"] != a.fingerprint()["theta0_sha256"]


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="p must be in"):
        problems.sparse(p=0.0)
    with pytest.raises(ValueError, match="dim must be an integer"):
        problems.sparse(dim=0)
    with pytest.raises(ValueError, match="n0 must be an integer"):
        problems.switch_off(n0=0)
    with pytest.raises(ValueError, match="problem must be one of"):
        problems.get("rosenbrock")
    with pytest.raises(TypeError, match="grad must be callable"):
        Problem("x", np.zeros(2), grad=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="theta0 must contain"):
        Problem("x", {}, grad=lambda t, k: t)


def _quadratic_grad(theta: Any, key: jax.Array) -> Any:
    return theta - 1.0


def test_validate_refuses_a_grad_of_the_wrong_shape_naming_both_shapes() -> None:
    problems.sparse().validate()  # the built-ins pass
    wrong = Problem("x", np.zeros(3), lambda theta, key: jnp.zeros(4))
    with pytest.raises(ValueError, match=r"grad must return a gradient.*float64\[3\].*\[4\]"):
        wrong.validate()
    nested = Problem(
        "x", {"w": np.zeros((2, 2)), "b": np.zeros(2)}, lambda theta, key: theta["w"].sum(0)
    )
    with pytest.raises(ValueError, match=r"grad must return.*expected \{b: float64\[2\], w: "):
        nested.validate()
    integer = Problem("x", np.zeros(2), lambda theta, key: jnp.zeros(2, jnp.int32))
    with pytest.raises(ValueError, match="grad must return floating-point"):
        integer.validate()


def test_validate_names_the_expected_signature() -> None:
    no_key = Problem("x", np.zeros(2), lambda theta: theta)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"grad must be callable as grad\(theta, key\)"):
        no_key.validate()
    bad_gate = Problem("x", np.zeros(2), _quadratic_grad, gate=lambda: True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"gate must be callable as gate\(step\)"):
        bad_gate.validate()
    bad_support = Problem("x", np.zeros(2), _quadratic_grad, support=lambda: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"support must be callable as support\(key\)"):
        bad_support.validate()
    shaped_support = Problem(
        "x", np.zeros(2), _quadratic_grad, support=lambda key: jnp.ones(3, bool)
    )
    with pytest.raises(ValueError, match="support must return booleans"):
        shaped_support.validate()
    vector_loss = Problem("x", np.zeros(2), _quadratic_grad, loss=lambda theta: theta)
    with pytest.raises(ValueError, match="loss must return a scalar"):
        vector_loss.validate()
    # An error inside grad itself is not disguised, only annotated.
    broken = Problem("x", np.zeros(2), lambda theta, key: theta + jnp.zeros(5))
    with pytest.raises(TypeError) as info:
        broken.validate()
    assert any("while tracing grad of problem 'x'" in note for note in info.value.__notes__)
