"""Preconditioned sharpness and the edge-of-stability threshold (theory/eos.md): Lanczos
against dense eigensolves, Adam's preconditioner against a run, the sympy threshold against
the formula and against a frozen-preconditioner recurrence written here in NumPy."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from jax.flatten_util import ravel_pytree

import adamflow as af
from adamflow import Sharpness, adam_preconditioner, eos_threshold, preconditioned_sharpness
from adamflow._sharpness import _crossing, _first_unit_circle_root
from adamflow.symbolic import eos, eos_first_instability, eos_threshold_expr

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- models


@functools.cache
def _mlp(inputs: int = 4, hidden: int = 8, points: int = 16):
    """A random 2-layer tanh MLP (49 parameters, a dict PyTree), its MSE loss, a random
    positive preconditioner shaped like it, and the dense P^{-1/2} H P^{-1/2} (H from
    jax.hessian on the raveled vector). Built once: the tests share its compiled loops."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(points, inputs)))
    y = jnp.asarray(rng.normal(size=(points, 1)))
    theta = {
        "w1": jnp.asarray(rng.normal(size=(inputs, hidden)) / 2),
        "b1": jnp.full(hidden, 0.1),
        "w2": jnp.asarray(rng.normal(size=(hidden, 1)) / 3),
        "b2": jnp.zeros(1),
    }

    def loss(p):
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        return 0.5 * jnp.mean((h @ p["w2"] + p["b2"] - y) ** 2)

    precond = {
        name: jnp.asarray(np.exp(rng.normal(size=leaf.shape))) for name, leaf in theta.items()
    }
    flat, unravel = ravel_pytree(theta)
    hessian = np.asarray(jax.jit(jax.hessian(lambda f: loss(unravel(f))))(flat))
    scale = 1.0 / np.sqrt(np.asarray(ravel_pytree(precond)[0]))
    return loss, theta, precond, scale[:, None] * hessian * scale[None, :]


@functools.cache
def _quadratic(dim: int = 30, seed: int = 3):
    """L = ½ θᵀHθ on a 2-leaf PyTree with a known random H (spread spectrum, one negative
    eigenvalue) and a random positive P; returns loss, theta, precond and the dense
    P^{-1/2} H P^{-1/2}."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    eigs = np.concatenate([[-0.5], np.geomspace(1e-3, 50.0, dim - 1)])
    hessian = (basis * eigs) @ basis.T
    p = np.exp(rng.normal(size=dim))
    split = dim // 3

    def loss(th):
        v = jnp.concatenate([th[0], th[1]])
        return 0.5 * v @ jnp.asarray(hessian) @ v

    theta = (jnp.asarray(rng.normal(size=split)), jnp.asarray(rng.normal(size=dim - split)))
    precond = (jnp.asarray(p[:split]), jnp.asarray(p[split:]))
    scale = 1.0 / np.sqrt(p)
    return loss, theta, precond, scale[:, None] * hessian * scale[None, :]


# ------------------------------------------------------------ sharpness against dense


@pytest.mark.parametrize("k", [1, 3])
def test_mlp_sharpness_equals_dense_eigensolve(k):
    loss, theta, precond, dense_operator = _mlp()
    dense = np.linalg.eigvalsh(dense_operator)[::-1]
    result = preconditioned_sharpness(loss, theta, precond, k=k)
    assert isinstance(result, Sharpness) and result.values.shape == (k,)
    np.testing.assert_allclose(result.values, dense[:k], rtol=1e-8)
    assert result.vectors is None and result.hvps == 40  # min(D = 49, max(2k + 20, 40))


@pytest.mark.parametrize("k", [1, 3])
def test_quadratic_sharpness_and_vectors(k):
    """A known Hessian, D = 30 and fewer iterations than D: eigenvalues to 1e-8, Ritz
    vectors unit-norm with ‖Av − λv‖ ≤ 1e-6 |λ|, residual estimates honest."""
    loss, theta, precond, dense = _quadratic()
    expected = np.linalg.eigvalsh(dense)[::-1][:k]
    result = preconditioned_sharpness(loss, theta, precond, k=k, iters=26, return_vectors=True)
    np.testing.assert_allclose(result.values, expected, rtol=1e-8)
    assert result.hvps == 26 and result.vectors is not None and len(result.vectors) == k
    for value, vector, estimate in zip(result.values, result.vectors, result.residuals):
        assert jax.tree_util.tree_structure(vector) == jax.tree_util.tree_structure(theta)
        v = np.asarray(ravel_pytree(vector)[0])
        assert abs(np.linalg.norm(v) - 1.0) < 1e-12
        residual = np.linalg.norm(dense @ v - value * v)
        assert residual <= 1e-6 * abs(value)
        assert residual <= 10 * estimate + 1e-9 * abs(value)


def test_grad_argument_repeated_eigenvalues_and_one_compilation():
    """``grad=`` replaces jax.grad(loss). With P⁻¹H = 2·I on a 3-dim block the Krylov space
    is exhausted at once and the restarts still find the eigenvalue three times. The
    gradient is traced for the first call only: a new point, precond or k with the same
    shapes (and iterations) reuses the compiled Lanczos loop."""
    traces = []
    h = jnp.array([4.0, 4.0, 4.0, 1.0, 0.5])

    def grad(theta):
        traces.append(1)  # runs only while JAX traces
        return h * theta

    precond = jnp.array([2.0, 2.0, 2.0, 1.0, 1.0])
    result = preconditioned_sharpness(None, jnp.ones(5), precond, grad=grad, k=4)
    np.testing.assert_allclose(result.values, [2.0, 2.0, 2.0, 1.0], rtol=1e-12)
    assert result.hvps == 5  # iters = min(D, ...) = D
    first = len(traces)
    again = preconditioned_sharpness(None, jnp.arange(5.0), 2 * precond, grad=grad, k=2)
    np.testing.assert_allclose(again.values, [1.0, 1.0], rtol=1e-12)
    assert first >= 1 and len(traces) == first


def test_same_key_same_numbers_and_other_key_same_values():
    loss, theta, precond, _ = _mlp()
    a = preconditioned_sharpness(loss, theta, precond, k=2)
    b = preconditioned_sharpness(loss, theta, precond, k=2)
    c = preconditioned_sharpness(loss, theta, precond, k=2, key=jax.random.PRNGKey(7))
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_allclose(a.values, c.values, rtol=1e-8)


@pytest.mark.parametrize(
    "precond_of, message",
    [
        (lambda p: {**p, "b2": -p["b2"]}, "precond must be finite and > 0"),
        (lambda p: {**p, "b1": p["b1"].at[0].set(0.0)}, "precond must be finite and > 0"),
        (lambda p: {**p, "w1": p["w1"].at[1, 1].set(jnp.nan)}, "precond must be finite"),
        (lambda p: {k: v for k, v in p.items() if k != "b2"}, "precond must be a PyTree"),
        (lambda p: {**p, "w2": p["w2"].ravel()}, "precond must be a PyTree"),
        (lambda p: list(p.values()), "precond must be a PyTree"),
    ],
)
def test_wrong_precond_is_named(precond_of, message):
    loss, theta, precond, _ = _mlp()
    with pytest.raises(ValueError, match=re.escape(message)):
        preconditioned_sharpness(loss, theta, precond_of(precond))


def test_wrong_k_iters_and_arguments_are_named():
    loss, theta, precond, _ = _mlp()
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        preconditioned_sharpness(loss, theta, precond, k=0)
    with pytest.raises(ValueError, match=r"k must be <= the number of parameters D=49"):
        preconditioned_sharpness(loss, theta, precond, k=50)
    with pytest.raises(ValueError, match="iters must be an integer >= 3"):
        preconditioned_sharpness(loss, theta, precond, k=3, iters=2)
    with pytest.raises(ValueError, match="iters must be <= the number of parameters"):
        preconditioned_sharpness(loss, theta, precond, iters=50)
    with pytest.raises(TypeError, match="loss must be a callable"):
        preconditioned_sharpness(None, theta, precond)
    with pytest.raises(TypeError, match="theta must hold real floating arrays"):
        preconditioned_sharpness(loss, {"w": jnp.arange(3)}, {"w": jnp.ones(3)})


# ------------------------------------------------------------- Adam's preconditioner


def test_adam_preconditioner_is_the_one_adam_divides_by():
    """From a run's raw v at a saved step, u = m̂ / P exactly (run_discrete's update)."""
    x = jnp.asarray(np.random.default_rng(5).normal(size=(8, 3)))
    loss = lambda th: jnp.sum(jnp.tanh(x @ th["w"]) ** 2) + jnp.sum(th["b"] ** 4)  # noqa: E731
    theta = {"w": jnp.array([0.3, -0.2, 0.5]), "b": jnp.array([1.0, -2.0])}
    opt = af.AdamW(0.01, b1=0.8, b2=0.95, eps=1e-3, weight_decay=0.1)
    tr = af.run_discrete(opt, loss, theta, 12, save_every=4)
    for index in (1, 2, 3):
        step = int(tr.steps[index])
        at = lambda tree: jax.tree_util.tree_map(lambda x: x[index], tree)  # noqa: E731
        precond = adam_preconditioner(opt, at(tr.v[0]), step)
        m_hat = jax.tree_util.tree_map(lambda m: m / (1 - 0.8**step), at(tr.m[0]))
        expected = jax.tree_util.tree_map(lambda m, p: m / p, m_hat, precond)
        got, want = ravel_pytree(at(tr.u))[0], ravel_pytree(expected)[0]
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12)
        v_flat = np.asarray(ravel_pytree(at(tr.v[0]))[0])
        by_hand = np.sqrt(v_flat / (1 - 0.95**step)) + 1e-3
        np.testing.assert_allclose(np.asarray(ravel_pytree(precond)[0]), by_hand, rtol=1e-13)


def test_adam_preconditioner_arguments_are_named():
    v = jnp.ones(3)
    with pytest.raises(ValueError, match="opt must be Adam or AdamW"):
        adam_preconditioner(af.KAdam(0.01, k=2), v, 1)
    with pytest.raises(ValueError, match="step must be an integer >= 1"):
        adam_preconditioner(af.Adam(0.01), v, 0)
    with pytest.raises(ValueError, match="v must be finite and >= 0"):
        adam_preconditioner(af.Adam(0.01), -v, 3)


# ------------------------------------------------------------ the threshold, symbolic

ETA, LAM, B1, S, Z = sp.symbols("eta lambda beta_1 s z")


def test_sympy_threshold_is_the_formula_and_the_polynomial_is_the_hand_one():
    threshold = eos_threshold_expr()
    by_hand = (2 - ETA * LAM) * (1 + B1) / ((1 - B1) * ETA)
    assert sp.simplify(threshold - by_hand) == 0
    assert sp.simplify(eos(1).results["threshold_no_decay"] - 2 * (1 + B1) / ((1 - B1) * ETA)) == 0
    charpoly = eos(1).results["charpoly"]
    hand = (Z - (1 - ETA * LAM)) * (Z - B1) + ETA * (1 - B1) * S * Z
    assert sp.expand(charpoly - hand) == 0


def test_numeric_threshold_equals_sympy_at_random_values():
    threshold = sp.lambdify((ETA, B1, LAM), eos_threshold_expr(), "math")
    rng = np.random.default_rng(0)
    for lr, b1, wd in zip(
        10 ** rng.uniform(-4, -1, 8), rng.uniform(0, 0.999, 8), rng.uniform(0, 5, 8)
    ):
        opt = af.AdamW(float(lr), b1=float(b1), weight_decay=float(wd))
        assert eos_threshold(opt) == pytest.approx(threshold(lr, b1, wd), rel=1e-13)
    adam = af.Adam(0.02, b1=0.9)
    assert eos_threshold(adam) == pytest.approx(2 * 1.9 / (0.1 * 0.02), rel=1e-13)


def test_kadam_crossing_equals_sympy():
    crossing = eos(2).results["crossing"]
    b11, b12 = sp.Symbol("beta_1,1"), sp.Symbol("beta_1,2")
    rng = np.random.default_rng(1)
    for _ in range(5):
        lr, x, y, wd = rng.uniform(1e-3, 0.1), rng.uniform(0, 0.99), rng.uniform(0, 0.99), 0.5
        exact = float(crossing.subs({ETA: lr, LAM: wd, b11: x, b12: y}))
        assert _crossing(lr, (x, y), wd) == pytest.approx(exact, rel=1e-12)


def _frozen_adam(h, p, lr, b1, wd, steps, bias_correction):
    """Adam on L = ½ Σ h_i θ_i² with P frozen: g = hθ, m = β₁m + (1−β₁)g,
    θ ← θ − η(m̂/P + λθ), m̂ = m/(1−β₁ⁿ) or (late-time limit) m̂ = m; returns the rms of θ
    at the end (it starts at 1)."""
    theta = np.ones_like(h)
    m = np.zeros_like(h)
    for n in range(1, steps + 1):
        m = b1 * m + (1 - b1) * h * theta
        m_hat = m / (1 - b1**n) if bias_correction else m
        theta = theta - lr * (m_hat / p + wd * theta)
    return float(np.linalg.norm(theta) / np.sqrt(h.size))


@pytest.mark.parametrize("wd", [0.0, 5.0])
@pytest.mark.parametrize("bias_correction, steps", [(False, 600), (True, 1000)])
def test_frozen_preconditioner_run_changes_stability_at_the_threshold(wd, bias_correction, steps):
    """Stable at 0.98 s*, divergent at 1.02 s*. With the bias correction from step 1 the
    threshold is the late-time one: early steps (m̂ ≈ g, no momentum) amplify the top
    direction enormously before it decays, so that run needs more steps."""
    opt = af.AdamW(0.01, b1=0.9, weight_decay=wd)
    s_star = eos_threshold(opt)
    p = np.array([3.0, 0.5])
    for factor, stable in ((0.98, True), (1.02, False)):
        # Top direction at factor·s*, the other well inside.
        h = np.array([factor * s_star, 0.3 * s_star]) * p
        final = _frozen_adam(h, p, opt.lr, 0.9, wd, steps, bias_correction)
        assert (final < 1e-3) if stable else (final > 1e3), (factor, final)


def test_kadam_first_instability_numeric_agrees_with_jury_and_with_roots():
    """For 2-Adam the Schur-Cohn analysis (sympy) and the unit-circle roots (numeric) find
    the same first instability; NumPy roots of p(z), built here, leave the circle there,
    and eos_threshold raises exactly where a complex pair leaves first."""
    examples = eos(2).results["first_instability"]
    kinds = {inst.kind for _, _, inst in examples}
    assert kinds == {"complex", "z=-1"}
    lr = 0.01
    for factors, decay, inst in examples:
        s_first, root = _first_unit_circle_root(lr, factors, decay / lr)
        assert s_first * lr == pytest.approx(inst.s, rel=1e-8)
        assert (abs(root + 1) > 1e-6) == (inst.kind == "complex")
        unforced = np.poly([1 - decay, *factors])
        forcing = np.zeros(4)
        forcing[1] = np.prod([1 - b for b in factors])  # z² term
        for factor, inside in ((0.99, True), (1.01, False)):
            roots = np.roots(unforced + factor * inst.s * forcing)
            assert (np.abs(roots).max() < 1) == inside, (factors, factor)
        opt = af.KAdam(lr, k=2, b1=factors, weight_decay=decay / lr)
        if inst.kind == "complex":
            with pytest.raises(ValueError, match="complex pair"):
                eos_threshold(opt)
        else:
            assert eos_threshold(opt) * lr == pytest.approx(inst.crossing, rel=1e-10)


def test_eos_first_instability_at_other_values_and_k3():
    inst = eos_first_instability(2, (0.3, 0.2), 0.0)
    s_first, _ = _first_unit_circle_root(1.0, (0.3, 0.2), 0.0)
    assert inst.s == pytest.approx(s_first, rel=1e-8)
    with pytest.raises(ValueError, match="complex pair"):
        eos_threshold(af.KAdam(0.01, k=3, b1=0.9))


def test_threshold_arguments_are_named():
    with pytest.raises(ValueError, match="lr must be a constant"):
        eos_threshold(af.Adam(lambda count: 0.01))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weight_decay must satisfy"):
        eos_threshold(af.AdamW(0.5, weight_decay=4.0))
    with pytest.raises(TypeError, match="opt must be an adamflow spec"):
        eos_threshold("adam")  # type: ignore[arg-type]


def test_theory_page_shows_the_derivations():
    """theory/eos.md holds §2 and §3 as the symbolic layer renders them now."""
    page = (ROOT / "theory" / "eos.md").read_text(encoding="utf-8")
    assert eos(1).markdown("##", 2) in page
    assert eos(2).markdown("##", 3) in page
