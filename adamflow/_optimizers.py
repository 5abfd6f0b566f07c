"""Optimizer specifications: one frozen, validated object per optimizer.

k-Adam is a cascade of ``k`` adaptive-normalization levels; Adam is the cascade with
``k = 1`` and AdamW adds decoupled weight decay. The discrete recurrence, the
continuous-time flow and the symbolic form are all read off this one spec.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import rules
from ._trajectory import PyTree
from .validation import check_levels, check_positive

if TYPE_CHECKING:
    import optax


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True, repr=False, eq=False)
class KAdam:
    r"""k-Adam: ``k`` adaptive normalizations in cascade (theory/kadam.md §1-2).

    Discrete step ``n`` (``u⁽⁰⁾ = g_n = ∇L(θ_{n-1})``), for levels ``i = 1..k``::

        m⁽ⁱ⁾_n = β₁_i m⁽ⁱ⁾_{n-1} + (1-β₁_i) u⁽ⁱ⁻¹⁾_n
        v⁽ⁱ⁾_n = β₂_i v⁽ⁱ⁾_{n-1} + (1-β₂_i) (u⁽ⁱ⁻¹⁾_n)²
        u⁽ⁱ⁾_n = [m⁽ⁱ⁾_n/(1-β₁_iⁿ)] / (sqrt(v⁽ⁱ⁾_n/(1-β₂_iⁿ)) + ε)
        θ_n    = θ_{n-1} - η (u⁽ᵏ⁾_n + λ θ_{n-1})

    Continuous time ``t = nη`` (leading order), rates ``a_i, b_i`` from the convention::

        dm_i/dt = a_i (u⁽ⁱ⁻¹⁾ - m_i),   dv_i/dt = b_i ((u⁽ⁱ⁻¹⁾)² - v_i)
        dθ/dt   = -(u⁽ᵏ⁾ + λ θ),  u⁽ⁱ⁾ = m̂_i/(sqrt(v̂_i)+ε),  m̂_i = m_i/(1-e^{-a_i t})

    Parameters
    ----------
    lr : float | Callable[[Any], Any]
        Learning rate η, finite and > 0; or a schedule ``lr(count) -> η`` (an optax schedule:
        the update after ``count`` earlier ones uses ``lr(count)``). A schedule runs in
        `run_discrete`, `as_optax` and `integrate(order="leading")`, in time
        :math:`t_n = \sum_{i<n} \eta_i`.
    k : int, optional
        Number of levels, an integer >= 1 (k = 1 is Adam).
    b1 : float | Sequence[float], optional
        First-moment factors in [0, 1); a scalar shared by all levels or a
        sequence of length k (level 1 first, the one fed by the gradient).
    b2 : float | Sequence[float], optional
        Second-moment factors in [0, 1), likewise.
    eps : float, optional
        ε >= 0 added to sqrt(v̂).
    weight_decay : float, optional
        Decoupled weight decay λ >= 0 (AdamW's).
    name : str, optional
        The kind shown by ``repr`` (`Adam` and `AdamW` set theirs); ``==`` ignores it.

    Raises
    ------
    TypeError
        If ``k`` is not an integer (a bool included), or ``lr`` (``lr(0)`` for a schedule),
        ``b1``, ``b2``, ``eps`` or ``weight_decay`` is not a real number.
    ValueError
        If ``k < 1``; ``lr`` (or ``lr(0)``) is not finite and > 0; ``b1`` or ``b2`` is not in
        [0, 1) or is a sequence whose length is not ``k``; ``eps`` or ``weight_decay`` is
        negative or not finite.

    Examples
    --------
    >>> import adamflow as af
    >>> opt = af.KAdam(1e-3, k=2, b1=(0.9, 0.5))
    >>> opt
    KAdam(lr=0.001, k=2, b1=(0.9, 0.5), b2=0.999, eps=1e-08, weight_decay=0.0)
    >>> opt.b1s, opt.b2s, opt.replace(lr=0.01).lr
    ((0.9, 0.5), (0.999, 0.999), 0.01)
    >>> af.KAdam(1e-3, k=2, b1=(0.9, 1.0))
    Traceback (most recent call last):
    ...
    ValueError: b1[1] must be in [0, 1), got 1.0
    """

    lr: Any
    k: int = 2
    b1: Any = 0.9
    b2: Any = 0.999
    eps: Any = 1e-8
    weight_decay: Any = 0.0
    name: str = field(default="KAdam", compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, numbers.Integral):
            raise TypeError(f"k must be an integer >= 1, got {self.k!r}")
        if self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k!r}")
        k = int(self.k)
        object.__setattr__(self, "k", k)
        if callable(self.lr):  # a schedule: check its first value, keep the function
            check_positive("lr(0)", np.asarray(self.lr(0)).item())
        else:
            object.__setattr__(self, "lr", check_positive("lr", self.lr))
        b1s = check_levels("b1", self.b1, k)
        b2s = check_levels("b2", self.b2, k)
        # Store scalars when all levels share a value, so reprs stay readable.
        object.__setattr__(self, "b1", b1s[0] if len(set(b1s)) == 1 else b1s)
        object.__setattr__(self, "b2", b2s[0] if len(set(b2s)) == 1 else b2s)
        object.__setattr__(self, "eps", check_positive("eps", self.eps, allow_zero=True))
        object.__setattr__(
            self, "weight_decay", check_positive("weight_decay", self.weight_decay, allow_zero=True)
        )

    # A spec is a JAX pytree: its numbers are leaves (so jit/vmap trace them and a grid of
    # specs is one spec with stacked leaves); ``k``, ``name`` and an lr schedule are static.
    # Unflattening bypasses validation, as traced or stacked leaves cannot be checked.
    def tree_flatten(self) -> tuple[tuple[Any, ...], tuple[int, str, Any]]:
        """The spec as a JAX pytree: its numbers as leaves, the rest as static data.

        Returns
        -------
        tuple[tuple[Any, ...], tuple[int, str, Any]]
            ``(lr or None for a schedule, b1s, b2s, eps, weight_decay)`` and
            ``(k, name, schedule or None)``.

        Raises
        ------
        Nothing: it reads the fields.
        """
        schedule = self.schedule
        lr_leaf = None if schedule is not None else self.lr
        leaves = (lr_leaf, self.b1s, self.b2s, self.eps, self.weight_decay)
        return leaves, (self.k, self.name, schedule)

    @property
    def schedule(self) -> Callable[[Any], Any] | None:
        """The lr schedule ``count -> η``, or ``None`` for a constant lr.

        Returns
        -------
        Callable[[Any], Any] | None
            ``lr`` when it is callable, else ``None``.
        """
        return self.lr if callable(self.lr) else None

    def _key(self) -> tuple[Any, ...]:
        return (self.k, self.lr, self.b1s, self.b2s, self.eps, self.weight_decay)

    def __eq__(self, other: object) -> bool:
        # Levels compare by value: b1=0.9 equals b1=(0.9, 0.9) for k = 2.
        return isinstance(other, KAdam) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @classmethod
    def tree_unflatten(cls, aux: tuple[int, str, Any], leaves: Sequence[Any]) -> KAdam:
        """The spec from `tree_flatten`'s output, without validation (its leaves may be
        traced or stacked).

        Parameters
        ----------
        aux : tuple[int, str, Any]
            ``(k, name, schedule or None)``.
        leaves : Sequence[Any]
            ``(lr, b1, b2, eps, weight_decay)``.

        Returns
        -------
        KAdam
            The spec; a schedule in ``aux`` replaces the ``lr`` leaf.

        Raises
        ------
        ValueError
            If ``leaves`` does not hold exactly five values.
        """
        spec = object.__new__(cls)
        for name, value in zip(("lr", "b1", "b2", "eps", "weight_decay"), leaves, strict=True):
            object.__setattr__(spec, name, value)
        object.__setattr__(spec, "k", aux[0])
        object.__setattr__(spec, "name", aux[1])
        if aux[2] is not None:
            object.__setattr__(spec, "lr", aux[2])
        return spec

    @property
    def b1s(self) -> tuple[Any, ...]:
        """β₁ of each level i = 1..k (floats; arrays or tracers in a stacked or traced spec).

        Returns
        -------
        tuple[Any, ...]
            ``k`` values, level 1 first.
        """
        return self.b1 if isinstance(self.b1, tuple) else (self.b1,) * self.k

    @property
    def b2s(self) -> tuple[Any, ...]:
        """β₂ of each level i = 1..k (floats; arrays or tracers in a stacked or traced spec).

        Returns
        -------
        tuple[Any, ...]
            ``k`` values, level 1 first.
        """
        return self.b2 if isinstance(self.b2, tuple) else (self.b2,) * self.k

    def replace(self, **changes: object) -> KAdam:
        """A copy with some fields changed (validated again).

        Parameters
        ----------
        **changes : object
            New values of fields (``lr``, ``k``, ``b1``, ``b2``, ``eps``, ``weight_decay``,
            ``name``).

        Returns
        -------
        KAdam
            The new spec; ``self`` is unchanged.

        Raises
        ------
        TypeError
            If a name is not a field, or a value has the wrong type (see `KAdam`).
        ValueError
            If a value is out of its range (see `KAdam`).
        """
        fields = dict(
            lr=self.lr,
            k=self.k,
            b1=self.b1,
            b2=self.b2,
            eps=self.eps,
            weight_decay=self.weight_decay,
            name=self.name,
        )
        fields.update(changes)
        return KAdam(**fields)  # type: ignore[arg-type]

    def as_optax(self) -> optax.GradientTransformation:
        """This optimizer as an ``optax.GradientTransformation`` (see `adamflow.as_optax`).

        Returns
        -------
        optax.GradientTransformation
            ``as_optax(self)``.

        Raises
        ------
        ImportError
            If optax is not installed.
        """
        return as_optax(self)

    def __repr__(self) -> str:
        if self.name == "Adam":
            return f"Adam(lr={self.lr}, b1={self.b1}, b2={self.b2}, eps={self.eps})"
        if self.name == "AdamW":
            return (
                f"AdamW(lr={self.lr}, b1={self.b1}, b2={self.b2}, eps={self.eps}, "
                f"weight_decay={self.weight_decay})"
            )
        return (
            f"KAdam(lr={self.lr}, k={self.k}, b1={self.b1}, b2={self.b2}, "
            f"eps={self.eps}, weight_decay={self.weight_decay})"
        )


def Adam(lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> KAdam:
    r"""Adam: the one-level cascade, no weight decay (theory/adam.md §3-4).

    ``m_n = β₁ m + (1-β₁) g``, ``v_n = β₂ v + (1-β₂) g²``,
    ``θ_n = θ_{n-1} - η m̂_n/(sqrt(v̂_n)+ε)``; flow ``dθ/dt = -m̂/(sqrt(v̂)+ε)``.
    Same as ``optax.adam(lr, b1=b1, b2=b2, eps=eps)``.

    Parameters
    ----------
    lr : float
        Learning rate η, finite and > 0 (or a schedule, as for `KAdam`).
    b1 : float, optional
        First-moment factor β₁ in [0, 1).
    b2 : float, optional
        Second-moment factor β₂ in [0, 1).
    eps : float, optional
        ε >= 0 added to sqrt(v̂).

    Returns
    -------
    KAdam
        The spec ``KAdam(lr, k=1, b1=b1, b2=b2, eps=eps, weight_decay=0.0)``, named Adam.

    Raises
    ------
    TypeError
        If ``lr``, ``b1``, ``b2`` or ``eps`` is not a real number (or is a bool).
    ValueError
        If ``lr`` is not finite and > 0, ``b1`` or ``b2`` not in [0, 1), or ``eps``
        negative or not finite.

    Examples
    --------
    >>> import adamflow as af
    >>> opt = af.Adam(1e-3)
    >>> opt, opt.k
    (Adam(lr=0.001, b1=0.9, b2=0.999, eps=1e-08), 1)
    >>> af.Adam(-1e-3)
    Traceback (most recent call last):
    ...
    ValueError: lr must be finite and > 0, got -0.001
    """
    return KAdam(lr, k=1, b1=b1, b2=b2, eps=eps, weight_decay=0.0, name="Adam")


def AdamW(
    lr: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-4,
) -> KAdam:
    r"""AdamW: Adam with decoupled weight decay λ (theory/adamw.md §1-3).

    ``θ_n = θ_{n-1} - η (m̂_n/(sqrt(v̂_n)+ε) + λ θ_{n-1})``; flow
    ``dθ/dt = -(m̂/(sqrt(v̂)+ε) + λθ)``. Same as
    ``optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)``, defaults
    included (λ = 1e-4, as optax's).

    Parameters
    ----------
    lr : float
        Learning rate η, finite and > 0 (or a schedule, as for `KAdam`).
    b1 : float, optional
        First-moment factor β₁ in [0, 1).
    b2 : float, optional
        Second-moment factor β₂ in [0, 1).
    eps : float, optional
        ε >= 0 added to sqrt(v̂).
    weight_decay : float, optional
        Decoupled weight decay λ >= 0.

    Returns
    -------
    KAdam
        The spec ``KAdam(lr, k=1, ..., weight_decay=weight_decay)``, named AdamW.

    Raises
    ------
    TypeError
        If ``lr``, ``b1``, ``b2``, ``eps`` or ``weight_decay`` is not a real number (or is a
        bool).
    ValueError
        If ``lr`` is not finite and > 0, ``b1`` or ``b2`` not in [0, 1), or ``eps`` or
        ``weight_decay`` negative or not finite.

    Examples
    --------
    >>> import adamflow as af
    >>> af.AdamW(1e-3)
    AdamW(lr=0.001, b1=0.9, b2=0.999, eps=1e-08, weight_decay=0.0001)
    """
    return KAdam(lr, k=1, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, name="AdamW")


def stack_specs(specs: Sequence[KAdam]) -> KAdam:
    """One spec whose leaves carry a leading axis over ``specs`` (validated one by one), to
    ``jax.vmap`` a computation over a grid of hyperparameters; all must share ``k``.

    Parameters
    ----------
    specs : Sequence[KAdam]
        Specs of one ``k`` and one lr schedule (or none). Kinds may mix: the stacked spec
        is named AdamW where Adam and AdamW specs mix (Adam is AdamW with
        ``weight_decay=0``), KAdam where a KAdam spec is among them.

    Returns
    -------
    KAdam
        A spec whose leaves (``lr``, each level's ``b1`` and ``b2``, ``eps``,
        ``weight_decay``) are arrays with a leading axis of size ``len(specs)``; it is not
        validated again, and is meant for ``jax.vmap``.

    Raises
    ------
    ValueError
        If ``specs`` is empty, or the specs differ in ``k`` or lr schedule.
    TypeError
        If an element is not an `Adam`, `AdamW` or `KAdam` spec.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import adamflow as af
    >>> grid = af.stack_specs([af.Adam(0.1), af.Adam(0.2)])
    >>> state = af.init_state(1, jnp.zeros(2))
    >>> def first_step(opt):
    ...     _, u = af.cascade_step(opt, state, jnp.array([1.0, -2.0]))
    ...     return af.parameter_step(opt, jnp.zeros(2), u)
    >>> print(jax.vmap(first_step)(grid).round(6))
    [[-0.1  0.1]
     [-0.2  0.2]]
    """
    specs = list(specs)
    if not specs:
        raise ValueError("specs must not be empty")
    for spec in specs:
        if not isinstance(spec, KAdam):
            raise TypeError(f"every spec must be an Adam, AdamW or KAdam spec, got {spec!r}")
    if len({spec.k for spec in specs}) != 1:
        raise ValueError(f"stacked specs must share k, got k = {sorted({s.k for s in specs})}")
    if any(spec.schedule is not specs[0].schedule for spec in specs):
        raise ValueError("stacked specs must share one lr schedule (or none)")
    names = {spec.name for spec in specs}
    if len(names) > 1:  # Adam is AdamW without decay, and both are k-Adam with k = 1
        common = "AdamW" if names <= {"Adam", "AdamW"} else "KAdam"
        specs = [spec.replace(name=common) for spec in specs]
    return jax.tree_util.tree_map(lambda *leaves: jnp.asarray(leaves), *specs)


tree_map = jax.tree_util.tree_map


class CascadeState(NamedTuple):
    """Discrete optimizer state: step count ``n`` and raw moments ``m_i, v_i`` per level.

    Made by `init_state`, advanced by `cascade_step` (theory/kadam.md §1); the state of
    `as_optax`'s transformation. Its fields, in order:

    Attributes
    ----------
    count : jnp.ndarray
        The number ``n`` of steps taken, an int32 scalar.
    m, v : tuple[PyTree, ...]
        The raw first and second moments of each level (k PyTrees shaped like the
        parameters), level 1 first.

    Raises
    ------
    Nothing: a NamedTuple; its fields are not checked.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import adamflow as af
    >>> state = af.init_state(2, jnp.zeros(3))
    >>> int(state.count), len(state.m), state.v[1].shape
    (0, 2, (3,))
    """

    count: jnp.ndarray
    m: tuple[PyTree, ...]
    v: tuple[PyTree, ...]


def init_state(k: int, params: PyTree) -> CascadeState:
    """``n = 0`` and ``m_i = v_i = 0`` for every level.

    Parameters
    ----------
    k : int
        The number of levels.
    params : PyTree
        The parameters; the moments are zeros of its structure, shapes and dtypes.

    Returns
    -------
    CascadeState
        ``count = 0`` (int32) and ``k`` zero moments ``m`` and ``v``.

    Raises
    ------
    TypeError
        If a leaf of ``params`` is not an array or a number (from ``jnp.zeros_like``).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import adamflow as af
    >>> state = af.init_state(1, {"w": jnp.ones((2, 2)), "b": jnp.ones(2)})
    >>> int(state.count), state.m[0]["w"].shape, float(state.v[0]["b"].sum())
    (0, (2, 2), 0.0)
    """
    zeros = tree_map(jnp.zeros_like, params)
    return CascadeState(jnp.zeros([], jnp.int32), (zeros,) * k, (zeros,) * k)


def cascade_step(opt: KAdam, state: CascadeState, grad: PyTree) -> tuple[CascadeState, PyTree]:
    r"""One step of the k-level cascade; returns the new state and :math:`u^{(k)}_n`.

    For i = 1..k with :math:`u^{(0)}_n = g_n`:
    :math:`m^{(i)}_n = m^{(i)}_{n-1} + (1-\beta_{1,i})(u^{(i-1)}_n - m^{(i)}_{n-1})`, likewise
    :math:`v^{(i)}_n` with :math:`(u^{(i-1)}_n)^2`, and

    .. math:: u^{(i)}_n = [m^{(i)}_n/(1-\beta_{1,i}^n)]
              / (\sqrt{v^{(i)}_n/(1-\beta_{2,i}^n)} + \varepsilon).

    Works for traced (vmapped) hyperparameters (theory/kadam.md §1).

    Parameters
    ----------
    opt : KAdam
        The spec (its ``b1s``, ``b2s`` and ``eps``; ``lr`` and ``weight_decay`` are not used).
    state : CascadeState
        The state after ``n - 1`` steps.
    grad : PyTree
        The gradient :math:`g_n`, shaped like the moments.

    Returns
    -------
    tuple[CascadeState, PyTree]
        The state after ``n`` steps and the update :math:`u^{(k)}_n` (apply it with
        `parameter_step`).

    Raises
    ------
    TypeError
        If ``grad``'s structure or shapes do not match the moments' (from the arithmetic).
    IndexError
        If ``state`` has more levels than ``opt.k``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import adamflow as af
    >>> opt = af.Adam(0.1)
    >>> state, u = af.cascade_step(opt, af.init_state(1, jnp.zeros(2)), jnp.array([0.5, -2.0]))
    >>> int(state.count), [round(float(x), 4) for x in u]  # g / (|g| + eps) at n = 1
    (1, [1.0, -1.0])
    """
    n = state.count + 1
    drive = grad
    new_m, new_v = [], []
    for i in range(len(state.m)):
        b1, b2 = opt.b1s[i], opt.b2s[i]
        m = tree_map(lambda m, x: m + rules.ema_increment(m, x, 1.0 - b1), state.m[i], drive)
        v = tree_map(lambda v, x: v + rules.ema_increment(v, x * x, 1.0 - b2), state.v[i], drive)
        bc_m = rules.bias_correction(n * rules.decay_per_step(b1))
        bc_v = rules.bias_correction(n * rules.decay_per_step(b2))
        drive = tree_map(lambda m, v: rules.normalized_update(m / bc_m, v / bc_v, opt.eps), m, v)
        new_m.append(m)
        new_v.append(v)
    return CascadeState(n, tuple(new_m), tuple(new_v)), drive


def step_size(opt: KAdam, count: Any = None) -> Any:
    r"""The step :math:`\eta_n` of the update that follows ``count`` earlier ones: the
    constant lr, or ``lr(count)`` for a schedule (optax's convention)."""
    if opt.schedule is None:
        return opt.lr
    if count is None:
        raise TypeError("this spec's lr is a schedule: pass the update count to get its step")
    return opt.schedule(count)


def parameter_step(opt: KAdam, theta: PyTree, update: PyTree, count: Any = None) -> PyTree:
    r""":math:`\theta_n = \theta_{n-1} - \eta_n (u_n + \lambda \theta_{n-1})`, with
    :math:`\eta_n` = `step_size` ``(opt, count)`` (``count`` = n - 1, needed for a schedule)
    (theory/adamw.md §1).

    Parameters
    ----------
    opt : KAdam
        The spec (its ``lr`` and ``weight_decay``).
    theta : PyTree
        The parameters :math:`\theta_{n-1}`.
    update : PyTree
        The update :math:`u_n` (from `cascade_step`), shaped like ``theta``.
    count : Any, optional
        The number of earlier updates, ``n - 1``; needed when ``opt.lr`` is a schedule.

    Returns
    -------
    PyTree
        :math:`\theta_n`, shaped like ``theta``.

    Raises
    ------
    TypeError
        If ``opt.lr`` is a schedule and ``count`` is ``None``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import adamflow as af
    >>> opt = af.AdamW(0.1, weight_decay=0.5)
    >>> theta = af.parameter_step(opt, jnp.array([1.0]), jnp.array([1.0]))
    >>> round(float(theta[0]), 6)  # 1 - 0.1 * (1 + 0.5 * 1)
    0.85
    """
    lr = step_size(opt, count)
    return tree_map(
        lambda p, u: p + lr * rules.parameter_velocity(u, p, opt.weight_decay),
        theta,
        update,
    )


def as_optax(opt: KAdam) -> optax.GradientTransformation:
    r"""The spec as an optax transformation returning :math:`-\eta (u^{(k)}_n + \lambda \theta)`.

    Apply with ``optax.apply_updates``. ``params`` must be passed to ``update`` when
    ``weight_decay > 0``. The steps are `cascade_step` and `parameter_step`'s
    (theory/kadam.md §1); the state is a `CascadeState`, kept in the parameters' dtypes.

    Parameters
    ----------
    opt : KAdam
        The spec (a constant lr or a schedule of the update count).

    Returns
    -------
    optax.GradientTransformation
        ``init(params)`` and ``update(grads, state, params=None)``.

    Raises
    ------
    ImportError
        If optax is not installed.
    ValueError
        Raised by the transformation's ``update`` (not here) when ``params`` is not given
        and ``weight_decay > 0``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import adamflow as af
    >>> tx = af.as_optax(af.Adam(0.1))
    >>> params = jnp.array([1.0, -2.0])
    >>> updates, state = tx.update(jnp.array([0.5, -4.0]), tx.init(params), params)
    >>> [round(float(x), 4) for x in optax.apply_updates(params, updates)]
    [0.9, -1.9]
    """
    import optax  # only for users who ask for it: ``import adamflow`` does not load optax

    def init_fn(params: PyTree) -> CascadeState:
        return init_state(opt.k, params)

    def update_fn(
        updates: PyTree, state: CascadeState, params: PyTree | None = None
    ) -> tuple[PyTree, CascadeState]:
        if params is None:
            if opt.weight_decay > 0:
                raise ValueError("params must be given to update() when weight_decay > 0")
            params = tree_map(jnp.zeros_like, updates)
        lr = step_size(opt, state.count)
        new_state, u = cascade_step(opt, state, updates)
        delta = tree_map(
            lambda u, p, g: (lr * rules.parameter_velocity(u, p, opt.weight_decay)).astype(g.dtype),
            u,
            params,
            updates,
        )
        # Keep the state's dtypes (float32 params stay float32 under x64), as optax does,
        # so the state can be a lax.scan carry.
        new_state = tree_map(lambda new, old: new.astype(old.dtype), new_state, state)
        return delta, new_state

    return optax.GradientTransformation(init_fn, update_fn)  # type: ignore[arg-type]
