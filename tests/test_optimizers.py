"""Spec construction and validation: every bad input is named in its error."""

import math

import numpy as np
import pytest

import adamflow as af

BAD_INPUTS = [
    (lambda: af.Adam(0.0), "lr"),
    (lambda: af.Adam(-1e-3), "lr"),
    (lambda: af.Adam(math.inf), "lr"),
    (lambda: af.Adam(math.nan), "lr"),
    (lambda: af.Adam("0.1"), "lr"),  # type: ignore[arg-type]
    (lambda: af.Adam(1e-3, beta=1.0), "beta"),
    (lambda: af.Adam(1e-3, beta=-0.1), "beta"),
    (lambda: af.Adam(1e-3, beta=True), "beta"),  # type: ignore[arg-type]
    (lambda: af.Adam(1e-3, gamma=1.5), "gamma"),
    (lambda: af.Adam(1e-3, gamma=math.nan), "gamma"),
    (lambda: af.Adam(1e-3, eps=-1e-8), "eps"),
    (lambda: af.Adam(1e-3, eps=math.inf), "eps"),
    (lambda: af.AdamW(1e-3, weight_decay=-0.1), "weight_decay"),
    (lambda: af.KAdam(1e-3, k=0), "k"),
    (lambda: af.KAdam(1e-3, k=2.5), "k"),  # type: ignore[arg-type]
    (lambda: af.KAdam(1e-3, k=True), "k"),  # type: ignore[arg-type]
    (lambda: af.KAdam(1e-3, k=2, beta=(0.9, 0.9, 0.9)), "beta"),
    (lambda: af.KAdam(1e-3, k=2, gamma=(0.99,)), "gamma"),
    (lambda: af.KAdam(1e-3, k=2, beta=(0.9, 1.2)), "beta[1]"),
    (lambda: af.KAdam(1e-3, k=3, gamma=np.array([0.9, 0.99])), "gamma"),
]


@pytest.mark.parametrize("make, name", BAD_INPUTS)
def test_bad_input_names_the_parameter(make, name):
    with pytest.raises((ValueError, TypeError)) as info:
        make()
    message = str(info.value)
    assert message.startswith(name), message
    assert any(word in message for word in ("[0, 1)", "> 0", ">= 0", ">= 1", "length")), message


def test_adam_is_a_one_level_cascade():
    adam = af.Adam(1e-3, beta=0.8, gamma=0.99, eps=1e-7)
    assert isinstance(adam, af.KAdam)
    assert adam == af.KAdam(1e-3, k=1, beta=0.8, gamma=0.99, eps=1e-7)
    assert adam.betas == (0.8,) and adam.gammas == (0.99,)
    assert repr(adam).startswith("Adam(")
    assert af.AdamW(1e-3).weight_decay == 1e-2


def test_per_level_hyperparameters_and_frozen():
    opt = af.KAdam(1e-2, k=3, beta=(0.9, 0.8, 0.7), gamma=0.99)
    assert opt.betas == (0.9, 0.8, 0.7) and opt.gammas == (0.99,) * 3
    hyper = opt.hyper()
    assert hyper.betas.shape == (3,) and float(hyper.lr) == 1e-2
    with pytest.raises(AttributeError):
        opt.lr = 1.0  # type: ignore[misc]
    assert opt.replace(lr=0.5).lr == 0.5
    with pytest.raises(ValueError, match="lr"):
        opt.replace(lr=-1.0)
