"""The gradient a run uses, and the checks made once before any run: a finite starting
point, and a gradient whose structure and shapes match the parameters. A mismatch is named
here instead of failing deep inside JAX or a solver."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._trajectory import PyTree, TrainingState

tree_map = jax.tree_util.tree_map


class Gradient(NamedTuple):
    """The gradient function of a run, its starting point as float arrays, and whether the
    function is JAX-traceable (else it is called on NumPy arrays, outside JAX)."""

    fn: Callable[[PyTree], PyTree]
    theta0: PyTree
    traceable: bool


def resolve_grad(
    loss: Callable[[PyTree], Any] | None, grad: Callable[[PyTree], PyTree] | None
) -> Callable[[PyTree], PyTree]:
    """``grad`` if given, else ``jax.grad(loss)``; one of them is required."""
    if grad is not None:
        if not callable(grad):
            raise TypeError(f"grad must be callable, got {type(grad).__name__}")
        return grad
    if loss is None or not callable(loss):
        raise TypeError("loss must be a callable scalar function of the parameters (or pass grad=)")
    return _cached_grad(loss)


@functools.lru_cache(maxsize=128)
def _cached_grad(loss: Callable[[PyTree], Any]) -> Callable[[PyTree], PyTree]:
    # The same loss gives the same gradient function, so jit caches keyed on it hit.
    return jax.grad(loss)


#: The errors JAX raises when a callable cannot be traced (it converts a tracer to a NumPy
#: array, a bool or an int): the only sign that a ``grad=`` is NumPy-only code.
NOT_TRACEABLE = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.NonConcreteBooleanIndexError,
)


def _check_leaf(where: str, leaf: Any) -> None:
    """A leaf of ``theta0`` must be a real number or an array of them (integers are taken as
    floats); complex, boolean, string and object leaves are refused, never silently cast."""
    if isinstance(leaf, (str, bytes)):
        raise TypeError(f"theta0 must hold real numbers; {where} is a string: {leaf!r}")
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
        dtype = np.asarray(leaf).dtype
    kind = np.dtype(dtype).kind
    if kind == "c":
        raise TypeError(
            f"theta0 must be real; {where} is complex ({dtype}): the flows and the optimizer "
            "act on real parameters (split real and imaginary parts into two leaves)"
        )
    if kind not in "fiu":
        raise TypeError(f"theta0 must hold real numbers; {where} has dtype {dtype}")


def as_float_tree(theta0: PyTree) -> PyTree:
    """``theta0`` with every leaf a float array of JAX's default float dtype (float64 under
    ``jax_enable_x64``, else float32); it must be non-empty, real and finite.

    One rule for containers: a list or tuple is a PyTree node, never a vector. A list or
    tuple of plain numbers is therefore refused with a ``TypeError`` that says to pass
    ``jnp.asarray(theta0)`` (a vector) instead; integer leaves are taken as floats.
    """
    if (
        isinstance(theta0, (list, tuple))
        and theta0
        and all(isinstance(x, (int, float, np.number)) for x in theta0)
    ):
        raise TypeError(
            f"theta0 is a {type(theta0).__name__} of numbers, which JAX reads as a PyTree of "
            "scalars, not a vector: pass jnp.asarray(theta0) for a vector (or a dict/tuple of "
            "arrays for a PyTree)"
        )
    leaves = jax.tree_util.tree_leaves_with_path(theta0)
    if not leaves:
        raise ValueError("theta0 must contain at least one array")
    for path, leaf in leaves:
        _check_leaf(jax.tree_util.keystr(path) or "(the array)", leaf)
    theta = tree_map(lambda x: jnp.asarray(x, dtype=jnp.result_type(float)), theta0)
    for path, leaf in jax.tree_util.tree_leaves_with_path(theta):
        if not bool(jnp.all(jnp.isfinite(leaf))):
            where = jax.tree_util.keystr(path) or "(the array)"
            raise ValueError(f"theta0 must be finite; {where} holds nan or inf")
    return theta


def _describe(tree: PyTree) -> str:
    pairs = [
        f"{jax.tree_util.keystr(path) or '(array)'}: {tuple(np.shape(leaf))}"
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    ]
    return "{" + ", ".join(pairs) + "}"


def check_like(name: str, reference: PyTree, tree: PyTree, what: str, verb: str = "be") -> None:
    """Raise ``ValueError`` naming ``name`` unless ``tree`` has the structure and leaf shapes
    of ``reference`` (``what`` says what it should be like: "<name> must <verb> a PyTree with
    the structure and shapes of <what>")."""
    same_structure = jax.tree_util.tree_structure(tree) == jax.tree_util.tree_structure(reference)
    same_shapes = same_structure and all(
        np.shape(x) == np.shape(r)
        for x, r in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(reference))
    )
    if not same_shapes:
        raise ValueError(
            f"{name} must {verb} a PyTree with the structure and shapes of {what}: "
            f"expected {_describe(reference)}, got {_describe(tree)}"
        )


def check_grad_output(theta: PyTree, grad_out: PyTree) -> None:
    """Raise ``ValueError`` naming ``grad`` unless ``grad_out`` has the structure and leaf
    shapes of ``theta``."""
    check_like("grad", theta, grad_out, "the parameters", verb="return")


def prepare(
    loss: Callable[[PyTree], Any] | None, grad: Callable[[PyTree], PyTree] | None, theta0: PyTree
) -> Gradient:
    """The run's `Gradient`: resolve it, check ``theta0`` is finite, and check once that the
    gradient of ``theta0`` has its structure and shapes. A callable that JAX cannot trace
    (NumPy code: JAX raises one of `NOT_TRACEABLE`) is called once on NumPy arrays instead;
    any other exception from it propagates unchanged."""
    fn = resolve_grad(loss, grad)
    theta = as_float_tree(theta0)
    try:
        shapes = jax.eval_shape(fn, theta)
    except NOT_TRACEABLE:  # only a tracer conversion means a NumPy-only callable
        theta_np = tree_map(np.asarray, theta)
        check_grad_output(theta_np, fn(theta_np))
        return Gradient(fn, theta, traceable=False)
    check_grad_output(theta, shapes)
    return Gradient(fn, theta, traceable=True)


def starting_point(theta0: PyTree, start: Any, k: int) -> tuple[PyTree, TrainingState | None]:
    """``(theta0, start)`` checked for a run that begins at ``theta0`` (``start=None``) or
    continues from a `TrainingState` (then ``theta0`` must be ``None``): the state's step is
    an integer >= 0, it holds k levels of moments, each of the structure and shapes of its
    ``theta``, real and finite, and a step-0 state has zero moments. Returns the parameters
    to start from (the state's, cast like ``theta0``) and the state with float moments."""
    if start is None:
        return theta0, None
    if not isinstance(start, TrainingState):
        raise TypeError(
            f"start must be a TrainingState (from Trajectory.state_at) or None, got {start!r}"
        )
    if theta0 is not None:
        raise ValueError(
            "give theta0 or start=, not both: a run from a TrainingState begins at its theta "
            "(pass None as theta0)"
        )
    step = start.step
    if isinstance(step, bool) or not float(step).is_integer() or step < 0:
        raise ValueError(f"start.step must be an integer >= 0, got {step!r}")
    theta = as_float_tree(start.theta)
    moments = []
    for name in ("m", "v"):
        levels = getattr(start, name)
        if not isinstance(levels, tuple) or len(levels) != k:
            raise ValueError(f"start.{name} must be a tuple of {k} PyTrees (one per level)")
        for i, level in enumerate(levels):
            check_like(f"start.{name}[{i}]", theta, level, "start.theta")
        levels = tuple(as_float_tree(level) for level in levels)
        if step == 0 and any(bool(jnp.any(x != 0)) for x in jax.tree_util.tree_leaves(levels)):
            raise ValueError(f"start.step is 0 but start.{name} is not zero")
        moments.append(levels)
    return theta, TrainingState(theta, moments[0], moments[1], int(step))


def first_nonfinite_leaf(tree: PyTree) -> str | None:
    """The path of the first leaf of ``tree`` holding nan or inf, else ``None``."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if not np.all(np.isfinite(np.asarray(leaf))):
            return jax.tree_util.keystr(path) or "(the array)"
    return None
