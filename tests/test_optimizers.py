"""Spec construction and validation: every bad input is named in its error."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamflow as af

BAD_INPUTS = [
    (lambda: af.Adam(0.0), "lr"),
    (lambda: af.Adam(-1e-3), "lr"),
    (lambda: af.Adam(math.inf), "lr"),
    (lambda: af.Adam(math.nan), "lr"),
    (lambda: af.Adam("0.1"), "lr"),  # type: ignore[arg-type]
    (lambda: af.Adam(1e-3, b1=1.0), "b1"),
    (lambda: af.Adam(1e-3, b1=-0.1), "b1"),
    (lambda: af.Adam(1e-3, b1=True), "b1"),  # type: ignore[arg-type]
    (lambda: af.Adam(1e-3, b2=1.5), "b2"),
    (lambda: af.Adam(1e-3, b2=math.nan), "b2"),
    (lambda: af.Adam(1e-3, eps=-1e-8), "eps"),
    (lambda: af.Adam(1e-3, eps=math.inf), "eps"),
    (lambda: af.AdamW(1e-3, weight_decay=-0.1), "weight_decay"),
    (lambda: af.KAdam(1e-3, k=0), "k"),
    (lambda: af.KAdam(1e-3, k=2.5), "k"),  # type: ignore[arg-type]
    (lambda: af.KAdam(1e-3, k=True), "k"),  # type: ignore[arg-type]
    (lambda: af.KAdam(1e-3, k=2, b1=(0.9, 0.9, 0.9)), "b1"),
    (lambda: af.KAdam(1e-3, k=2, b2=(0.99,)), "b2"),
    (lambda: af.KAdam(1e-3, k=2, b1=(0.9, 1.2)), "b1[1]"),
    (lambda: af.KAdam(1e-3, k=3, b2=np.array([0.9, 0.99])), "b2"),
]


@pytest.mark.parametrize("make, name", BAD_INPUTS)
def test_bad_input_names_the_parameter(make, name):
    with pytest.raises((ValueError, TypeError)) as info:
        make()
    message = str(info.value)
    assert message.startswith(name), message
    assert any(word in message for word in ("[0, 1)", "> 0", ">= 0", ">= 1", "length")), message


def test_adam_is_a_one_level_cascade():
    adam = af.Adam(1e-3, b1=0.8, b2=0.99, eps=1e-7)
    assert isinstance(adam, af.KAdam)
    assert adam == af.KAdam(1e-3, k=1, b1=0.8, b2=0.99, eps=1e-7)
    assert adam.b1s == (0.8,) and adam.b2s == (0.99,)
    assert repr(adam).startswith("Adam(")
    assert af.AdamW(1e-3).weight_decay == 1e-4  # optax.adamw's default


def test_per_level_hyperparameters_and_frozen():
    opt = af.KAdam(1e-2, k=3, b1=(0.9, 0.8, 0.7), b2=0.99)
    assert opt.b1s == (0.9, 0.8, 0.7) and opt.b2s == (0.99,) * 3
    leaves, treedef = jax.tree_util.tree_flatten(opt)
    assert len(leaves) == 1 + 3 + 3 + 2 and leaves[:4] == [1e-2, 0.9, 0.8, 0.7]
    assert jax.tree_util.tree_unflatten(treedef, leaves) == opt
    with pytest.raises(AttributeError):
        opt.lr = 1.0  # type: ignore[misc]
    assert opt.replace(lr=0.5).lr == 0.5
    with pytest.raises(ValueError, match="lr"):
        opt.replace(lr=-1.0)


def test_paper_letters_are_not_keywords():
    # The paper's (β, γ) are very likely the other way round from β₁, β₂: refuse both.
    for make in (af.Adam, af.AdamW, af.KAdam):
        with pytest.raises(TypeError):
            make(1e-3, beta=0.9)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            make(1e-3, gamma=0.999)  # type: ignore[call-arg]


def test_stacked_specs_vmap_like_one_spec_per_cell():
    specs = [af.Adam(1e-2, b1, b2) for b1, b2 in [(0.9, 0.99), (0.5, 0.1), (0.0, 0.3)]]
    stacked = af.stack_specs(specs)
    assert stacked.b1s[0].shape == (3,)
    grad = jnp.array([0.3, -2.0])

    def first_update(spec):
        return af.cascade_step(spec, af.init_state(1, grad), grad)[1]

    batched = jax.vmap(first_update)(stacked)
    for row, spec in zip(batched, specs, strict=True):
        np.testing.assert_array_equal(row, first_update(spec))
    with pytest.raises(ValueError, match="b2"):
        af.stack_specs([af.Adam(1e-2), af.Adam(1e-2, b2=1.0)])
    with pytest.raises(ValueError, match="share k"):
        af.stack_specs([af.Adam(1e-2), af.KAdam(1e-2, k=2)])
    with pytest.raises(ValueError, match="one lr schedule"):
        af.stack_specs([af.Adam(1e-2), af.Adam(optax.constant_schedule(1e-2))])


def test_adam_and_adamw_specs_stack_together():
    # Adam(lr) == AdamW(lr, weight_decay=0): a grid over weight decay may start at Adam.
    specs = [af.Adam(1e-2), af.AdamW(1e-2, weight_decay=0.1), af.KAdam(1e-2, k=1, weight_decay=0.2)]
    grad, theta = jnp.array([0.3, -2.0]), jnp.array([1.0, 1.0])

    def one_step(spec):
        _, u = af.cascade_step(spec, af.init_state(1, grad), grad)
        return af.parameter_step(spec, theta, u)

    for group, name in ((specs[:2], "AdamW"), (specs, "KAdam")):
        stacked = af.stack_specs(group)
        assert stacked.name == name
        batched = jax.vmap(one_step)(stacked)
        for row, spec in zip(batched, group, strict=True):
            np.testing.assert_array_equal(row, one_step(spec))
