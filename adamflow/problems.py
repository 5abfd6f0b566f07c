"""Sweep objectives for stability maps: `Problem` and its built-ins (theory/stability.md).

A `Problem` gives the gradient of one optimizer step, ``grad(theta, key)``, where ``key``
is the PRNG key of that step (stochastic problems draw their mask or minibatch from it;
deterministic ones ignore it). An optional ``gate(step)`` switches the gradient off:
step ``n`` (counted from 1) uses ``grad(theta, key_n)`` where ``gate(n)`` is true and an
exact zero elsewhere. Adam's update grows by ``β₁/√β₂`` per step wherever a coordinate's
gradient is zero, so the problems differ in how often that happens:

======================  =====================================================  ===========
problem                 objective                                              zero grads
======================  =====================================================  ===========
`sparse`                ½ Σ h_i (θ_i - θ*_i)², coordinate i seen with prob p   often
`switch_off`            c·θ, gradient gated off after step ``n0``              always
`quadratic`             ½ Σ h_i (θ_i - θ*_i)², full gradient                   never
`logistic`              mean log(1 + e^{-y x·w}) on minibatches                never
`mlp_digits`            cross-entropy of a ReLU MLP on sklearn's digits        dead units
======================  =====================================================  ===========

`load_digits` is the one loader of scikit-learn's digits (``mlp_digits`` and the
training experiments of `adamflow.experiments` read it). The scale-invariant problems of
the meta-adaptive measurement (theory/kadam.md §4) are experiments:
`adamflow.experiments.scale_invariant`.

Constants are float64 NumPy arrays, so the problems run in double precision wherever JAX
has x64 enabled (`adamflow.phase_diagram` enables it for its sweep).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._trajectory import PyTree
from .validation import check_int, check_real

__all__ = [
    "PROBLEMS",
    "Problem",
    "get",
    "load_digits",
    "logistic",
    "mlp_digits",
    "quadratic",
    "sparse",
    "switch_off",
]


@dataclass(frozen=True, eq=False)
class Problem:
    r"""An objective for optimizer sweeps (the stability maps of theory/stability.md).

    Attributes
    ----------
    name : short identifier (``"sparse"``, ...).
    theta0 : initial parameters, a PyTree of arrays.
    grad : ``grad(theta, key) -> PyTree``, the gradient used at one step given that step's
        PRNG key (JAX-traceable).
    loss : ``loss(theta) -> scalar``, the full objective (for final losses), or ``None``.
    gate : ``gate(step) -> bool``, JAX-traceable; where false the step's gradient is an
        exact zero (``None``: always on).
    support : ``support(key) -> PyTree of bool`` shaped like ``theta0``: which coordinates
        receive a gradient at a step with this key, whatever ``theta`` is (``grad`` is zero
        elsewhere). Optional; sweeps use it to track silences once for all cells instead of
        reading them off each cell's gradient (``None``: a silence is ``g == 0``).
    params : the constructor's arguments, recorded in sidecars and checkpoint fingerprints.

    Raises
    ------
    TypeError
        ``name`` not a non-empty string; ``grad`` not callable; ``loss``, ``gate`` or
        ``support`` neither callable nor ``None``.
    ValueError
        ``theta0`` holds no array.

    Examples
    --------
    A gradient that is zero after step 2 (the gate), checked by `validate`:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from adamflow.problems import Problem
    >>> problem = Problem("line", jnp.zeros(3), lambda theta, key: jnp.ones_like(theta),
    ...                   gate=lambda step: step <= 2)
    >>> problem.validate()
    >>> problem.size
    3
    >>> key = jax.random.PRNGKey(0)
    >>> [problem.step_gradient(problem.theta0, key, n).tolist() for n in (2, 3)]
    [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    """

    name: str
    theta0: PyTree
    grad: Callable[[PyTree, jax.Array], PyTree]
    loss: Callable[[PyTree], Any] | None = None
    gate: Callable[[Any], Any] | None = None
    support: Callable[[jax.Array], PyTree] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty string, got {self.name!r}")
        if not jax.tree_util.tree_leaves(self.theta0):
            raise ValueError("theta0 must contain at least one array")
        if not callable(self.grad):
            raise TypeError(f"grad must be callable as grad(theta, key), got {self.grad!r}")
        if self.loss is not None and not callable(self.loss):
            raise TypeError(f"loss must be callable or None, got {self.loss!r}")
        if self.gate is not None and not callable(self.gate):
            raise TypeError(f"gate must be callable or None, got {self.gate!r}")
        if self.support is not None and not callable(self.support):
            raise TypeError(f"support must be callable or None, got {self.support!r}")

    def step_gradient(self, theta: PyTree, key: jax.Array, step: Any) -> PyTree:
        r"""The gradient of step ``n``: :math:`g_n = \mathrm{gate}(n)\,\mathrm{grad}(\theta, k_n)`,
        an exact zero where the gate is off (never ``0·inf``).

        Parameters
        ----------
        theta : PyTree
            The parameters, structured like ``theta0``.
        key : jax.Array
            The PRNG key of this step, passed to ``grad``.
        step : int | jax.Array
            The step number ``n`` (from 1), passed to ``gate``; JAX-traceable.

        Returns
        -------
        PyTree
            ``grad(theta, key)``, or zeros of its shape where ``gate(step)`` is false.

        Raises
        ------
        Nothing: it checks nothing itself; what ``grad`` or ``gate`` raise propagates.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> from adamflow.problems import switch_off
        >>> problem = switch_off(dim=2, n0=3)
        >>> [problem.step_gradient(problem.theta0, None, n).tolist() for n in (3, 4)]
        [[1.0, 0.1], [0.0, 0.0]]
        """
        g = self.grad(theta, key)
        if self.gate is None:
            return g
        on = self.gate(step)
        return jax.tree_util.tree_map(lambda x: jnp.where(on, x, jnp.zeros_like(x)), g)

    def step_support(self, key: jax.Array, step: Any) -> PyTree | None:
        """Which coordinates receive a gradient at step ``n`` (``gate(n)`` and
        ``support(key)``), or ``None`` when the problem declares no ``support``.

        Parameters
        ----------
        key : jax.Array
            The PRNG key of this step, passed to ``support``.
        step : int | jax.Array
            The step number ``n`` (from 1), passed to ``gate``; JAX-traceable.

        Returns
        -------
        PyTree | None
            Booleans shaped like ``theta0`` (``support(key) & gate(step)``), or ``None``
            without ``support``.

        Raises
        ------
        Nothing: it checks nothing itself; what ``support`` or ``gate`` raise propagates.

        Examples
        --------
        >>> import jax
        >>> from adamflow.problems import sparse
        >>> seen = sparse(dim=4, p=0.5).step_support(jax.random.PRNGKey(0), 1)
        >>> seen.shape, str(seen.dtype)
        ((4,), 'bool')
        """
        if self.support is None:
            return None
        seen = self.support(key)
        if self.gate is None:
            return seen
        on = self.gate(step)
        return jax.tree_util.tree_map(lambda s: s & on, seen)

    def validate(self) -> None:
        """Check the problem's functions once, by tracing them on ``theta0``
        (``jax.eval_shape``: nothing is computed): ``grad(theta, key)`` must accept the
        parameters and a PRNG key and return floating-point arrays with exactly the
        structure and shapes of ``theta0``; ``gate(step)`` a boolean scalar;
        ``support(key)`` booleans shaped like ``theta0``; ``loss(theta)`` a scalar.

        A function that cannot be called with the arguments it is given raises a
        ``TypeError`` naming the expected signature; a result of the wrong structure or
        shape a ``ValueError`` naming the function, the expected and the received shapes.
        `adamflow.phase_diagram` calls this before it compiles anything.

        Returns
        -------
        None
            Nothing; it returns only when every function passes.

        Raises
        ------
        TypeError
            ``grad``, ``gate``, ``support`` or ``loss`` cannot be called as
            ``grad(theta, key)``, ``gate(step)``, ``support(key)``, ``loss(theta)``.
        ValueError
            ``grad`` returns another structure or shapes than ``theta0``, or non-floating
            arrays; ``gate`` not one scalar; ``support`` not booleans shaped like
            ``theta0``; ``loss`` not a scalar.
        Exception
            Whatever tracing one of the functions raises, with a note naming the function
            and the problem.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> from adamflow.problems import Problem
        >>> bad = Problem("bad", jnp.zeros(3), lambda theta, key: jnp.zeros(2))
        >>> bad.validate()
        Traceback (most recent call last):
        ...
        ValueError: grad must return a gradient with the structure and shapes of theta0: ...
        """
        theta = jax.tree_util.tree_map(jnp.asarray, self.theta0)
        key = jax.random.PRNGKey(0)
        step = jnp.asarray(1, jnp.int32)
        expected = jax.eval_shape(lambda t: t, theta)
        _check_signature("grad", self.grad, (theta, key), "grad(theta, key)")
        got = _traced("grad", self.name, lambda: jax.eval_shape(self.grad, theta, key))
        _check_like("grad", expected, got, floating=True)
        if self.gate is not None:
            gate = self.gate
            _check_signature("gate", gate, (step,), "gate(step)")
            on = _traced("gate", self.name, lambda: jax.eval_shape(gate, step))
            if (
                jax.tree_util.tree_structure(on).num_leaves != 1
                or np.shape(jax.tree_util.tree_leaves(on)[0]) != ()
            ):
                raise ValueError(f"gate must return one boolean scalar, got {_describe(on)}")
        if self.support is not None:
            support = self.support
            _check_signature("support", support, (key,), "support(key)")
            seen = _traced("support", self.name, lambda: jax.eval_shape(support, key))
            _check_like("support", expected, seen, boolean=True)
        if self.loss is not None:
            loss = self.loss
            _check_signature("loss", loss, (theta,), "loss(theta)")
            value = _traced("loss", self.name, lambda: jax.eval_shape(loss, theta))
            leaves = jax.tree_util.tree_leaves(value)
            if len(leaves) != 1 or np.shape(leaves[0]) != ():
                raise ValueError(f"loss must return a scalar, got {_describe(value)}")

    @property
    def size(self) -> int:
        """Number of scalar parameters.

        Returns
        -------
        int
            The total size of the arrays of ``theta0``.

        Examples
        --------
        >>> from adamflow.problems import mlp_digits
        >>> mlp_digits(hidden=8).size  # 64·8 + 8 + 8·10 + 10
        610
        """
        return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(self.theta0)))

    def fingerprint(self) -> dict[str, Any]:
        """Name, parameters and a hash of ``theta0``: what identifies the problem's numbers.

        Returns
        -------
        dict[str, Any]
            ``name``, ``params`` (made JSON-able; values JSON cannot hold become strings)
            and ``theta0_sha256`` (16 hex digits of the SHA-256 of ``theta0``'s float64
            bytes and shapes).

        Raises
        ------
        TypeError
            A key of ``params`` that JSON cannot hold (not a str, int, float, bool or
            ``None``); values it cannot hold are written as text.

        Examples
        --------
        >>> from adamflow.problems import quadratic
        >>> fp = quadratic(dim=3).fingerprint()
        >>> fp["name"], fp["params"], len(fp["theta0_sha256"])
        ('quadratic', {'dim': 3, 'condition': 100.0, 'seed': 0}, 16)
        """
        digest = hashlib.sha256()
        for leaf in jax.tree_util.tree_leaves(self.theta0):
            array = np.ascontiguousarray(np.asarray(leaf, dtype=np.float64))
            digest.update(str(array.shape).encode())
            digest.update(array.tobytes())
        return {
            "name": self.name,
            "params": json.loads(json.dumps(dict(self.params), default=str)),
            "theta0_sha256": digest.hexdigest()[:16],
        }


def _describe(tree: PyTree) -> str:
    """A PyTree of arrays (or their shapes) as text: ``{w: float64[3, 2], b: float64[2]}``."""
    shown = jax.tree_util.tree_map(lambda x: f"{x.dtype}{list(np.shape(x))}", tree)
    return str(shown).replace("'", "")


def _check_signature(name: str, fn: Callable[..., Any], args: tuple[Any, ...], call: str) -> None:
    """A ``TypeError`` naming ``call`` when ``fn`` cannot be called with ``args``."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature to read (some builtins): trace it
        return
    try:
        signature.bind(*args)
    except TypeError as error:
        raise TypeError(
            f"{name} must be callable as {call}: a sweep calls it that way, but it has the "
            f"signature {name}{signature} ({error})"
        ) from None


def _traced(name: str, problem: str, trace: Callable[[], Any]) -> Any:
    """``trace()``, with a note saying which function of which problem failed."""
    try:
        return trace()
    except Exception as error:
        error.add_note(f"while tracing {name} of problem {problem!r} on theta0")
        raise


def _check_like(
    name: str, expected: PyTree, got: PyTree, *, floating: bool = False, boolean: bool = False
) -> None:
    """A ``ValueError`` naming ``name`` unless ``got`` has the structure and shapes of
    ``expected`` (and floating-point or boolean leaves when asked)."""
    same = jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(expected) and all(
        np.shape(a) == np.shape(b)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected))
    )
    if not same:
        kind = "a gradient" if floating else "booleans"
        raise ValueError(
            f"{name} must return {kind} with the structure and shapes of theta0: expected "
            f"{_describe(expected)}, got {_describe(got)}"
        )
    leaves = jax.tree_util.tree_leaves(got)
    if floating and not all(jnp.issubdtype(x.dtype, jnp.floating) for x in leaves):
        raise ValueError(f"{name} must return floating-point arrays, got {_describe(got)}")
    if boolean and not all(x.dtype == jnp.bool_ for x in leaves):
        raise ValueError(f"{name} must return boolean arrays, got {_describe(got)}")


def _everywhere(dim: int) -> Callable[[jax.Array], PyTree]:
    """The support of a dense gradient: every coordinate, every step."""

    def support(key: jax.Array) -> PyTree:
        return jnp.ones((dim,), dtype=bool)

    return support


def _quadratic_parts(
    dim: int, condition: float, seed: int
) -> tuple[np.ndarray, np.ndarray, Callable[[PyTree], Any]]:
    """Curvatures ``h_i`` log-spaced from 1 down to ``1/condition``, targets ``θ* ~ N(0, 1)``
    and the loss ``½ Σ h_i (θ_i - θ*_i)²``."""
    rng = np.random.default_rng(seed)
    curvature = np.logspace(0.0, -np.log10(condition), dim) if dim > 1 else np.ones(1)
    target = rng.standard_normal(dim)

    def loss(theta: PyTree) -> Any:
        return 0.5 * jnp.sum(curvature * (theta - target) ** 2)

    return curvature, target, loss


def sparse(dim: int = 32, p: float = 0.02, condition: float = 1.0, seed: int = 0) -> Problem:
    r"""A quadratic whose coordinates see their gradient with probability ``p`` per step.

    :math:`L(\theta) = \tfrac12\sum_i h_i(\theta_i-\theta^*_i)^2`,
    :math:`g_{n,i} = \xi_{n,i}\,h_i(\theta_i-\theta^*_i)` with
    :math:`\xi_{n,i}\sim\mathrm{Bernoulli}(p)` drawn from the step's key. Between two
    draws a coordinate's gradient is exactly zero and Adam's update grows by
    :math:`\beta_1/\sqrt\beta_2` per step (theory/stability.md §1). ``θ0 = 0``, ``θ* ~ N(0, 1)``.

    Parameters
    ----------
    dim : int
        Number of coordinates (>= 1).
    p : float
        Probability that a coordinate receives its gradient at a step, in (0, 1].
    condition : float
        Curvatures :math:`h_i` log-spaced from 1 down to ``1/condition`` (>= 1).
    seed : int
        Seed of the targets :math:`\theta^*` (>= 0).

    Returns
    -------
    Problem
        ``"sparse"``, with ``loss`` and ``support`` (the Bernoulli mask of the step's key).

    Raises
    ------
    ValueError
        ``dim`` < 1 or ``seed`` < 0 or either not an integer; ``p`` outside (0, 1];
        ``condition`` < 1 or not finite.
    TypeError
        ``p`` or ``condition`` not a real number.

    Examples
    --------
    >>> import jax
    >>> from adamflow.problems import sparse
    >>> problem = sparse(dim=4, p=0.5)
    >>> g = problem.step_gradient(problem.theta0, jax.random.PRNGKey(0), 1)
    >>> seen = problem.step_support(jax.random.PRNGKey(0), 1)
    >>> bool(((g != 0) == seen).all()), problem.size
    (True, 4)
    """
    dim = check_int("dim", dim, 1)
    p = check_real("p", p, 0.0, 1.0, low_open=True)
    condition = check_real("condition", condition, 1.0)
    seed = check_int("seed", seed, 0)
    curvature, target, loss = _quadratic_parts(dim, condition, seed)

    def support(key: jax.Array) -> PyTree:
        return jax.random.bernoulli(key, p, (dim,))

    def grad(theta: PyTree, key: jax.Array) -> PyTree:
        return jnp.where(support(key), curvature * (theta - target), 0.0)

    return Problem(
        "sparse",
        np.zeros(dim),
        grad,
        loss,
        support=support,
        params={"dim": dim, "p": p, "condition": condition, "seed": seed},
    )


def switch_off(dim: int = 1, n0: int = 1000, scale: float = 1.0) -> Problem:
    r"""A linear objective whose gradient switches off after step ``n0``.

    :math:`L(\theta) = c\cdot\theta` with :math:`c_i = \mathrm{scale}\cdot 10^{-i}`
    (``i = 0..dim-1``); :math:`g_n = c` for :math:`n \le n_0` and :math:`0` after. Then
    :math:`\hat m_n/\sqrt{\hat v_n}` is exactly ``sign(c)`` up to ``n0``, and after it
    :math:`|u|` changes by exactly :math:`\ln(\beta_1/\sqrt\beta_2)` per step (up to the
    bias-correction factors, which tend to 1) until :math:`\sqrt{\hat v}` falls to
    :math:`\varepsilon` (theory/stability.md §1).

    Parameters
    ----------
    dim : int
        Number of coordinates (>= 1).
    n0 : int
        The last step with a gradient (>= 1).
    scale : float
        :math:`c_0`, the gradient of the first coordinate (> 0).

    Returns
    -------
    Problem
        ``"switch_off"``, with ``loss``, ``gate`` (``step <= n0``) and ``support`` (every
        coordinate).

    Raises
    ------
    ValueError
        ``dim`` or ``n0`` < 1 or not an integer; ``scale`` <= 0 or not finite.
    TypeError
        ``scale`` not a real number.

    Examples
    --------
    >>> from adamflow.problems import switch_off
    >>> problem = switch_off(dim=3, n0=10, scale=2.0)
    >>> [round(x, 6) for x in problem.step_gradient(problem.theta0, None, 10).tolist()]
    [2.0, 0.2, 0.02]
    >>> problem.step_gradient(problem.theta0, None, 11).tolist()
    [0.0, 0.0, 0.0]
    """
    dim = check_int("dim", dim, 1)
    n0 = check_int("n0", n0, 1)
    scale = check_real("scale", scale, 0.0, low_open=True)
    c = scale * 10.0 ** -np.arange(dim, dtype=np.float64)

    def loss(theta: PyTree) -> Any:
        return jnp.sum(c * theta)

    def grad(theta: PyTree, key: jax.Array) -> PyTree:
        return jnp.broadcast_to(jnp.asarray(c, dtype=theta.dtype), jnp.shape(theta))

    def gate(step: Any) -> Any:
        return step <= n0

    return Problem(
        "switch_off",
        np.zeros(dim),
        grad,
        loss,
        gate,
        support=_everywhere(dim),
        params={"dim": dim, "n0": n0, "scale": scale},
    )


def quadratic(dim: int = 16, condition: float = 100.0, seed: int = 0) -> Problem:
    r"""A full-gradient quadratic: :math:`L = \tfrac12\sum_i h_i(\theta_i-\theta^*_i)^2`,
    :math:`h_i` log-spaced from 1 to ``1/condition``, ``θ0 = 0``, ``θ* ~ N(0, 1)``.
    Deterministic; no coordinate's gradient ever vanishes exactly, so Adam's update stays
    bounded for every (β₁, β₂) (the control case of theory/stability.md).

    Parameters
    ----------
    dim : int
        Number of coordinates (>= 1).
    condition : float
        Ratio of the largest to the smallest curvature (>= 1).
    seed : int
        Seed of the targets :math:`\theta^*` (>= 0).

    Returns
    -------
    Problem
        ``"quadratic"``, with ``loss`` and ``support`` (every coordinate); its ``grad``
        ignores the key.

    Raises
    ------
    ValueError
        ``dim`` < 1 or ``seed`` < 0 or either not an integer; ``condition`` < 1 or not
        finite.
    TypeError
        ``condition`` not a real number.

    Examples
    --------
    >>> from adamflow.problems import quadratic
    >>> problem = quadratic(dim=3, condition=100.0)
    >>> g = problem.step_gradient(problem.theta0, None, 1)  # h * (0 - target)
    >>> g.shape, bool((g != 0).all())
    ((3,), True)
    """
    dim = check_int("dim", dim, 1)
    condition = check_real("condition", condition, 1.0)
    seed = check_int("seed", seed, 0)
    curvature, target, loss = _quadratic_parts(dim, condition, seed)

    def grad(theta: PyTree, key: jax.Array) -> PyTree:
        return curvature * (theta - target)

    return Problem(
        "quadratic",
        np.zeros(dim),
        grad,
        loss,
        support=_everywhere(dim),
        params={"dim": dim, "condition": condition, "seed": seed},
    )


def logistic(
    n_samples: int = 256, dim: int = 10, batch: int = 32, l2: float = 1e-3, seed: int = 0
) -> Problem:
    r"""Logistic regression on synthetic data with minibatches.

    :math:`L(w) = \frac1N\sum_j \log(1+e^{-y_j x_j\cdot w}) + \tfrac{l_2}{2}|w|^2`,
    :math:`x_j\sim N(0, I)`, :math:`y_j = \mathrm{sign}(x_j\cdot w^* + 0.5\,\xi_j)`; each
    step's gradient uses ``batch`` samples drawn (with replacement) from the step's key.
    Its gradients never vanish exactly (a control case of theory/stability.md).

    Parameters
    ----------
    n_samples : int
        Number of synthetic samples N (>= 1).
    dim : int
        Number of features and weights (>= 1).
    batch : int
        Samples per step's minibatch (>= 1).
    l2 : float
        The L2 penalty :math:`l_2` (>= 0).
    seed : int
        Seed of the data and of :math:`w^*` (>= 0).

    Returns
    -------
    Problem
        ``"logistic"``, starting at ``w = 0``, with ``loss`` (the full-data objective) and
        ``support`` (every coordinate).

    Raises
    ------
    ValueError
        ``n_samples``, ``dim`` or ``batch`` < 1, or ``seed`` < 0, or one of them not an
        integer; ``l2`` < 0 or not finite.
    TypeError
        ``l2`` not a real number.

    Examples
    --------
    >>> import math
    >>> from adamflow.problems import logistic
    >>> problem = logistic(n_samples=64, dim=3, batch=8)
    >>> math.isclose(float(problem.loss(problem.theta0)), math.log(2))  # at w = 0
    True
    """
    n_samples = check_int("n_samples", n_samples, 1)
    dim = check_int("dim", dim, 1)
    batch = check_int("batch", batch, 1)
    l2 = check_real("l2", l2, 0.0)
    seed = check_int("seed", seed, 0)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples, dim))
    w_true = rng.standard_normal(dim)
    y = np.sign(x @ w_true + 0.5 * rng.standard_normal(n_samples))
    y[y == 0] = 1.0

    def batch_loss(w: PyTree, xb: Any, yb: Any) -> Any:
        return jnp.mean(jnp.logaddexp(0.0, -yb * (xb @ w))) + 0.5 * l2 * jnp.sum(w * w)

    def loss(w: PyTree) -> Any:
        return batch_loss(w, x, y)

    def grad(w: PyTree, key: jax.Array) -> PyTree:
        index = jax.random.randint(key, (batch,), 0, n_samples)
        return jax.grad(batch_loss)(w, jnp.asarray(x)[index], jnp.asarray(y)[index])

    return Problem(
        "logistic",
        np.zeros(dim),
        grad,
        loss,
        support=_everywhere(dim),
        params={"n_samples": n_samples, "dim": dim, "batch": batch, "l2": l2, "seed": seed},
    )


@functools.lru_cache(maxsize=1)
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 handwritten digits, the one loader of them in adamflow.

    Returns ``(images, labels)``: 1797 rows of 64 pixel intensities in 0..16 (float64)
    and their classes 0..9 (int64), both read-only (the arrays are cached). scikit-learn is
    imported here, on first use, so ``import adamflow`` does not load it.

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray]
        ``images`` (1797, 64) float64 and ``labels`` (1797,) int64, not writeable.

    Raises
    ------
    ImportError
        scikit-learn is not installed.

    Examples
    --------
    >>> from adamflow.problems import load_digits
    >>> images, labels = load_digits()
    >>> images.shape, labels.shape, int(images.max()), sorted(set(labels.tolist()))
    ((1797, 64), (1797,), 16, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    """
    from sklearn.datasets import load_digits as sklearn_digits

    images, labels = sklearn_digits(return_X_y=True)
    images = np.asarray(images, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def mlp_digits(hidden: int = 16, batch: int = 32, seed: int = 0) -> Problem:
    r"""A one-hidden-layer ReLU network on scikit-learn's 8×8 digits (1797 images, shipped
    with scikit-learn), trained on minibatches.

    :math:`L(W) = \frac1N\sum_j \mathrm{CE}(W_2\,\mathrm{relu}(W_1 x_j + b_1) + b_2,\, y_j)`,
    pixels scaled to [0, 1], He-normal ``W_1, W_2`` and zero biases from ``seed``; each
    step's gradient uses ``batch`` images drawn from the step's key. A hidden unit that is
    off for the whole minibatch gives exact zeros in its weights' gradients, where Adam's
    update grows as in theory/stability.md §2.

    Parameters
    ----------
    hidden : int
        Number of hidden units (>= 1).
    batch : int
        Images per step's minibatch (>= 1).
    seed : int
        Seed of the initial weights (>= 0).

    Returns
    -------
    Problem
        ``"mlp_digits"``, parameters ``{"w1", "b1", "w2", "b2"}``, with ``loss`` (over all
        1797 images) and no ``support`` (its zeros depend on the parameters).

    Raises
    ------
    ValueError
        ``hidden`` or ``batch`` < 1, or ``seed`` < 0, or one of them not an integer.
    ImportError
        scikit-learn is not installed (`load_digits`).

    Examples
    --------
    >>> from adamflow.problems import mlp_digits
    >>> problem = mlp_digits(hidden=8)
    >>> sorted(problem.theta0), problem.theta0["w1"].shape, problem.support is None
    (['b1', 'b2', 'w1', 'w2'], (64, 8), True)
    """
    hidden = check_int("hidden", hidden, 1)
    batch = check_int("batch", batch, 1)
    seed = check_int("seed", seed, 0)
    pixels, classes = load_digits()
    images = pixels / 16.0
    labels = classes.astype(np.int32)
    n_samples, n_inputs = images.shape
    n_classes = 10
    rng = np.random.default_rng(seed)
    theta0 = {
        "w1": rng.standard_normal((n_inputs, hidden)) * np.sqrt(2.0 / n_inputs),
        "b1": np.zeros(hidden),
        "w2": rng.standard_normal((hidden, n_classes)) * np.sqrt(2.0 / hidden),
        "b2": np.zeros(n_classes),
    }

    def batch_loss(theta: PyTree, xb: Any, yb: Any) -> Any:
        hidden_units = jax.nn.relu(xb @ theta["w1"] + theta["b1"])
        logits = hidden_units @ theta["w2"] + theta["b2"]
        log_probs = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(log_probs, yb[:, None], axis=1))

    def loss(theta: PyTree) -> Any:
        return batch_loss(theta, images, labels)

    def grad(theta: PyTree, key: jax.Array) -> PyTree:
        index = jax.random.randint(key, (batch,), 0, n_samples)
        return jax.grad(batch_loss)(theta, jnp.asarray(images)[index], jnp.asarray(labels)[index])

    return Problem(
        "mlp_digits",
        theta0,
        grad,
        loss,
        params={"hidden": hidden, "batch": batch, "seed": seed},
    )


#: The built-in problems by name (what ``scripts/phase_diagram.py --problem`` accepts).
PROBLEMS: dict[str, Callable[..., Problem]] = {
    "sparse": sparse,
    "switch_off": switch_off,
    "quadratic": quadratic,
    "logistic": logistic,
    "mlp_digits": mlp_digits,
}


def get(name: str, **kwargs: Any) -> Problem:
    """The built-in problem ``name`` made with ``kwargs`` (see `PROBLEMS`; the objectives of
    the stability maps, theory/stability.md).

    Parameters
    ----------
    name : str
        A key of `PROBLEMS`: ``"sparse"``, ``"switch_off"``, ``"quadratic"``,
        ``"logistic"`` or ``"mlp_digits"``.
    **kwargs : Any
        Keyword arguments of that problem's function (`sparse`, `switch_off`, ...).

    Returns
    -------
    Problem
        ``PROBLEMS[name](**kwargs)``.

    Raises
    ------
    ValueError
        ``name`` is not a key of `PROBLEMS`; or the problem's function refuses an
        argument.
    TypeError
        A keyword the problem's function does not take, or an argument it refuses.

    Examples
    --------
    >>> from adamflow.problems import get
    >>> problem = get("quadratic", dim=3)
    >>> problem.name, problem.params
    ('quadratic', {'dim': 3, 'condition': 100.0, 'seed': 0})
    """
    if name not in PROBLEMS:
        raise ValueError(f"problem must be one of {sorted(PROBLEMS)}, got {name!r}")
    return PROBLEMS[name](**kwargs)
