"""k-Adam for practitioners: optax adapters, the per-level bound, the training harness."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from adamflow import Adam, AdamW, KAdam, run_discrete
from adamflow.experiments.training import (
    digits_dataset,
    level_outputs,
    mlp,
    modular_addition_dataset,
    seed_keys,
    stack_training_specs,
    switched_off_gradients,
    train_many,
    transformer,
)
from adamflow.stability import update_bound

THETA0 = {"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([[0.3, -0.7], [1.2, 0.1]])}


def loss(theta):
    """A smooth non-quadratic loss of a PyTree (gradients of mixed sign and size)."""
    a, b = theta["a"], theta["b"]
    return jnp.sum(jnp.log(jnp.cosh(a - 0.3))) + jnp.sum((b @ b.T - jnp.eye(2)) ** 2) + a @ a[::-1]


def optax_run(tx, theta0, steps):
    """θ after each of ``steps`` steps of ``tx`` (params passed to update, as AdamW needs)."""
    grad_fn = jax.grad(loss)

    @jax.jit
    def step(carry, _):
        theta, state = carry
        updates, state = tx.update(grad_fn(theta), state, theta)
        theta = optax.apply_updates(theta, updates)
        return (theta, state), theta

    _, path = jax.lax.scan(step, (theta0, tx.init(theta0)), None, length=steps)
    return path


def assert_paths_close(path, reference, rtol=1e-12, atol=1e-13):
    for x, y in zip(jax.tree_util.tree_leaves(path), jax.tree_util.tree_leaves(reference)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- adapters


def test_adam_as_optax_equals_optax_adam():
    ours = optax_run(Adam(0.05, b1=0.8, b2=0.95, eps=1e-7).as_optax(), THETA0, 60)
    ref = optax_run(optax.adam(0.05, b1=0.8, b2=0.95, eps=1e-7), THETA0, 60)
    assert_paths_close(ours, ref)


def test_adamw_as_optax_equals_optax_adamw():
    ours = optax_run(AdamW(0.05, b1=0.9, b2=0.99, weight_decay=0.3).as_optax(), THETA0, 60)
    ref = optax_run(optax.adamw(0.05, b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.3), THETA0, 60)
    assert_paths_close(ours, ref)
    # The decay matters: without it the paths differ far beyond round-off.
    plain = optax_run(optax.adam(0.05, b1=0.9, b2=0.99), THETA0, 60)
    assert np.max(np.abs(np.asarray(plain["a"]) - np.asarray(ref["a"]))) > 1e-3


@pytest.mark.parametrize(
    "opt",
    [
        KAdam(0.03, k=2, b1=0.9, b2=0.99, weight_decay=0.1),
        KAdam(0.03, k=3, b1=(0.9, 0.8, 0.5), b2=(0.999, 0.9, 0.7), eps=1e-6),
    ],
)
def test_kadam_as_optax_equals_run_discrete(opt):
    ours = optax_run(opt.as_optax(), THETA0, 50)
    ref = run_discrete(opt, loss, THETA0, 50).theta
    assert_paths_close(ours, jax.tree_util.tree_map(lambda x: x[1:], ref))


def test_kadam_equals_a_chain_of_optax_adam_normalizers():
    """An independent reference: k-Adam is k of optax's own Adam normalizers in cascade,
    ``scale_by_adam(β₁_i, β₂_i, ε)`` for i = 1..k (ε outside the root, ``eps_root = 0``, as
    ours), then decoupled decay λθ and the step -η (theory/kadam.md §1)."""
    b1s, b2s, eps, lr, decay = (0.9, 0.7, 0.5), (0.999, 0.95, 0.8), 1e-6, 0.02, 0.1
    reference = optax.chain(
        *(optax.scale_by_adam(b1, b2, eps=eps, eps_root=0.0) for b1, b2 in zip(b1s, b2s)),
        optax.add_decayed_weights(decay),
        optax.scale(-lr),
    )
    opt = KAdam(lr, k=3, b1=b1s, b2=b2s, eps=eps, weight_decay=decay)
    ours = optax_run(opt.as_optax(), THETA0, 20)
    ref = optax_run(reference, THETA0, 20)
    assert_paths_close(ours, ref, rtol=1e-12, atol=0.0)
    # The levels' order matters: reversing them changes the path far beyond round-off.
    reversed_levels = KAdam(lr, k=3, b1=b1s[::-1], b2=b2s[::-1], eps=eps, weight_decay=decay)
    other = optax_run(reversed_levels.as_optax(), THETA0, 20)
    assert np.max(np.abs(np.asarray(other["a"]) - np.asarray(ref["a"]))) > 1e-4


def test_as_optax_under_jit_vmap_and_chain():
    opt = KAdam(0.02, k=2, b1=0.9, b2=0.99, weight_decay=0.05)
    tx = opt.as_optax()
    grad_fn = jax.grad(loss)
    # jit of a single update gives the same numbers as the eager call.
    state = tx.init(THETA0)
    eager, _ = tx.update(grad_fn(THETA0), state, THETA0)
    jitted, _ = jax.jit(tx.update)(grad_fn(THETA0), state, THETA0)
    assert_paths_close(jitted, eager)

    # vmap over a batch of starting points: each lane equals its own run_discrete.
    starts = jax.tree_util.tree_map(lambda x: jnp.stack([x, 0.5 * x, x[::-1] - 1.0]), THETA0)
    batched = jax.vmap(lambda t0: optax_run(tx, t0, 50))(starts)
    for lane in range(2):
        t0 = jax.tree_util.tree_map(lambda x: x[lane], starts)
        ref = run_discrete(opt, loss, t0, 50).theta
        assert_paths_close(
            jax.tree_util.tree_map(lambda x: x[lane], batched),
            jax.tree_util.tree_map(lambda x: x[1:], ref),
        )

    # Inside optax.chain after gradient clipping: equal to the cascade on clipped gradients.
    max_norm = 0.5

    def clipped_grad(theta):
        g = grad_fn(theta)
        norm = optax.tree.norm(g)
        return jax.tree_util.tree_map(lambda x: x * jnp.minimum(1.0, max_norm / norm), g)

    chained = optax_run(optax.chain(optax.clip_by_global_norm(max_norm), tx), THETA0, 40)
    ref = run_discrete(opt, None, THETA0, 40, grad=clipped_grad).theta
    assert_paths_close(chained, jax.tree_util.tree_map(lambda x: x[1:], ref))
    assert float(optax.tree.norm(grad_fn(THETA0))) > 2 * max_norm  # clipping is active


def test_as_optax_requires_params_with_weight_decay():
    tx = AdamW(0.1).as_optax()
    with pytest.raises(ValueError, match="params"):
        tx.update(THETA0, tx.init(THETA0))


# --------------------------------------------------------------------------- per-level bound


def test_bound_is_attained_by_the_worst_sequence():
    """The reference C(β₁, β₂) is the sharp worst case: the sequence g_{n-j} ∝ w_j/c_j drives
    |û_n| to sqrt(Σ_{j<n} w_j²/c_j)·sqrt(1-β₂ⁿ)/(1-β₁ⁿ) exactly (ε = 0), which tends to C."""
    b1, b2, n = 0.9, 0.99, 1500
    j = np.arange(n)[::-1]  # g_i for i = 1..n has j = n - i
    grads = ((1 - b1) / (1 - b2) * (b1 / b2) ** j)[:, None]
    u = level_outputs(KAdam(1.0, k=1, b1=b1, b2=b2, eps=0.0), grads)[0, -1, 0]
    expected = update_bound(b1, b2, n) * np.sqrt(1 - b2**n) / (1 - b1**n)
    assert u == pytest.approx(expected, rel=1e-10)
    assert u == pytest.approx(update_bound(b1, b2), rel=1e-6)


@pytest.mark.parametrize(
    "b2s",
    [(0.5, 0.999), (0.5, 0.5, 0.999), (0.6, 0.99)],
)
def test_stable_top_level_bounds_kadam_update(b2s):
    """theory/kadam.md §3: |u⁽ᵏ⁾| ≤ C(β₁_k, β₂_k) although level 1 (plain Adam with
    β₂_1 < β₁²) explodes on a gradient that switches off."""
    b1 = 0.9
    grads = switched_off_gradients(700, 200, 12, scale=1e-2, seed=3)
    opt = KAdam(1e-3, k=len(b2s), b1=b1, b2=b2s)
    outputs = level_outputs(opt, grads)
    bound = update_bound(b1, b2s[-1])
    assert np.isfinite(bound)
    assert np.all(np.isfinite(outputs))
    assert np.abs(outputs[-1]).max() <= bound * (1 + 1e-12)
    # Level 1 is plain Adam with (β₁, β₂_1), and it is unbounded: far above the top bound.
    plain = level_outputs(Adam(1e-3, b1=b1, b2=b2s[0]), grads)[0]
    np.testing.assert_array_equal(outputs[0], plain)
    assert np.abs(plain).max() > 100 * bound


def test_unstable_top_level_is_not_bounded():
    """The converse: with the unstable level on top, the output leaves C of the lower one."""
    b1 = 0.9
    grads = switched_off_gradients(700, 200, 12, scale=1e-2, seed=3)
    outputs = level_outputs(KAdam(1e-3, k=2, b1=b1, b2=(0.5, 0.5)), grads)
    assert np.abs(outputs[-1]).max() > 2 * update_bound(b1, 0.999)


def test_switched_off_gradients_shape_and_zeros():
    g = np.asarray(switched_off_gradients(50, 20, 4, scale=2.0, seed=1))
    assert g.shape == (50, 4)
    assert np.all(g[20:] == 0.0) and np.all(g[:20] != 0.0)
    with pytest.raises(ValueError, match="switch_off"):
        switched_off_gradients(50, 50, 4)


# --------------------------------------------------------------------------- training harness


def test_trainer_equals_optax_loop_and_vmaps_over_specs():
    """train_many (one flat vector, vmapped over a grid of specs) runs the same k-Adam as
    opt.as_optax() on the parameter PyTree."""
    data = digits_dataset(0)
    model = mlp(64, 8, 10)
    steps = 40
    opts = [KAdam(3e-3, k=2, weight_decay=1e-2), KAdam(1e-2, k=2, b1=0.8, weight_decay=0.0)]
    keys = seed_keys(0, 1)
    grid = train_many(
        model, data, stack_training_specs(opts), keys, k=2, steps=steps, eval_every=20
    )
    assert grid.test_accuracy.shape == (2, 1, 2)

    def data_loss(p):
        logits = model.apply(p, data.x_train)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, data.y_train))

    init_key, _ = jax.random.split(keys[0])
    # The trainer runs in float32; the reference loop in float64 (as_optax's state takes the
    # dtype of the spec's hyperparameters, float64 under x64, so float32 params would change
    # the scan carry's dtype).
    params0 = jax.tree_util.tree_map(lambda x: x.astype(jnp.float64), model.init(init_key))
    tx = opts[0].as_optax()

    @jax.jit
    def run(params):
        def step(carry, _):
            params, state = carry
            updates, state = tx.update(jax.grad(data_loss)(params), state, params)
            return (optax.apply_updates(params, updates), state), None

        return jax.lax.scan(step, (params, tx.init(params)), None, length=steps)[0][0]

    assert grid.train_loss[0, 0, -1] == pytest.approx(float(data_loss(run(params0))), rel=2e-4)
    # The second lane ran its own hyperparameters.
    assert abs(grid.train_loss[1, 0, -1] / grid.train_loss[0, 0, -1] - 1) > 1e-2
    # It learns: well above chance (0.1) after 40 full-batch steps.
    assert grid.test_accuracy[0, 0, -1] > 0.4


def test_transformer_and_modular_addition_shapes():
    data = modular_addition_dataset(7, 0.5, seed=0)
    assert data.x_train.shape == (24, 3) and data.x_test.shape == (25, 3)
    tokens = np.concatenate([np.asarray(data.x_train), np.asarray(data.x_test)])
    labels = np.concatenate([np.asarray(data.y_train), np.asarray(data.y_test)])
    np.testing.assert_array_equal(labels, (tokens[:, 0] + tokens[:, 1]) % 7)
    assert np.all(tokens[:, 2] == 7)  # the "=" token
    model = transformer(8, 7, 3, width=8, heads=2, normalize=True)
    logits = jax.jit(lambda key: model.apply(model.init(key), data.x_train[:5]))(
        jax.random.PRNGKey(0)
    )
    assert logits.shape == (5, 7) and bool(jnp.all(jnp.isfinite(logits)))
    with pytest.raises(ValueError, match="heads"):
        transformer(8, 7, 3, width=9, heads=2)
