"""Scale-invariant problems: weights followed by a normalization (theory/kadam.md §4).

Each problem's parameters are a dict of arrays, each a *group* with
``L(..., c·θ_g, ...) = L(..., θ_g, ...)`` for every ``c > 0``. Then ``θ_g · ∇_g L = 0`` and
``∇_g L(cθ) = ∇_g L(θ)/c``: only the direction of each group matters, and its norm is
set by the optimizer alone (the meta-adaptive effect measured in
`adamflow.experiments.meta`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import PyTree
from ..validation import check_int, check_positive
from .training import Dataset, accuracy, cross_entropy, digits_dataset, layer_norm


class ScaleInvariantProblem(NamedTuple):
    """A classifier whose loss is invariant to rescaling each parameter group,
    ``L(c θ_g) = L(θ_g)`` for c > 0 (theory/kadam.md §4).

    ``theta0`` is a dict of arrays; ``groups`` names its scale-invariant groups (here every
    key). ``logits(theta, x)``; ``loss(theta)`` is the cross-entropy on the whole training
    set, ``batch_loss(theta, x, y)`` on a batch; ``minibatch_grad(batch_size)`` returns
    ``grad(theta, key)`` on a random batch (``None``: the whole training set).
    """

    name: str
    theta0: dict[str, jnp.ndarray]
    groups: tuple[str, ...]
    logits: Callable[[PyTree, jnp.ndarray], jnp.ndarray]
    data: Dataset

    def batch_loss(self, theta: PyTree, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
        """Mean cross-entropy of ``logits(theta, x)`` against ``y``."""
        return cross_entropy(self.logits(theta, x), y)

    def loss(self, theta: PyTree) -> jnp.ndarray:
        """Cross-entropy on the whole training set (a scalar function of ``theta``)."""
        return self.batch_loss(theta, self.data.x_train, self.data.y_train)

    def test_accuracy(self, theta: PyTree) -> jnp.ndarray:
        """Accuracy on the test split."""
        return accuracy(self.logits(theta, self.data.x_test), self.data.y_test)

    def minibatch_grad(
        self, batch_size: int | None = None
    ) -> Callable[[PyTree, jax.Array], PyTree]:
        """``grad(theta, key)``: gradient of the loss on ``batch_size`` training examples
        drawn with replacement by ``key`` (the full training set when ``None``)."""
        x_all, y_all = self.data.x_train, self.data.y_train
        n = x_all.shape[0]
        if batch_size is not None and not 1 <= batch_size <= n:
            raise ValueError(f"batch_size must be in [1, {n}] or None, got {batch_size!r}")
        grad_fn = jax.grad(self.batch_loss)

        def grad(theta: PyTree, key: jax.Array) -> PyTree:
            if batch_size is None:
                return grad_fn(theta, x_all, y_all)
            idx = jax.random.randint(key, (batch_size,), 0, n)
            return grad_fn(theta, x_all[idx], y_all[idx])

        return grad


def _float_data(data: Dataset) -> Dataset:
    dtype = jnp.result_type(float)  # float64 when x64 is enabled
    return data._replace(x_train=data.x_train.astype(dtype), x_test=data.x_test.astype(dtype))


def normalized_linear_classifier(
    seed: int = 0, *, temperature: float = 8.0
) -> ScaleInvariantProblem:
    r"""Weight-normalized linear softmax classifier on scikit-learn digits.

    ``logits = s · X W / |W|_F`` with the fixed temperature ``s``; one group ``W`` (64×10),
    :math:`L(cW) = L(W)` (theory/kadam.md §4). ``seed`` draws the train/test split and
    ``W_0`` (entries ``N(0, 1/64)``).
    """
    temperature = check_positive("temperature", temperature)
    data = _float_data(digits_dataset(seed))
    n_in = data.x_train.shape[1]
    dtype = data.x_train.dtype
    w0 = jax.random.normal(jax.random.PRNGKey(seed), (n_in, data.n_classes), dtype) / n_in**0.5

    def logits(theta: PyTree, x: jnp.ndarray) -> jnp.ndarray:
        w = theta["W"]
        return temperature * (x @ w) / jnp.sqrt(jnp.sum(w * w))

    return ScaleInvariantProblem("normalized linear (digits)", {"W": w0}, ("W",), logits, data)


def normalized_mlp(
    seed: int = 0, *, hidden: int = 32, temperature: float = 8.0
) -> ScaleInvariantProblem:
    r"""Two-layer MLP with a normalization layer, on scikit-learn digits.

    ``h = relu(LN(X W1))`` with `layer_norm` at ``eps = 0`` (exactly invariant to
    ``W1 -> c W1``) and ``logits = s · h W2 / |W2|_F``: two groups, ``W1`` (64×hidden)
    and ``W2`` (hidden×10), each with :math:`L(cW_i) = L(W_i)` (theory/kadam.md §4); initial
    entries ``N(0, 1/fan_in)``.
    """
    temperature = check_positive("temperature", temperature)
    hidden = check_int("hidden", hidden, 2)
    data = _float_data(digits_dataset(seed))
    n_in = data.x_train.shape[1]
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    dtype = data.x_train.dtype
    theta0 = {
        "W1": jax.random.normal(k1, (n_in, hidden), dtype) / n_in**0.5,
        "W2": jax.random.normal(k2, (hidden, data.n_classes), dtype) / hidden**0.5,
    }

    def logits(theta: PyTree, x: jnp.ndarray) -> jnp.ndarray:
        h = jax.nn.relu(layer_norm(x @ theta["W1"], 0.0))
        w2 = theta["W2"]
        return temperature * (h @ w2) / jnp.sqrt(jnp.sum(w2 * w2))

    return ScaleInvariantProblem("normalized MLP (digits)", theta0, ("W1", "W2"), logits, data)
