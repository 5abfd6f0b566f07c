"""The discrete reference: equal to optax, KAdam(1) equal to Adam, saving and divergence."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamflow as af


def mlp_loss(params):
    x = jnp.linspace(-1.0, 1.0, 8)[:, None]
    hidden = jnp.tanh(x @ params["w1"] + params["b1"])
    pred = hidden @ params["w2"]
    return jnp.mean((pred[:, 0] - jnp.sin(3 * x[:, 0])) ** 2)


def init_params():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    return {
        "w1": jax.random.normal(k1, (1, 5)),
        "b1": 0.3 * jax.random.normal(k3, (5,)),
        "w2": jax.random.normal(k2, (5, 1)) * 0.5,
    }


def optax_run(tx, params, steps):
    state = tx.init(params)
    for _ in range(steps):
        grads = jax.grad(mlp_loss)(params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


@pytest.mark.parametrize(
    "opt, tx",
    [
        (af.Adam(1e-2, b1=0.8, b2=0.95), optax.adam(1e-2, b1=0.8, b2=0.95)),
        (
            af.AdamW(1e-2, b1=0.9, b2=0.99, weight_decay=0.1),
            optax.adamw(1e-2, b1=0.9, b2=0.99, weight_decay=0.1),
        ),
    ],
)
def test_discrete_equals_optax_on_pytree(opt, tx):
    params = init_params()
    traj = af.run_discrete(opt, mlp_loss, params, 40)
    expected = optax_run(tx, params, 40)
    got = traj.final
    for key in params:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-12, atol=1e-13)
    assert traj.success and traj.theta["w1"].shape == (41, 1, 5)


def test_kadam_one_level_equals_adam_exactly():
    params = init_params()
    a = af.run_discrete(af.Adam(1e-2), mlp_loss, params, 25)
    k = af.run_discrete(af.KAdam(1e-2, k=1, weight_decay=0.0), mlp_loss, params, 25)
    for key in params:
        assert np.array_equal(a.theta[key], k.theta[key])


def test_second_level_changes_the_path():
    params = init_params()
    a = af.run_discrete(af.Adam(1e-2), mlp_loss, params, 25)
    k2 = af.run_discrete(af.KAdam(1e-2, k=2), mlp_loss, params, 25)
    assert not np.allclose(a.theta["w1"][-1], k2.theta["w1"][-1])
    assert len(k2.m) == 2 and len(k2.v) == 2


def test_save_every_keeps_the_last_step():
    theta0 = jnp.array([1.0, -2.0])
    traj = af.run_discrete(af.Adam(0.1), lambda p: jnp.sum(p**2), theta0, 10, save_every=4)
    assert list(traj.steps) == [0, 4, 8, 10]
    full = af.run_discrete(af.Adam(0.1), lambda p: jnp.sum(p**2), theta0, 10)
    np.testing.assert_array_equal(traj.theta[-1], full.theta[-1])
    np.testing.assert_array_equal(traj.theta[1], full.theta[4])
    np.testing.assert_allclose(traj.ts, traj.steps * 0.1)


def test_first_update_is_sign_of_gradient():
    # m̂_1 = g, v̂_1 = g²: the first Adam step moves each coordinate by lr·g/(|g|+eps).
    theta0 = jnp.array([3.0, -0.5])
    traj = af.run_discrete(af.Adam(0.1, eps=0.0), lambda p: jnp.sum(p**2), theta0, 1)
    np.testing.assert_allclose(traj.theta[1], theta0 - 0.1 * jnp.sign(theta0), rtol=1e-14)


def test_divergence_is_reported_not_hidden():
    def blowup_grad(p):
        return jnp.exp(jnp.exp(jnp.exp(p * 50.0)))

    traj = af.run_discrete(af.Adam(0.1), None, jnp.array([1.0]), 5, grad=blowup_grad)
    assert not traj.success and "non-finite" in traj.message


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_bad_steps(steps):
    with pytest.raises(ValueError, match="steps"):
        af.run_discrete(af.Adam(0.1), lambda p: jnp.sum(p**2), jnp.ones(2), steps)


def test_needs_loss_or_grad():
    with pytest.raises(TypeError, match="loss"):
        af.run_discrete(af.Adam(0.1), None, jnp.ones(2), 3)


def test_as_optax_keeps_float32_state_under_x64():
    params = {"w": jnp.ones(3, jnp.float32)}
    tx = af.KAdam(1e-2, k=2, weight_decay=0.1).as_optax()
    state = tx.init(params)
    updates, new_state = tx.update(params, state, params)
    assert updates["w"].dtype == jnp.float32
    for old, new in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(new_state)):
        assert old.dtype == new.dtype
