r"""Training pieces for the paper's Figs. 3-4 (arXiv 2411.05746): a small CNN in pure JAX,
digits as 8×8 images, a CIFAR-10 binary-format reader, the four per-level strategies of
k-Adam, and a vmapped trainer that also records the test loss.

A run is the k-level cascade of theory/kadam.md §1 on minibatch gradients,

    θ_n = θ_{n-1} - η (u⁽ᵏ⁾_n + λ θ_{n-1}),   u⁽ᵏ⁾_n = cascade_step(spec, state, ∇L_B(θ_{n-1})),

a pure function of the spec (a JAX pytree) and a PRNG key, so grids of specs and seeds run
as one ``jax.vmap`` (`train_grid`). The paper trains a CNN on CIFAR-10; CIFAR-10 cannot be
downloaded where this project's figures are made, so the figures use scikit-learn's 8×8
digits (`digits_cnn_task`) and say so; `load_cifar10` reads the real data set from a cache
folder where it exists (`cifar10_cnn_task`).

Per-level strategies (`level_factors`; level 1 is fed by the gradient):

- ``"equal"``: every level has (β₁, β₂);
- ``"no_momentum"``: level 1 has (β₁, β₂), levels i ≥ 2 have (0, β₂): no momentum above the
  first level, the explicit analogue of Adam on a scale-invariant weight (theory/kadam.md §4);
- ``"decay"``: β₁ at every level and β₂ moving toward ``b2_target`` (default 0.9): level i
  closes half of the remaining log-distance, ``1 - β₂_i = (1-β₂)^{w_i} (1-β₂*)^{1-w_i}`` with
  ``w_i = 2^{-(i-1)}`` (β₂ = 0.999: 0.999, 0.99, 0.9684, 0.9438, 0.9250, …, 0.9009 at
  level 10; every level stays inside β₂_i > β₁² when β₂* > β₁²);
- ``"tuned"``: the levels of ``"equal"``; the learning rate is picked per k from a sweep
  (the experiment does the picking).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import KAdam, PyTree, cascade_step, init_state, parameter_step
from ..validation import check_choice, check_int, check_unit_interval
from .training import (
    DTYPE,
    Dataset,
    Model,
    Task,
    accuracy,
    cross_entropy,
    digits_dataset,
    evaluation_steps,
    layer_norm,
    seed_keys,
    stack_training_specs,
)

#: The per-level strategies of `level_factors` (the paper's Fig. 4 compares four).
STRATEGIES: tuple[str, ...] = ("equal", "no_momentum", "decay", "tuned")

# --------------------------------------------------------------------------- strategies


def level_factors(
    strategy: str, k: int, b1: float = 0.9, b2: float = 0.999, *, b2_target: float = 0.9
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    r"""Per-level ``(b1s, b2s)`` of a k-Adam cascade under ``strategy`` (one of `STRATEGIES`).

    ``"equal"`` and ``"tuned"``: :math:`(\beta_1, \beta_2)` at every level. ``"no_momentum"``:
    level 1 :math:`(\beta_1, \beta_2)`, levels :math:`i \ge 2` :math:`(0, \beta_2)`.
    ``"decay"``: :math:`\beta_1` at every level and
    :math:`1-\beta_{2,i} = (1-\beta_2)^{w_i}(1-\beta_2^*)^{1-w_i}`, :math:`w_i = 2^{-(i-1)}`
    with :math:`\beta_2^*` = ``b2_target`` (level 1 keeps :math:`\beta_2`; each level halves
    the log-distance of :math:`1-\beta_2` to :math:`1-\beta_2^*`). With k = 1 every strategy
    is Adam(β₁, β₂).
    """
    check_choice("strategy", strategy, STRATEGIES)
    k = check_int("k", k, 1)
    b1 = check_unit_interval("b1", b1)
    b2 = check_unit_interval("b2", b2)
    b2_target = check_unit_interval("b2_target", b2_target)
    if strategy in ("equal", "tuned"):
        return (b1,) * k, (b2,) * k
    if strategy == "no_momentum":
        return (b1,) + (0.0,) * (k - 1), (b2,) * k
    weights = [2.0 ** -(i - 1) for i in range(1, k + 1)]
    b2s = tuple(
        1.0 - math.exp(w * math.log1p(-b2) + (1.0 - w) * math.log1p(-b2_target)) for w in weights
    )
    return (b1,) * k, (b2,) + b2s[1:]


def strategy_spec(
    strategy: str,
    lr: float,
    k: int,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    weight_decay: float = 0.0,
    b2_target: float = 0.9,
) -> KAdam:
    """``KAdam(lr, k, b1s, b2s, weight_decay)`` with the levels of `level_factors`."""
    b1s, b2s = level_factors(strategy, k, b1, b2, b2_target=b2_target)
    return KAdam(lr, k=k, b1=b1s, b2=b2s, weight_decay=weight_decay)


# --------------------------------------------------------------------------- the CNN


def conv3x3(x: jnp.ndarray, w: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    r"""A 3×3 convolution with zero ('same') padding, stride 1, channels last:
    :math:`y[n,i,j,o] = b_o + \sum_{di,dj,c} x[n,i+di-1,j+dj-1,c]\, w[di,dj,c,o]`
    (``x``: ``(N, H, W, C)``, ``w``: ``(3, 3, C, O)``).

    Written as 9 shifted views and one matmul (im2col), so a ``jax.vmap`` over several
    networks stays a batched matmul.
    """
    _, height, width, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate(
        [padded[:, di : di + height, dj : dj + width, :] for di in range(3) for dj in range(3)],
        axis=-1,
    )  # (N, H, W, 9C), ordered (di, dj, c) like w.reshape(9C, O)
    return patches @ w.reshape(-1, w.shape[-1]) + b


def avg_pool2(x: jnp.ndarray) -> jnp.ndarray:
    """2×2 average pooling with stride 2 (``H`` and ``W`` even)."""
    n, height, width, c = x.shape
    return x.reshape(n, height // 2, 2, width // 2, 2, c).mean(axis=(2, 4))


def cnn(
    height: int,
    width: int,
    channels: int,
    n_classes: int,
    *,
    conv_channels: tuple[int, int] = (8, 16),
    hidden: int = 64,
    normalize: bool = False,
) -> Model:
    """A small CNN on ``(N, height, width, channels)`` images (``height``, ``width`` even):

    ``relu(conv3×3)`` → ``relu(conv3×3)`` → 2×2 average pool → flatten → dense ``hidden``
    → [LayerNorm (`layer_norm`, ε = 1e-5) when ``normalize``] → relu → dense ``n_classes``.

    He-style initialization (``N(0, 1/fan_in)``), zero biases. The LayerNorm makes the
    hidden dense weight scale-invariant, the normalization layer of the reviewers' ablation.
    """
    height = check_int("height", height, 2)
    width = check_int("width", width, 2)
    if height % 2 or width % 2:
        raise ValueError(f"height and width must be even, got {height}×{width}")
    c1, c2 = conv_channels
    flat = (height // 2) * (width // 2) * c2

    def init(key: jax.Array) -> PyTree:
        k1, k2, k3, k4 = jax.random.split(key, 4)

        def normal(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jnp.ndarray:
            # Drawn flat, then reshaped: XLA on CPU compiles a multi-dimensional threefry
            # draw many times slower (seconds) than a one-dimensional one.
            flat = jax.random.normal(key, (math.prod(shape),), DTYPE)
            return flat.reshape(shape) / math.sqrt(fan_in)

        return {
            "conv1": {
                "w": normal(k1, (3, 3, channels, c1), 9 * channels),
                "b": jnp.zeros(c1, DTYPE),
            },
            "conv2": {"w": normal(k2, (3, 3, c1, c2), 9 * c1), "b": jnp.zeros(c2, DTYPE)},
            "dense": {"w": normal(k3, (flat, hidden), flat), "b": jnp.zeros(hidden, DTYPE)},
            "out": {"w": normal(k4, (hidden, n_classes), hidden), "b": jnp.zeros(n_classes, DTYPE)},
        }

    def apply(params: PyTree, x: jnp.ndarray) -> jnp.ndarray:
        h = jax.nn.relu(conv3x3(x, params["conv1"]["w"], params["conv1"]["b"]))
        h = jax.nn.relu(conv3x3(h, params["conv2"]["w"], params["conv2"]["b"]))
        h = avg_pool2(h).reshape(x.shape[0], -1)
        z = h @ params["dense"]["w"] + params["dense"]["b"]
        h = jax.nn.relu(layer_norm(z, 1e-5) if normalize else z)
        return h @ params["out"]["w"] + params["out"]["b"]

    return Model(init, apply)


# --------------------------------------------------------------------------- data sets


def digits_image_dataset(seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """scikit-learn's digits as ``(N, 8, 8, 1)`` images: `digits_dataset`'s split and
    per-pixel standardization, reshaped (row-major, as scikit-learn stores them)."""
    data = digits_dataset(seed, test_fraction)
    return data._replace(
        x_train=data.x_train.reshape(-1, 8, 8, 1), x_test=data.x_test.reshape(-1, 8, 8, 1)
    )


#: Bytes of one CIFAR-10 binary record: a label byte, then 1024 red, 1024 green, 1024 blue.
CIFAR10_RECORD = 1 + 3 * 32 * 32
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"


def read_cifar10_bin(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch (``data_batch_*.bin``, ``test_batch.bin``).

    Each 3073-byte record is the label (0..9) and a 32×32 image as three 1024-byte planes
    (red, green, blue), each row-major. Returns ``(images, labels)``: ``uint8`` of shape
    ``(N, 32, 32, 3)`` (channels last) and ``int32`` of shape ``(N,)``.
    """
    raw = np.fromfile(Path(path), dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR10_RECORD:
        raise ValueError(
            f"{path}: {raw.size} bytes is not a positive multiple of the "
            f"{CIFAR10_RECORD}-byte CIFAR-10 record"
        )
    records = raw.reshape(-1, CIFAR10_RECORD)
    labels = records[:, 0].astype(np.int32)
    if labels.max() > 9:
        raise ValueError(f"{path}: label {labels.max()} outside 0..9; not a CIFAR-10 file?")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def default_cifar10_dir() -> Path:
    """``$ADAMFLOW_DATA/cifar-10-batches-bin`` if ``ADAMFLOW_DATA`` is set, else
    ``~/.cache/adamflow/cifar-10-batches-bin`` (where ``cifar-10-binary.tar.gz`` unpacks)."""
    root = os.environ.get("ADAMFLOW_DATA")
    base = Path(root) if root else Path.home() / ".cache" / "adamflow"
    return base / "cifar-10-batches-bin"


def load_cifar10(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    train_files: Sequence[str] = CIFAR10_TRAIN_FILES,
    test_file: str = CIFAR10_TEST_FILE,
    n_train: int | None = None,
    n_test: int | None = None,
) -> Dataset:
    """CIFAR-10 from the binary batches in ``cache_dir`` (default `default_cifar10_dir`);
    nothing is downloaded.

    Images become ``float32`` ``(N, 32, 32, 3)``, standardized per channel with the training
    set's mean and standard deviation; ``n_train``/``n_test`` keep the first examples.
    Raises ``FileNotFoundError`` naming the missing files.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cifar10_dir()
    names = [*train_files, test_file]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 binary files {missing} not found in {folder}; unpack "
            "cifar-10-binary.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) there"
        )
    parts = [read_cifar10_bin(folder / name) for name in train_files]
    x_train = np.concatenate([p[0] for p in parts])[:n_train]
    y_train = np.concatenate([p[1] for p in parts])[:n_train]
    x_test, y_test = read_cifar10_bin(folder / test_file)
    x_test, y_test = x_test[:n_test], y_test[:n_test]
    train = x_train.astype(np.float32) / 255.0
    mean = train.mean(axis=(0, 1, 2))
    std = train.std(axis=(0, 1, 2))
    std = np.where(std > 0, std, 1.0)
    return Dataset(
        jnp.asarray((train - mean) / std, DTYPE),
        jnp.asarray(y_train, jnp.int32),
        jnp.asarray((x_test.astype(np.float32) / 255.0 - mean) / std, DTYPE),
        jnp.asarray(y_test, jnp.int32),
        10,
    )


def digits_cnn_task(seed: int = 0, *, hidden: int = 64, batch_size: int = 64) -> Task:
    """`cnn` (conv 8, conv 16, pool, dense ``hidden``) on 8×8 digits images, minibatches of
    ``batch_size``; the stand-in for the paper's CIFAR-10 CNN."""
    data = digits_image_dataset(seed)
    return Task(
        "CNN on digits (8×8)",
        data,
        lambda normalize: cnn(8, 8, 1, 10, hidden=hidden, normalize=normalize),
        batch_size,
    )


def cifar10_cnn_task(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    hidden: int = 128,
    batch_size: int = 128,
    n_train: int | None = None,
    n_test: int | None = None,
) -> Task:
    """`cnn` (conv 16, conv 32, pool, dense ``hidden``) on CIFAR-10 read by `load_cifar10`."""
    data = load_cifar10(cache_dir, n_train=n_train, n_test=n_test)
    return Task(
        "CNN on CIFAR-10",
        data,
        lambda normalize: cnn(
            32, 32, 3, 10, conv_channels=(16, 32), hidden=hidden, normalize=normalize
        ),
        batch_size,
    )


# --------------------------------------------------------------------------- training


def pad_levels(spec: KAdam, k: int) -> KAdam:
    """``spec`` with levels appended up to ``k`` (copies of its top level's factors).

    Level i of a cascade depends only on the levels below it, so the first ``spec.k``
    levels of the padded cascade compute exactly ``spec``'s update (`depth_step`)."""
    k = check_int("k", k, spec.k)
    extra = k - spec.k
    return spec.replace(
        k=k, b1=spec.b1s + (spec.b1s[-1],) * extra, b2=spec.b2s + (spec.b2s[-1],) * extra
    )


def depth_step(spec: KAdam, depth: Any, state: Any, grad: PyTree) -> tuple[Any, PyTree]:
    r"""One step of the ``spec.k``-level cascade that returns :math:`u^{(d)}_n` for a
    (possibly traced) depth ``d`` = ``depth`` in ``1..spec.k``: level by level with
    `adamflow.cascade_step`, all levels updated, level ``d``'s output returned. Equal to
    ``cascade_step`` of the first ``d`` levels (level i only reads the levels below it), so
    cascades of different k run in one compiled (vmapped or mapped) program."""
    schedule = spec.schedule
    lr = None if schedule is not None else spec.lr
    drive, out = grad, grad
    new_m, new_v = [], []
    count = state.count
    for i in range(spec.k):
        level = KAdam.tree_unflatten(
            (1, spec.name, schedule),
            (lr, (spec.b1s[i],), (spec.b2s[i],), spec.eps, spec.weight_decay),
        )
        sub, drive = cascade_step(
            level, type(state)(state.count, (state.m[i],), (state.v[i],)), drive
        )
        count = sub.count
        new_m.append(sub.m[0])
        new_v.append(sub.v[0])
        out = jax.tree_util.tree_map(lambda o, d: jnp.where(depth == i + 1, d, o), out, drive)
    return type(state)(count, tuple(new_m), tuple(new_v)), out


class Curves(NamedTuple):
    """Evaluation curves of a grid of runs: ``steps`` ``(E,)``; the other fields
    ``(C, S, E)`` (configs, seeds, evaluations). Losses are NaN or inf where a run diverged;
    accuracies count a non-finite output as wrong."""

    steps: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray


def _run_function(
    model: Model, n_train: int, *, k: int, steps: int, batch_size: int | None, eval_every: int
) -> Callable[..., tuple[jnp.ndarray, ...]]:
    """``run(spec, depth, key, (x_train, y_train, x_test, y_test)) -> (train_loss,
    test_loss, test_acc)``, each ``(steps // eval_every,)``; ``spec`` has ``k`` levels, the
    update is level ``depth``'s (`depth_step`)."""
    _, unravel = ravel_pytree(model.init(jax.random.PRNGKey(0)))

    def loss_fn(flat: jnp.ndarray, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
        return cross_entropy(model.apply(unravel(flat), x), y)

    grad_fn = jax.grad(loss_fn)

    def run(spec: KAdam, depth: Any, key: jax.Array, arrays: tuple[jnp.ndarray, ...]) -> Any:
        x_train, y_train, x_test, y_test = arrays

        def evaluate(flat: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
            logits = model.apply(unravel(flat), x_test)
            train_loss = loss_fn(flat, x_train, y_train)
            return train_loss, cross_entropy(logits, y_test), accuracy(logits, y_test)

        init_key, batch_key = jax.random.split(key)
        params, _ = ravel_pytree(model.init(init_key))
        n_blocks = steps // eval_every
        if batch_size is None:
            batches = jnp.zeros((n_blocks, eval_every, 0), jnp.int32)
        else:
            shape = (n_blocks, eval_every, batch_size)
            batches = jax.random.randint(batch_key, (math.prod(shape),), 0, n_train)
            batches = batches.reshape(shape)  # drawn flat: see `cnn`'s init

        def one_step(carry: Any, idx: jnp.ndarray) -> Any:
            params, state = carry
            x, y = (x_train, y_train) if batch_size is None else (x_train[idx], y_train[idx])
            state, u = depth_step(spec, depth, state, grad_fn(params, x, y))
            return (parameter_step(spec, params, u), state), None

        def one_block(carry: Any, block: jnp.ndarray) -> Any:
            carry, _ = jax.lax.scan(one_step, carry, block)
            return carry, evaluate(carry[0])

        _, curves = jax.lax.scan(one_block, (params, init_state(k, params)), batches)
        return curves

    return run


def train_grid(
    model: Model,
    data: Dataset,
    specs: Sequence[KAdam],
    keys: jax.Array,
    *,
    steps: int,
    batch_size: int | None = None,
    eval_every: int = 50,
    chunk: int = 3,
) -> Curves:
    """Train every (spec, key) pair in one compiled program and record the train loss (whole
    training set), the test loss and the test accuracy every ``eval_every`` steps.

    ``specs``: k-Adam specs of any k (each runs as the first ``spec.k`` levels of one
    ``max k``-level cascade, `depth_step`; computed in float32); ``keys``: ``(S, 2)`` PRNG keys
    (`seed_keys`), each drawing the initial parameters and the minibatches
    (``batch_size=None``: full batch). The ``C·S`` runs go through ``jax.lax.map`` in
    vmapped groups of ``chunk`` (on a CPU, vmapping many small convolutional networks at
    once is slower than a few at a time). Returns `Curves` of shape ``(C, S, E)``.
    """
    specs = list(specs)
    if not specs or not all(isinstance(s, KAdam) for s in specs):
        raise TypeError("specs must be a non-empty list of Adam, AdamW or KAdam specs")
    steps = check_int("steps", steps, 1)
    eval_every = check_int("eval_every", eval_every, 1)
    chunk = check_int("chunk", chunk, 1)
    if steps % eval_every:
        raise ValueError(f"steps ({steps}) must be a multiple of eval_every ({eval_every})")
    n_train = data.x_train.shape[0]
    if batch_size is not None and not 1 <= batch_size <= n_train:
        raise ValueError(f"batch_size must be in [1, {n_train}] or None, got {batch_size!r}")
    k_max = max(s.k for s in specs)
    stacked = stack_training_specs([pad_levels(s.replace(name="KAdam"), k_max) for s in specs])
    depths = jnp.asarray([s.k for s in specs], jnp.int32)
    n_configs, n_seeds = len(specs), keys.shape[0]
    run = _run_function(
        model, n_train, k=k_max, steps=steps, batch_size=batch_size, eval_every=eval_every
    )
    arrays = (data.x_train, data.y_train, data.x_test, data.y_test)
    config = jnp.repeat(jnp.arange(n_configs), n_seeds)
    seed = jnp.tile(jnp.arange(n_seeds), n_configs)

    @jax.jit
    def run_all(stacked: KAdam, depths: jnp.ndarray, keys: jax.Array, arrays: Any) -> Any:
        def one(pair: tuple[jnp.ndarray, jnp.ndarray]) -> Any:
            c, s = pair
            spec = jax.tree_util.tree_map(lambda leaf: leaf[c], stacked)
            return run(spec, depths[c], keys[s], arrays)

        return jax.lax.map(one, (config, seed), batch_size=min(chunk, n_configs * n_seeds))

    curves = run_all(stacked, depths, keys, arrays)
    shape = (n_configs, n_seeds, -1)
    train_loss, test_loss, test_acc = (np.asarray(c).reshape(shape) for c in curves)
    return Curves(evaluation_steps(steps, eval_every), train_loss, test_loss, test_acc)


__all__ = [
    "CIFAR10_RECORD",
    "STRATEGIES",
    "Curves",
    "avg_pool2",
    "cifar10_cnn_task",
    "cnn",
    "conv3x3",
    "default_cifar10_dir",
    "depth_step",
    "digits_cnn_task",
    "digits_image_dataset",
    "level_factors",
    "load_cifar10",
    "pad_levels",
    "read_cifar10_bin",
    "seed_keys",
    "strategy_spec",
    "train_grid",
]
