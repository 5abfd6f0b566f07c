r"""Preconditioned sharpness and the edge-of-stability threshold (theory/eos.md).

`preconditioned_sharpness` computes the top eigenvalues of :math:`P^{-1/2} H P^{-1/2}`
matrix-free (Lanczos on Hessian-vector products); `adam_preconditioner` gives Adam's
:math:`P = \sqrt{\hat v} + \varepsilon` from a raw second moment; `eos_threshold` is the
curvature above which Adam's step with that :math:`P` frozen is unstable,
:math:`(2 - \eta\lambda)(1 + \beta_1)/((1 - \beta_1)\eta)`, derived by
`adamflow.symbolic` (``_eos``) and written here as plain arithmetic so that the numerical
library never imports sympy.
"""

from __future__ import annotations

import cmath
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpy.polynomial import Polynomial

from . import rules
from ._gradients import check_like, resolve_grad
from ._optimizers import KAdam
from ._trajectory import PyTree, all_finite
from .validation import check_array, check_bool, check_int


class Sharpness(NamedTuple):
    r"""The result of `preconditioned_sharpness` (theory/eos.md §1).

    Attributes
    ----------
    values : np.ndarray
        The top-k eigenvalues of :math:`A = P^{-1/2} H P^{-1/2}`, largest first
        (algebraically: a negative curvature is never "top"), shape ``(k,)``, float64.
    vectors : tuple[PyTree, ...] | None
        With ``return_vectors=True``, a tuple of k PyTrees shaped like ``theta``: the
        eigenvectors of :math:`A` (unit norm over all leaves together; the parameter-space
        direction is :math:`P^{-1/2} v`); else ``None``.
    residuals : np.ndarray
        The Lanczos estimates :math:`|\beta_m s_{m,i}|` of
        :math:`\|A v_i - \lambda_i v_i\|`, shape ``(k,)``: small means converged.
    hvps : int
        Hessian-vector products used (one per Lanczos iteration).

    Raises
    ------
    Nothing: a NamedTuple that `preconditioned_sharpness` fills; its fields are not checked.

    Examples
    --------
    On :math:`L = 2\theta_1^2 + \tfrac12\theta_2^2` with :math:`P = I`, the top eigenvalue
    of :math:`H = \operatorname{diag}(4, 1)` and its eigenvector :math:`\pm e_1`:

    >>> import jax.numpy as jnp
    >>> from adamflow import preconditioned_sharpness
    >>> loss = lambda th: 2.0 * th[0] ** 2 + 0.5 * th[1] ** 2
    >>> s = preconditioned_sharpness(loss, jnp.zeros(2), jnp.ones(2), return_vectors=True)
    >>> round(float(s.values[0]), 6), [round(abs(float(x)), 6) for x in s.vectors[0]]
    (4.0, [1.0, 0.0])
    >>> s.hvps, bool(s.residuals[0] < 1e-6)
    (2, True)
    """

    values: np.ndarray
    vectors: tuple[PyTree, ...] | None
    residuals: np.ndarray
    hvps: int


def _check_precond(theta: PyTree, precond: PyTree) -> np.ndarray:
    """``precond`` flattened; it must have ``theta``'s structure and shapes, finite and > 0."""
    check_like("precond", theta, precond, "theta (P's diagonal)")
    leaves = [
        check_array("precond", p, 0.0, low_open=True).ravel()
        for p in jax.tree_util.tree_leaves(precond)
    ]
    return np.concatenate(leaves)


def _flat_theta(theta: PyTree) -> jnp.ndarray:
    """``theta`` raveled; its leaves must be real floating arrays, finite, at least one
    number in all."""
    leaves = jax.tree_util.tree_leaves(theta)
    if not leaves:
        raise ValueError("theta must contain at least one array")
    for leaf in leaves:
        dtype = np.dtype(getattr(leaf, "dtype", np.asarray(leaf).dtype))
        if dtype.kind != "f":
            raise TypeError(f"theta must hold real floating arrays, got a leaf of dtype {dtype}")
    flat, _ = ravel_pytree(theta)
    if flat.size == 0:
        raise ValueError("theta must contain at least one number")
    if not bool(jnp.all(jnp.isfinite(flat))):
        raise ValueError("theta must be finite; it holds nan or inf")
    return flat


@functools.partial(jax.jit, static_argnums=(0, 4))
def _lanczos(
    grad_fn: Callable[[PyTree], PyTree],
    theta: PyTree,
    scale: jnp.ndarray,
    key: jax.Array,
    iters: int,
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """``iters`` Lanczos steps on :math:`A v = s \\odot H (s \\odot v)`, :math:`s = P^{-1/2}`,
    with full reorthogonalization; returns the tridiagonal's diagonal ``alpha``, its
    off-diagonal ``beta`` (``beta[-1]``: the last residual's norm) and the basis ``Q``
    (rows). One compilation per gradient function, shapes and ``iters``."""
    flat, unravel = ravel_pytree(theta)
    dim, dtype = flat.size, flat.dtype
    # Linearize once: the gradient's forward pass is shared by every iteration; each
    # iteration then costs one Hessian-vector product (forward-over-reverse).
    grad_out, hvp = jax.linearize(grad_fn, theta)
    if jax.tree_util.tree_structure(grad_out) != jax.tree_util.tree_structure(theta):
        raise ValueError("grad must return a PyTree with the structure of theta")

    def operator(v: jnp.ndarray) -> jnp.ndarray:
        return scale * ravel_pytree(hvp(unravel(scale * v)))[0]

    def orthogonalize(w: jnp.ndarray, basis: jnp.ndarray) -> jnp.ndarray:
        # Classical Gram-Schmidt twice ("twice is enough"): the unfilled rows are zero.
        w = w - basis.T @ (basis @ w)
        return w - basis.T @ (basis @ w)

    def unit_random(index: int | jnp.ndarray, basis: jnp.ndarray) -> jnp.ndarray:
        r = orthogonalize(jax.random.normal(jax.random.fold_in(key, index), (dim,), dtype), basis)
        return r / jnp.linalg.norm(r)

    tiny = jnp.finfo(dtype).eps * 1e2

    def body(j: jnp.ndarray, carry: tuple[Any, ...]) -> tuple[Any, ...]:
        basis, alphas, betas, q, q_prev, beta_prev, norm = carry
        basis = basis.at[j].set(q)
        w = operator(q)
        alpha = jnp.vdot(q, w)
        w = orthogonalize(w - alpha * q - beta_prev * q_prev, basis)
        beta = jnp.linalg.norm(w)
        norm = jnp.maximum(norm, jnp.abs(alpha) + beta)
        # An invariant subspace is exhausted (beta ~ 0): go on from a fresh random vector
        # orthogonal to it, coupled by beta = 0, so repeated eigenvalues are all found.
        exhausted = beta <= tiny * norm
        q_next = jax.lax.cond(
            exhausted & (j < iters - 1),  # after the last step no vector is needed
            lambda: unit_random(j + 1, basis),
            lambda: w / jnp.where(beta > 0, beta, 1.0),
        )
        beta_kept = jnp.where(exhausted & (j < iters - 1), 0.0, beta)
        return (
            basis,
            alphas.at[j].set(alpha),
            betas.at[j].set(beta_kept),
            q_next,
            q,
            beta_kept,
            norm,
        )

    basis0 = jnp.zeros((iters, dim), dtype)
    start = unit_random(0, basis0)
    zero = jnp.zeros((), dtype)
    carry = (basis0, jnp.zeros(iters, dtype), jnp.zeros(iters, dtype), start, start * 0, zero, zero)
    basis, alphas, betas, *_ = jax.lax.fori_loop(0, iters, body, carry)
    return alphas, betas, basis


def preconditioned_sharpness(
    loss: Callable[[PyTree], Any] | None,
    theta: PyTree,
    precond: PyTree,
    *,
    grad: Callable[[PyTree], PyTree] | None = None,
    k: int = 1,
    iters: int | None = None,
    key: jax.Array | None = None,
    return_vectors: bool = False,
) -> Sharpness:
    r"""The top-k eigenvalues of the preconditioned Hessian (theory/eos.md §1):

    .. math:: \lambda_1 \ge \dots \ge \lambda_k \text{ of } A = P^{-1/2} H P^{-1/2},
              \qquad H = \nabla^2 L(\theta),\ P = \operatorname{diag}(\text{precond}),

    the same as those of :math:`P^{-1} H`. With Adam's :math:`P = \sqrt{\hat v} + \varepsilon`
    (`adam_preconditioner`), :math:`\lambda_1` is the preconditioned sharpness that Adam's
    step keeps below `eos_threshold` (theory/eos.md §2).

    Matrix-free: :math:`H` is never formed. Each Lanczos iteration is one Hessian-vector
    product, the JVP of the gradient (``grad`` if given, else ``jax.grad(loss)``, linearized
    once per call), on the raveled parameters (`jax.flatten_util.ravel_pytree`); the Krylov
    basis is fully reorthogonalized, and the eigenpairs of the small tridiagonal come from
    `numpy.linalg.eigh`. The whole loop is one jitted function, compiled once
    per gradient function (the same ``loss`` or ``grad`` object), parameter shapes and
    ``iters``. It runs in ``theta``'s dtype: float64 needs ``jax_enable_x64``.

    Parameters
    ----------
    loss : Callable[[PyTree], Any] | None
        Scalar JAX function of ``theta`` (may be ``None`` when ``grad`` is given).
    theta : PyTree
        The point, a PyTree of real floating arrays.
    precond : PyTree
        :math:`P`'s diagonal, a PyTree like ``theta``, every entry finite and > 0.
    grad : Callable[[PyTree], PyTree] | None, optional
        A JAX-traceable gradient function of ``theta``, used instead of
        ``jax.grad(loss)``.
    k : int, optional
        How many eigenvalues, ``1 <= k <= D`` (D = number of parameters).
    iters : int | None, optional
        Lanczos iterations (= Hessian-vector products), ``k <= iters <= D``; default
        ``min(D, max(2k + 20, 40))``, exact (up to round-off) when it reaches D.
    key : jax.Array | None, optional
        PRNG key of the random start vector (default ``jax.random.PRNGKey(0)``): same
        key, same numbers.
    return_vectors : bool, optional
        Also return the eigenvectors of :math:`A`.

    Returns
    -------
    Sharpness
        ``values`` (k,), largest first; ``vectors`` (k PyTrees, or ``None``);
        ``residuals`` (k,), Lanczos estimates of :math:`\|Av - \lambda v\|`; ``hvps``.

    Raises
    ------
    ValueError
        ``precond`` of another structure or shape than ``theta``, or not finite and > 0;
        ``k`` outside ``[1, D]``; ``iters`` outside ``[k, D]``; a non-finite ``theta``, or
        one with no number; ``grad`` returning another structure than ``theta``.
    TypeError
        ``loss``/``grad`` not callable; ``theta`` with non-float leaves; ``precond`` not
        numeric; ``return_vectors`` not a bool.

    Examples
    --------
    On :math:`L = 2\theta_1^2 + \tfrac12\theta_2^2` (:math:`H = \operatorname{diag}(4, 1)`)
    with :math:`P = \operatorname{diag}(2, 1/4)`, :math:`P^{-1}H = \operatorname{diag}(2, 4)`:

    >>> import jax.numpy as jnp
    >>> from adamflow import preconditioned_sharpness
    >>> loss = lambda th: 2.0 * th[0] ** 2 + 0.5 * th[1] ** 2
    >>> result = preconditioned_sharpness(loss, jnp.zeros(2), jnp.array([2.0, 0.25]), k=2)
    >>> [round(float(x), 6) for x in result.values], result.hvps
    ([4.0, 2.0], 2)
    """
    grad_fn = resolve_grad(loss, grad)
    flat = _flat_theta(theta)
    dim = int(flat.size)
    p = _check_precond(theta, precond)
    k = check_int("k", k, 1)
    if k > dim:
        raise ValueError(f"k must be <= the number of parameters D={dim}, got {k}")
    if iters is None:
        iters = min(dim, max(2 * k + 20, 40))
    iters = check_int("iters", iters, k)
    if iters > dim:
        raise ValueError(f"iters must be <= the number of parameters D={dim}, got {iters}")
    return_vectors = check_bool("return_vectors", return_vectors)
    key = jax.random.PRNGKey(0) if key is None else key
    scale = jnp.asarray(1.0 / np.sqrt(p), flat.dtype)
    alphas, betas, basis = _lanczos(grad_fn, theta, scale, key, iters)
    alphas_np = np.asarray(alphas, np.float64)
    betas_np = np.asarray(betas, np.float64)
    # The m x m tridiagonal is tiny: a dense symmetric eigensolve (NumPy, no scipy import).
    tridiagonal = np.diag(alphas_np) + np.diag(betas_np[:-1], 1) + np.diag(betas_np[:-1], -1)
    ritz, small = np.linalg.eigh(tridiagonal)
    top = np.arange(iters - 1, iters - 1 - k, -1)  # eigh sorts ascending
    values = ritz[top]
    residuals = np.abs(betas_np[-1] * small[-1, top])
    vectors = None
    if return_vectors:
        _, unravel = ravel_pytree(theta)
        ritz_vectors = np.asarray(basis, np.float64).T @ small[:, top]
        ritz_vectors /= np.linalg.norm(ritz_vectors, axis=0)
        vectors = tuple(unravel(jnp.asarray(ritz_vectors[:, i], flat.dtype)) for i in range(k))
    return Sharpness(values, vectors, residuals, iters)


def adam_preconditioner(opt: KAdam, v: PyTree, step: int) -> PyTree:
    r"""Adam's diagonal preconditioner at a step (theory/eos.md §1):

    .. math:: P = \sqrt{\hat v_n} + \varepsilon, \qquad \hat v_n = v_n / (1 - \beta_2^n),

    from the raw second moment ``v`` after ``step = n`` steps (e.g. ``run_discrete``'s
    ``Trajectory.v[0]`` at a saved index, with ``step = trajectory.steps[index]``). The bias
    correction is `adamflow.rules.bias_correction`, the one the optimizer runs.

    Parameters
    ----------
    opt : KAdam
        An Adam or AdamW spec (a k-Adam spec with ``k = 1``).
    v : PyTree
        Raw second moment, a PyTree of finite arrays >= 0.
    step : int
        The step count n >= 1 at which ``v`` was saved.

    Returns
    -------
    PyTree
        ``P`` shaped like ``v``, every entry > 0 when ``eps > 0``.

    Raises
    ------
    ValueError
        ``opt`` with ``k >= 2``; ``v`` negative or non-finite; ``step`` not an integer >= 1.
    TypeError
        ``opt`` not a spec; ``v`` not numeric.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import adamflow as af
    >>> from adamflow import adam_preconditioner
    >>> p = adam_preconditioner(af.Adam(1e-3, b2=0.75, eps=0.0), jnp.array([0.25, 1.0]), 1)
    >>> [round(float(x), 5) for x in p]  # v̂ = v / (1 - 0.75) = (1, 4)
    [1.0, 2.0]
    """
    if not isinstance(opt, KAdam):
        raise TypeError(f"opt must be an adamflow spec (Adam, AdamW, KAdam), got {opt!r}")
    if opt.k != 1:
        raise ValueError(
            f"opt must be Adam or AdamW (k = 1), got k = {opt.k}: k-Adam's step sees the "
            "product of its levels' preconditioners (theory/eos.md §3)"
        )
    step = check_int("step", step, 1)
    for leaf in jax.tree_util.tree_leaves(v):
        check_array("v", leaf, 0.0)
    b2 = opt.b2s[0]
    correction = rules.bias_correction(step * rules.decay_per_step(b2))
    return jax.tree_util.tree_map(
        lambda x: rules.preconditioner(jnp.asarray(x) / correction, opt.eps), v
    )


def check_sharpness_every(opt: KAdam, every: Any, traceable: bool) -> int | None:
    """``sharpness_every`` of `run_discrete`/`integrate` checked: ``None`` or an integer
    >= 1, for Adam/AdamW (k = 1) with a JAX gradient (the Hessian-vector products are JVPs
    of it)."""
    if every is None:
        return None
    every = check_int("sharpness_every", every, 1)
    if opt.k != 1:
        raise ValueError(
            f"sharpness_every needs Adam or AdamW (k = 1), got k = {opt.k}: k-Adam's step "
            "sees the product of its levels' preconditioners (theory/eos.md §3)"
        )
    if not traceable:
        raise ValueError(
            "sharpness_every needs a JAX-traceable loss/grad: the Hessian-vector products "
            "are JVPs of the gradient"
        )
    return every


def sharpness_at(
    opt: KAdam, grad_fn: Callable[[PyTree], PyTree], theta: PyTree, v: PyTree, v_divisor: Any
) -> float:
    r""":math:`\lambda_{\max}(P^{-1}H)` at ``theta`` with :math:`P = \sqrt{v/d} + \varepsilon`
    from a raw second moment ``v`` and its bias-correction divisor ``d`` (theory/eos.md §1)."""
    precond = jax.tree_util.tree_map(
        lambda x: rules.preconditioner(jnp.asarray(x) / v_divisor, opt.eps), v
    )
    return float(preconditioned_sharpness(None, theta, precond, grad=grad_fn).values[0])


def sharpness_along(
    opt: KAdam,
    grad_fn: Callable[[PyTree], PyTree],
    steps: np.ndarray,
    theta: PyTree,
    v: PyTree,
    v_divisor: np.ndarray,
    every: int,
    progress: bool = False,
) -> np.ndarray:
    r"""The preconditioned sharpness :math:`\lambda_{\max}(P^{-1}H)` at the saved points
    whose step is a positive multiple of ``every`` (theory/eos.md §1), ``nan`` elsewhere:
    :math:`P = \sqrt{v/d} + \varepsilon` from the saved raw second moment ``v`` and its
    bias-correction divisor ``d`` (``v_divisor``, one per saved point: :math:`1-\beta_2^n`
    for the optimizer, :math:`1-e^{-bt}` for a flow). ``theta`` and ``v`` have a leading
    axis of saved points. Points with non-finite parameters (not reached by a failed flow)
    stay ``nan``."""
    from tqdm.auto import tqdm

    steps = np.asarray(steps, dtype=float)
    values = np.full(steps.shape, np.nan)
    chosen = np.flatnonzero((steps > 0) & np.isclose(np.remainder(steps + 0.5, every), 0.5))
    for j in tqdm(chosen, desc="sharpness", unit="point", disable=not progress):
        point = jax.tree_util.tree_map(lambda x: jnp.asarray(x[j]), theta)
        if not all_finite(point):  # a point a failed flow did not reach: nothing to measure
            continue
        v_point = jax.tree_util.tree_map(lambda x: x[j], v)
        values[j] = sharpness_at(opt, grad_fn, point, v_point, v_divisor[j])
    return values


def _crossing(lr: float, b1s: tuple[float, ...], weight_decay: float) -> float:
    # The z = -1 crossing s_{-1} = (2 - ηλ) Π(1 + β₁ᵢ) / (η Π(1 - β₁ᵢ)), written from
    # `adamflow.symbolic._eos.eos(k).results["crossing"]` (tests check they are equal).
    return (
        (2 - lr * weight_decay)
        * math.prod(1 + b for b in b1s)
        / (lr * math.prod(1 - b for b in b1s))
    )


def _first_unit_circle_root(
    lr: float, b1s: tuple[float, ...], weight_decay: float
) -> tuple[float, complex]:
    r"""The smallest :math:`s > 0` at which a root of k-Adam's frozen-preconditioner
    polynomial :math:`p(z) = Q(z) + \eta s K z^k`, :math:`Q(z) = (z - 1 + \eta\lambda)
    \prod_i (z - \beta_{1,i})`, :math:`K = \prod_i (1 - \beta_{1,i})` (theory/eos.md §3)
    reaches the unit circle, and that root.

    A root :math:`z = e^{i\omega}` needs :math:`\eta s = -Q(z) z^{-k}/K` real:
    :math:`\operatorname{Im} Q(z) z^{-k} = \sum_j q_j \sin((j-k)\omega) = \sin\omega\,
    R(\cos\omega)` with Chebyshev polynomials of the second kind,
    :math:`\sin(m\omega) = \sin\omega\, U_{m-1}(\cos\omega)`. So the crossings are
    :math:`z = \pm 1` and the roots of :math:`R` in :math:`(-1, 1)`; :math:`z = 1` has
    :math:`s \le 0`."""
    k = len(b1s)
    unforced = Polynomial([-(1.0 - lr * weight_decay), 1.0])
    for b in b1s:
        unforced = unforced * Polynomial([-b, 1.0])
    gain = math.prod(1 - b for b in b1s)
    x = Polynomial([0.0, 1.0])
    chebyshev_u = [Polynomial([1.0]), 2 * x]  # U_0, U_1, ...
    while len(chebyshev_u) < k + 1:
        chebyshev_u.append(2 * x * chebyshev_u[-1] - chebyshev_u[-2])
    reduced = Polynomial([0.0])
    for j, q in enumerate(unforced.coef):
        m = j - k  # sin(m w) = sign(m) sin(w) U_{|m|-1}(cos w)
        if m != 0:
            reduced = reduced + float(np.sign(m)) * q * chebyshev_u[abs(m) - 1]
    angles = [math.pi]  # z = -1
    angles += [
        math.acos(r.real) for r in reduced.roots() if abs(r.imag) < 1e-12 and -1 < r.real < 1
    ]
    candidates = []
    for omega in angles:
        z = cmath.exp(1j * omega)
        scaled = -(unforced(z) * z ** (-k)).real / gain
        if scaled > 0:
            candidates.append((scaled / lr, z))
    return min(candidates, key=lambda c: c[0])


def eos_threshold(opt: KAdam) -> float:
    r"""The edge-of-stability threshold on the preconditioned sharpness (theory/eos.md §2):

    .. math:: s^* = \frac{(2 - \eta\lambda)(1 + \beta_1)}{(1 - \beta_1)\,\eta}

    (:math:`2(1+\beta_1)/((1-\beta_1)\eta)` for Adam): with its preconditioner frozen and the
    bias correction at 1, the step on a curvature :math:`s` of `preconditioned_sharpness` is
    stable iff :math:`s < s^*`, and at :math:`s^*` a real root leaves through
    :math:`z = -1` (a period-two oscillation). Derived by sympy in
    ``adamflow.symbolic._eos``; this is its formula as plain arithmetic.

    For k-Adam (``k >= 2``; :math:`s = h/\prod_i P_i`, every level frozen) the :math:`z = -1`
    crossing :math:`(2 - \eta\lambda)\prod_i(1 + \beta_{1,i})/(\eta\prod_i(1 - \beta_{1,i}))`
    is returned only when it is the first instability at this spec's factors
    (theory/eos.md §3); usually a complex pair leaves far earlier, and that is an error.

    Parameters
    ----------
    opt : KAdam
        An Adam, AdamW or k-Adam spec with a constant lr.

    Returns
    -------
    float
        :math:`s^*`.

    Raises
    ------
    ValueError
        ``lr`` a schedule (the threshold moves with η; evaluate it per step with
        ``opt.replace(lr=...)``); ``weight_decay`` with :math:`\eta\lambda \ge 2` (the decay
        alone is unstable); ``k >= 2`` where a complex pair leaves the unit circle first.
    TypeError
        ``opt`` not a spec.

    Examples
    --------
    >>> import adamflow as af
    >>> from adamflow import eos_threshold
    >>> round(eos_threshold(af.Adam(0.01, b1=0.9)), 6)  # 2 * 1.9 / (0.1 * 0.01)
    3800.0
    """
    if not isinstance(opt, KAdam):
        raise TypeError(f"opt must be an adamflow spec (Adam, AdamW, KAdam), got {opt!r}")
    if opt.schedule is not None:
        raise ValueError(
            "lr must be a constant for eos_threshold: with a schedule the threshold moves "
            "with each step's lr (evaluate it per step with opt.replace(lr=...))"
        )
    lr, weight_decay = float(opt.lr), float(opt.weight_decay)
    b1s = tuple(float(b) for b in opt.b1s)
    if lr * weight_decay >= 2:
        raise ValueError(
            f"weight_decay must satisfy lr * weight_decay < 2 (the decay alone is unstable), "
            f"got lr * weight_decay = {lr * weight_decay:g}"
        )
    threshold = _crossing(lr, b1s, weight_decay)
    if opt.k == 1:  # theory/eos.md §2: z = -1 is proven to be the first instability
        return threshold
    first, root = _first_unit_circle_root(lr, b1s, weight_decay)
    if abs(root + 1) > 1e-6 and first < threshold * (1 - 1e-9):
        raise ValueError(
            f"for k >= 2 (this spec: k = {opt.k}, b1 = {b1s}) a complex pair of roots "
            f"z = exp(±{abs(cmath.phase(root)):.4g}i) leaves the unit circle first, at "
            f"s = {first:.6g}, below the z = -1 crossing at s = {threshold:.6g}: there is no "
            "period-two edge-of-stability threshold here (theory/eos.md §3)"
        )
    return threshold
