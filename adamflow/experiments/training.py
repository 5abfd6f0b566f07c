"""Small, reproducible training experiments with the k-Adam cascade (theory/kadam.md).

Everything here is CPU-sized: an MLP on scikit-learn's digits and a one-layer transformer
on modular addition, each with or without a normalization layer. A training run is a pure
function of the spec `adamflow.KAdam` (a JAX pytree) and a PRNG key, so whole grids of
optimizers and seeds run as one ``jax.vmap``:

    θ_n = θ_{n-1} - η (u⁽ᵏ⁾_n + λ θ_{n-1}),   u⁽ᵏ⁾_n = cascade_step(spec, state, ∇L_B(θ_{n-1}))

with ``L_B`` the cross-entropy on a random minibatch ``B`` (or the whole training set).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from .. import KAdam, PyTree, cascade_step, init_state, parameter_step, stack_specs
from ..problems import load_digits

tree_map = jax.tree_util.tree_map

#: Training runs use float32 (fast on CPU) whatever ``jax_enable_x64`` says.
DTYPE = jnp.float32


class Dataset(NamedTuple):
    """A classification data set split into train and test parts."""

    x_train: jnp.ndarray
    y_train: jnp.ndarray
    x_test: jnp.ndarray
    y_test: jnp.ndarray
    n_classes: int


class Model(NamedTuple):
    """``init(key) -> params`` and ``apply(params, x) -> logits`` (shape ``(batch, classes)``)."""

    init: Callable[[jax.Array], PyTree]
    apply: Callable[[PyTree, jnp.ndarray], jnp.ndarray]


class TrainResult(NamedTuple):
    """Curves of one (or, vmapped, many) training runs, recorded every ``eval_every`` steps.

    ``steps`` has shape ``(E,)``; the other fields have shape ``(..., E)`` (leading axes from
    vmap). Accuracies count a non-finite output as wrong.
    """

    steps: np.ndarray
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    test_accuracy: np.ndarray


# --------------------------------------------------------------------------- data sets


def _check_fraction(name: str, value: float) -> float:
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return float(value)


def digits_dataset(seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """scikit-learn's 8×8 digits (1797 images, 10 classes; `adamflow.problems.load_digits`),
    split at random by ``seed``.

    Pixels (0..16) are standardized with the training split's mean and standard deviation
    (constant pixels are left at 0).
    """
    test_fraction = _check_fraction("test_fraction", test_fraction)
    x, y = load_digits()
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    x = (x - mean) / std
    return Dataset(
        jnp.asarray(x[train], DTYPE),
        jnp.asarray(y[train], jnp.int32),
        jnp.asarray(x[test], DTYPE),
        jnp.asarray(y[test], jnp.int32),
        10,
    )


def modular_addition_dataset(
    modulus: int = 23, train_fraction: float = 0.5, seed: int = 0
) -> Dataset:
    """All pairs ``(a, b)`` with ``0 <= a, b < p`` as token sequences ``[a, b, p]`` (``p`` is
    the "=" token); the label is ``(a + b) mod p``. A random ``train_fraction`` of the
    ``p²`` pairs is the training set, the rest the test set."""
    if isinstance(modulus, bool) or not isinstance(modulus, int) or modulus < 2:
        raise ValueError(f"modulus must be an integer >= 2, got {modulus!r}")
    train_fraction = _check_fraction("train_fraction", train_fraction)
    a, b = np.meshgrid(np.arange(modulus), np.arange(modulus), indexing="ij")
    a, b = a.ravel(), b.ravel()
    tokens = np.stack([a, b, np.full_like(a, modulus)], axis=1)
    labels = (a + b) % modulus
    order = np.random.default_rng(seed).permutation(len(labels))
    n_train = int(round(train_fraction * len(labels)))
    train, test = order[:n_train], order[n_train:]
    return Dataset(
        jnp.asarray(tokens[train], jnp.int32),
        jnp.asarray(labels[train], jnp.int32),
        jnp.asarray(tokens[test], jnp.int32),
        jnp.asarray(labels[test], jnp.int32),
        modulus,
    )


# --------------------------------------------------------------------------- models


def layer_norm(z: jnp.ndarray, eps: float = 0.0) -> jnp.ndarray:
    r"""Layer normalization without affine parameters over the last axis:
    :math:`(z - \bar z)/\sqrt{\mathrm{var}(z) + \epsilon}`.

    With ``eps = 0`` it is exactly invariant to ``z -> c z`` for ``c > 0``, which makes the
    weights feeding it scale-invariant (theory/kadam.md §4).
    """
    centred = z - jnp.mean(z, axis=-1, keepdims=True)
    return centred / jnp.sqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + eps)


def _dense_init(key: jax.Array, fan_in: int, fan_out: int) -> jnp.ndarray:
    return jax.random.normal(key, (fan_in, fan_out), DTYPE) / math.sqrt(fan_in)


def mlp(n_in: int, n_hidden: int, n_out: int, *, depth: int = 2, normalize: bool = False) -> Model:
    """A ReLU MLP with ``depth - 1`` hidden layers of width ``n_hidden``.

    Hidden layer: ``h = relu(LN(h W + b))`` with ``normalize`` (LN of `layer_norm`, with a
    small ``1e-5`` inside the root), else ``relu(h W + b)``; output ``h W_out + b_out``.
    """
    if depth < 2:
        raise ValueError(f"depth must be >= 2 (at least one hidden layer), got {depth!r}")
    sizes = [n_in] + [n_hidden] * (depth - 1) + [n_out]

    def init(key: jax.Array) -> PyTree:
        keys = jax.random.split(key, len(sizes) - 1)
        return [
            {"w": _dense_init(k, fan_in, fan_out), "b": jnp.zeros(fan_out, DTYPE)}
            for k, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:])
        ]

    def apply(params: PyTree, x: jnp.ndarray) -> jnp.ndarray:
        h = x
        for layer in params[:-1]:
            z = h @ layer["w"] + layer["b"]
            h = jax.nn.relu(layer_norm(z, 1e-5) if normalize else z)
        return h @ params[-1]["w"] + params[-1]["b"]

    return Model(init, apply)


def transformer(
    vocab: int,
    n_classes: int,
    seq_len: int,
    *,
    width: int = 32,
    heads: int = 2,
    normalize: bool = False,
) -> Model:
    """A one-layer transformer (attention + MLP, residual) read out at the last token.

    ``x = E[tokens] + P``; ``z = x_last + Attn(N(x))_last``; ``z += W2 relu(W1 N(z) + b1)``;
    logits ``= N(z) W_out`` (the last token's query attends to every position), where ``N``
    is `layer_norm` (``eps = 1e-5``) when ``normalize``
    (pre-LN) and the identity otherwise.
    """
    if width % heads:
        raise ValueError(f"width must be a multiple of heads, got width={width}, heads={heads}")
    head_dim = width // heads

    def init(key: jax.Array) -> PyTree:
        k = jax.random.split(key, 8)
        return {
            "embed": jax.random.normal(k[0], (vocab, width), DTYPE) / math.sqrt(width),
            "pos": jax.random.normal(k[1], (seq_len, width), DTYPE) / math.sqrt(width),
            "qkv": _dense_init(k[2], width, 3 * width),
            "proj": _dense_init(k[3], width, width),
            "w1": _dense_init(k[4], width, 4 * width),
            "b1": jnp.zeros(4 * width, DTYPE),
            "w2": _dense_init(k[5], 4 * width, width),
            "out": _dense_init(k[6], width, n_classes),
        }

    def norm(x: jnp.ndarray) -> jnp.ndarray:
        return layer_norm(x, 1e-5) if normalize else x

    def apply(params: PyTree, tokens: jnp.ndarray) -> jnp.ndarray:
        # One-hot matmul instead of a gather: its gradient is a matmul, not a scatter.
        one_hot = jax.nn.one_hot(tokens, vocab, dtype=params["embed"].dtype)
        x = one_hot @ params["embed"] + params["pos"]  # (B, T, width)
        batch, length, _ = x.shape
        # With one layer read out at the last token, only that token's query matters (it
        # attends to every position, so no causal mask is needed).
        w_q, w_k, w_v = jnp.split(params["qkv"], 3, axis=-1)
        h = norm(x)
        q = (h[:, -1] @ w_q).reshape(batch, heads, head_dim)
        k = (h @ w_k).reshape(batch, length, heads, head_dim)
        v = (h @ w_v).reshape(batch, length, heads, head_dim)
        attn = jax.nn.softmax(jnp.einsum("bhd,bthd->bht", q, k) / math.sqrt(head_dim), axis=-1)
        mixed = jnp.einsum("bht,bthd->bhd", attn, v).reshape(batch, width)
        z = x[:, -1] + mixed @ params["proj"]
        z = z + jax.nn.relu(norm(z) @ params["w1"] + params["b1"]) @ params["w2"]
        return norm(z) @ params["out"]

    return Model(init, apply)


# --------------------------------------------------------------------------- training


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    r"""Mean softmax cross-entropy :math:`-\frac1B\sum_b \log \mathrm{softmax}(z_b)_{y_b}`."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def accuracy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """Fraction of rows whose arg-max equals the label; a row with a non-finite logit is
    counted as wrong."""
    finite = jnp.all(jnp.isfinite(logits), axis=-1)
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels) & finite)


def training_spec(opt: KAdam) -> KAdam:
    """``opt`` with its numbers as arrays of the training dtype (float32)."""
    return tree_map(lambda a: jnp.asarray(a, DTYPE), opt)


def make_trainer(
    model: Model,
    data: Dataset,
    *,
    k: int,
    steps: int,
    batch_size: int | None = None,
    eval_every: int = 50,
) -> Callable[[KAdam, jax.Array], tuple[jnp.ndarray, ...]]:
    """A jitted ``train(spec, key) -> (train_loss, train_acc, test_acc)`` (each ``(E,)``).

    ``key`` draws the initial parameters and the minibatches (indices with replacement;
    ``batch_size=None`` is full batch). The run is the k-level cascade of theory/kadam.md §1
    with decoupled decay on every parameter. Evaluations happen at steps
    ``eval_every, 2·eval_every, …, steps`` (``steps`` must be a multiple of ``eval_every``).
    vmap the returned function over ``spec`` and/or ``key`` for grids and seeds; read
    `TrainResult` with `evaluation_steps`.
    """
    if steps < 1 or eval_every < 1 or steps % eval_every:
        raise ValueError(
            f"steps must be a positive multiple of eval_every, got steps={steps}, "
            f"eval_every={eval_every}"
        )
    n_train = data.x_train.shape[0]
    if batch_size is not None and not 1 <= batch_size <= n_train:
        raise ValueError(f"batch_size must be in [1, {n_train}] or None, got {batch_size!r}")

    run = _training_run(
        model, n_train, k=k, steps=steps, batch_size=batch_size, eval_every=eval_every
    )
    arrays = _data_arrays(data)
    jitted = jax.jit(run)

    def train(spec: KAdam, key: jax.Array) -> tuple[jnp.ndarray, ...]:
        return jitted(spec, key, arrays)

    return train


def _data_arrays(data: Dataset) -> tuple[jnp.ndarray, ...]:
    """``(x_train, y_train, x_train ++ x_test, y_test)``, passed to jitted code as arguments
    (closed-over arrays would be baked into the program as constants: slow to compile)."""
    x_eval = jnp.concatenate([data.x_train, data.x_test])
    return data.x_train, data.y_train, x_eval, data.y_test


def _training_run(
    model: Model, n_train: int, *, k: int, steps: int, batch_size: int | None, eval_every: int
) -> Callable[..., tuple[jnp.ndarray, ...]]:
    """The pure function ``run(spec, key, data_arrays) -> (loss, train_acc, test_acc)``."""
    # The optimizer acts elementwise, so it runs on one flat parameter vector: far fewer
    # ops to compile than one cascade per parameter array, and the same numbers.
    _, unravel = ravel_pytree(model.init(jax.random.PRNGKey(0)))

    def loss_fn(flat: jnp.ndarray, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
        return cross_entropy(model.apply(unravel(flat), x), y)

    grad_fn = jax.grad(loss_fn)

    def run(spec: KAdam, key: jax.Array, arrays: tuple[jnp.ndarray, ...]) -> Any:
        x_train, y_train, x_eval, y_test = arrays

        def evaluate(flat: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
            # One forward pass over train and test examples together (one graph to compile).
            all_logits = model.apply(unravel(flat), x_eval)
            logits, test_logits = all_logits[:n_train], all_logits[n_train:]
            return (
                cross_entropy(logits, y_train),
                accuracy(logits, y_train),
                accuracy(test_logits, y_test),
            )

        init_key, batch_key = jax.random.split(key)
        params, _ = ravel_pytree(model.init(init_key))
        state = init_state(k, params)
        n_blocks = steps // eval_every
        # All minibatch indices drawn up front: no random-number code inside the loop.
        if batch_size is None:
            batches = jnp.zeros((n_blocks, eval_every, 0), jnp.int32)
        else:
            shape = (n_blocks, eval_every, batch_size)
            batches = jax.random.randint(batch_key, shape, 0, n_train)

        def one_step(carry: Any, idx: jnp.ndarray) -> Any:
            params, state = carry
            x, y = (x_train, y_train) if batch_size is None else (x_train[idx], y_train[idx])
            state, u = cascade_step(spec, state, grad_fn(params, x, y))
            return (parameter_step(spec, params, u), state), None

        def one_block(carry: Any, block: jnp.ndarray) -> Any:
            carry, _ = jax.lax.scan(one_step, carry, block)
            return carry, evaluate(carry[0])

        _, curves = jax.lax.scan(one_block, (params, state), batches)
        return curves

    return run


def evaluation_steps(steps: int, eval_every: int) -> np.ndarray:
    """The steps at which `make_trainer`'s runs are evaluated."""
    return np.arange(eval_every, steps + 1, eval_every)


def train_many(
    model: Model,
    data: Dataset,
    specs: KAdam,
    keys: jax.Array,
    *,
    k: int,
    steps: int,
    batch_size: int | None = None,
    eval_every: int = 50,
    vectorize: bool = True,
) -> TrainResult:
    """Train every (spec, key) pair with the k-level cascade of theory/kadam.md §1:
    ``specs`` has a leading config axis ``C`` (see `stack_training_specs`), ``keys`` a seed
    axis ``S``; results have shape ``(C, S, E)``.

    ``vectorize=True`` runs all pairs as one vmapped program (fast for large grids of small
    models); ``False`` compiles one run and loops over the pairs (the vmapped program takes
    about twice as long to compile, which dominates for a handful of runs).
    """
    make_trainer(model, data, k=k, steps=steps, batch_size=batch_size, eval_every=eval_every)
    run = _training_run(
        model,
        data.x_train.shape[0],
        k=k,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
    )
    arrays = _data_arrays(data)
    if vectorize:
        over_seeds = jax.vmap(run, in_axes=(None, 0, None))
        over_both = jax.jit(jax.vmap(over_seeds, in_axes=(0, None, None)))
        curves = [np.asarray(c) for c in over_both(specs, keys, arrays)]
    else:
        jitted = jax.jit(run)
        n_configs = jax.tree_util.tree_leaves(specs)[0].shape[0]
        runs = [
            [jitted(tree_map(lambda h: h[c], specs), key, arrays) for key in keys]
            for c in range(n_configs)
        ]
        curves = [np.asarray([[np.asarray(r[i]) for r in row] for row in runs]) for i in range(3)]
    loss, train_acc, test_acc = curves
    return TrainResult(evaluation_steps(steps, eval_every), loss, train_acc, test_acc)


def stack_training_specs(opts: list[KAdam]) -> KAdam:
    """`stack_specs` in the training dtype (float32): one spec with a leading config axis."""
    return training_spec(stack_specs(opts))


def seed_keys(seed: int, n_seeds: int) -> jax.Array:
    """``n_seeds`` independent PRNG keys derived from ``seed``."""
    if n_seeds < 1:
        raise ValueError(f"n_seeds must be >= 1, got {n_seeds!r}")
    return jax.random.split(jax.random.PRNGKey(seed), n_seeds)


# --------------------------------------------------------------------------- stability


def switched_off_gradients(
    steps: int, switch_off: int, dims: int, *, scale: float = 1.0, seed: int = 0
) -> jnp.ndarray:
    """A gradient sequence of shape ``(steps, dims)``: i.i.d. ``scale·N(0, 1)`` entries for
    steps ``n <= switch_off`` and exact zeros afterwards: a feature that stops appearing, the
    worst practical case of theory/stability.md §2 (the update grows by β₁/√β₂ per step)."""
    if not 1 <= switch_off < steps:
        raise ValueError(f"switch_off must be in [1, steps), got {switch_off!r} (steps={steps})")
    noise = scale * jax.random.normal(jax.random.PRNGKey(seed), (steps, dims))
    on = (jnp.arange(1, steps + 1) <= switch_off)[:, None]
    return jnp.where(on, noise, 0.0)


def level_outputs(opt: KAdam, grads: ArrayLike) -> np.ndarray:
    """Every level's output ``u⁽ⁱ⁾_n`` of the cascade driven by the sequence ``grads``.

    ``grads`` has a leading step axis (``g_1, g_2, …``); the result has shape
    ``(k, steps, *grads.shape[1:])``. Level ``i`` depends only on levels below it, so
    ``u⁽ⁱ⁾`` is the output of the ``i``-level cascade with the first ``i`` of the
    spec's (β₁, β₂); level 1 is plain Adam with ``(β₁_1, β₂_1)``. A stable top level bounds
    ``u⁽ᵏ⁾`` whatever the lower levels do (theory/kadam.md §3).
    """
    grads = jnp.asarray(grads)
    outputs = []
    for i in range(1, opt.k + 1):
        lower = opt.replace(k=i, b1=opt.b1s[:i], b2=opt.b2s[:i])
        outputs.append(_drive_cascade(i, lower, grads))
    return np.stack([np.asarray(u) for u in outputs])


@jax.jit(static_argnums=0)
def _drive_cascade(k: int, spec: KAdam, grads: jnp.ndarray) -> jnp.ndarray:
    def one_step(state: Any, grad: jnp.ndarray) -> Any:
        return cascade_step(spec, state, grad)

    return jax.lax.scan(one_step, init_state(k, grads[0]), grads)[1]


# --------------------------------------------------------------------------- experiments


class Task(NamedTuple):
    """A training task: its data and a model with or without a normalization layer."""

    name: str
    data: Dataset
    model: Callable[[bool], Model]  # normalize -> model
    batch_size: int | None


def digits_mlp_task(seed: int = 0, *, hidden: int = 64) -> Task:
    """ReLU MLP 64-``hidden``-10 on scikit-learn digits, minibatches of 64."""
    data = digits_dataset(seed)
    return Task(
        "MLP on digits",
        data,
        lambda normalize: mlp(data.x_train.shape[1], hidden, data.n_classes, normalize=normalize),
        64,
    )


def modular_addition_task(
    seed: int = 0, *, modulus: int = 17, train_fraction: float = 0.8, width: int = 32
) -> Task:
    """One-layer transformer (width ``width``, 2 heads) on ``(a + b) mod p``, full batch."""
    data = modular_addition_dataset(modulus, train_fraction, seed)
    return Task(
        f"transformer on (a+b) mod {modulus}",
        data,
        lambda normalize: transformer(
            modulus + 1, modulus, 3, width=width, heads=2, normalize=normalize
        ),
        None,
    )


class KAdamComparison(NamedTuple):
    """Curves of k-Adam runs on one task: arrays of shape ``(len(ks), len(normalize),
    len(lrs), n_seeds, E)`` evaluated at ``steps`` (shape ``(E,)``)."""

    task: str
    ks: tuple[int, ...]
    normalize: tuple[bool, ...]
    lrs: tuple[float, ...]
    steps: np.ndarray
    train_loss: np.ndarray
    test_accuracy: np.ndarray


def compare_kadam(
    task: Task,
    *,
    ks: tuple[int, ...] = (1, 2, 3),
    normalize: tuple[bool, ...] = (False, True),
    lrs: tuple[float, ...] = (1e-3,),
    b1: float = 0.9,
    b2: float = 0.999,
    weight_decay: float = 1e-2,
    steps: int = 600,
    eval_every: int = 100,
    n_seeds: int = 3,
    seed: int = 0,
) -> KAdamComparison:
    """Train ``KAdam(lr, k, b1, b2, weight_decay)`` for every k, normalization choice,
    learning rate and seed (all levels share (β₁, β₂)); seeds and learning rates of one
    (k, normalize) pair share one compiled program. The cascade is theory/kadam.md §1:
    θ_n = θ_{n-1} - η (u⁽ᵏ⁾_n + λ θ_{n-1})."""
    keys = seed_keys(seed, n_seeds)
    losses, accuracies = [], []
    for k in ks:
        specs = stack_training_specs(
            [KAdam(lr, k=k, b1=b1, b2=b2, weight_decay=weight_decay) for lr in lrs]
        )
        per_norm_loss, per_norm_acc = [], []
        for norm in normalize:
            result = train_many(
                task.model(norm),
                task.data,
                specs,
                keys,
                k=k,
                steps=steps,
                batch_size=task.batch_size,
                eval_every=eval_every,
                vectorize=False,
            )
            per_norm_loss.append(result.train_loss)
            per_norm_acc.append(result.test_accuracy)
        losses.append(per_norm_loss)
        accuracies.append(per_norm_acc)
    return KAdamComparison(
        task.name,
        tuple(ks),
        tuple(normalize),
        tuple(lrs),
        evaluation_steps(steps, eval_every),
        np.asarray(losses),
        np.asarray(accuracies),
    )


class PhaseAccuracy(NamedTuple):
    """Final test accuracy of Adam(W) over a (β₁, β₂) grid: shape ``(len(b1s),
    len(b2s), n_seeds)``; ``train_loss`` likewise (NaN where a run diverged)."""

    b1s: np.ndarray
    b2s: np.ndarray
    test_accuracy: np.ndarray
    train_loss: np.ndarray


def phase_accuracy(
    task: Task,
    b1s: Any,
    b2s: Any,
    *,
    lr: float = 3e-3,
    weight_decay: float = 1e-2,
    steps: int = 600,
    n_seeds: int = 2,
    seed: int = 0,
) -> PhaseAccuracy:
    """Train AdamW(lr, β₁, β₂, λ) (without normalization layer) at every grid point and seed,
    as one vmapped call, and keep the final train loss and test accuracy (the stable region
    β₂ > β₁² of theory/stability.md §1 is compared with it in the ``phase_accuracy``
    figure)."""
    b1s = np.asarray(b1s, dtype=float)
    b2s = np.asarray(b2s, dtype=float)
    opts = [
        KAdam(lr, k=1, b1=float(b), b2=float(g), weight_decay=weight_decay)
        for b in b1s
        for g in b2s
    ]
    result = train_many(
        task.model(False),
        task.data,
        stack_training_specs(opts),
        seed_keys(seed, n_seeds),
        k=1,
        steps=steps,
        batch_size=task.batch_size,
        eval_every=steps,
    )
    shape = (len(b1s), len(b2s), n_seeds)
    return PhaseAccuracy(
        b1s,
        b2s,
        result.test_accuracy[..., -1].reshape(shape),
        result.train_loss[..., -1].reshape(shape),
    )
