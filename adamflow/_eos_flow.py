r"""A flow of Adam/AdamW through the edge of stability (theory/eos.md §5), ``order="eos"``.

Past the edge, discrete Adam's iterate is a slowly moving centre :math:`\bar\theta` plus a
period-two oscillation along the top eigenvectors :math:`w_i` of
:math:`A = P^{-1/2} H P^{-1/2}` (:math:`P = \sqrt{\hat v} + \varepsilon`), in parameters
:math:`\theta = \bar\theta + \sum_i x_i \tilde w_i`, :math:`\tilde w_i = P^{-1/2} w_i`, with
:math:`\langle x_i\rangle = 0`, :math:`\langle x_i^2\rangle = \sigma_i^2`. This model is the
centre's flow. Averaging the gradient and its square over the oscillation to second order
in :math:`x`::

    ḡ  = g + ½ Σ_i σ_i² T_i,        T_i = ∇³L[w̃_i, w̃_i] = ∇_θ(w̃_iᵀ H(θ) w̃_i)  (P held)
    g²̄ = ḡ² + Σ_i σ_i² h_i²,        h_i = H w̃_i                          (to O(σ²))

and the moments average them as the leading flow averages g (theory/adam.md §2)::

    dm/dt = a (ḡ - m),   dv/dt = b (g²̄ - v),   dθ/dt = -(m̂/P + λθ),
    m̂ = m/(1 - e^{-at}),  v̂ = v/(1 - e^{-bt}),  P = sqrt(v̂) + ε.

The variances σ² ≥ 0 hold the tracked eigenvalues :math:`\lambda_i = w_i^\top A w_i` at
the threshold :math:`s^*` = `eos_threshold` (complementarity: :math:`\lambda_i \le s^*`,
:math:`\sigma_i^2 (s^* - \lambda_i) = 0`). With momentum θ̇ does not depend on σ² (only
ṁ does), so the constraint cannot be held by :math:`\dot\lambda_i = 0`; it is imposed on
the velocity the momentum relaxes to, :math:`V^* = -(\bar g/P + \lambda\theta)`::

    λ̇_i* = T_i·V* + (∂λ_i/∂P)·Ṗ = -k (λ_i - s*)  where σ_i² > 0,   ≤ it where σ_i² = 0,

with :math:`\partial\lambda_i/\partial P = -\tilde w_i h_i/P` and
:math:`\dot P = \dot{\hat v}/(2\sqrt{\hat v})`. Since :math:`\dot m̂ = (a/c_a)(\bar g -
\hat m)`, the actual rate follows :math:`\ddot r + (a/c_a)\dot r + (a/c_a)k r = 0` for
:math:`r = \lambda_i - s^*` on the active set: :math:`k = a/4` damps it critically. λ̇* is
linear in σ², :math:`\dot\lambda^* = D - G\sigma^2`, a linear complementarity problem of
size :math:`n` (the number of tracked directions) solved exactly by enumerating the active
sets.

The eigenvectors are state (ordered Rayleigh-quotient dynamics, Sanger's rule): the basis
:math:`W` (D × n) relaxes as
:math:`\dot W = \kappa\,[A Q - Q\,\mathrm{triu}(Q^\top A Q)]/s^* + \kappa (Q - W)`,
:math:`Q` = Gram–Schmidt of :math:`W`, whose fixed points are the top eigenvectors in order;
:math:`\kappa = \tfrac12\sqrt{a s^*}`, half the momentum's frequency at the threshold, so
the tracking adds no stiffness the (θ, m) flow does not already have there.

Cost per field evaluation: ``1 + 2n`` gradients. :math:`h_i` and :math:`T_i` are the first
and second central differences of the gradient along :math:`\tilde w_i` (probe
:math:`\delta = \epsilon_{\text{mach}}^{1/4}` in parameter norm): the mean gradient of the
two-point oscillation :math:`\bar\theta \pm \delta\hat w_i`, no Hessian-vector product.
Before the edge (:math:`\lambda_i` below :math:`s^* - D_i/k`) every σ² is 0 and the flow is
the leading flow.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial

from . import rules
from ._flows import (
    FlowModel,
    FlowParams,
    _bias_corrected,
    flow_update,
    initial_state,
    no_validity,
    resumed_state,
    state_moments,
    state_theta,
)
from ._optimizers import KAdam
from ._sharpness import eos_threshold, preconditioned_sharpness
from ._trajectory import PyTree, TrainingState

#: Directions tracked by default (the top eigenvectors of P^{-1/2} H P^{-1/2}).
DIRECTIONS = 2


def gradients_per_eval(directions: int) -> int:
    """Gradients per evaluation of the field with ``directions`` tracked directions: one,
    and two per direction (its curvature terms are central differences of the gradient;
    theory/eos.md §5.1)."""
    return 1 + 2 * directions


class EosState(NamedTuple):
    """State of the eos flow: parameters, raw moments (one level) and the tracked basis
    ``W`` (raveled parameters × directions)."""

    theta: PyTree
    m: tuple[PyTree]
    v: tuple[PyTree]
    basis: jax.Array


class EdgeTerms(NamedTuple):
    """The oscillation's terms at a state: the variances σ², the tracked eigenvalues λ_i,
    the mean gradient ḡ, the drive of v, and the basis' rate (all raveled)."""

    variance: jax.Array
    eigenvalues: jax.Array
    mean_grad: jax.Array
    v_drive: jax.Array
    basis_rate: jax.Array


def _require_jax(xp: Any) -> None:
    if xp is not rules.JAX_OPS:
        raise TypeError(
            "order='eos' needs a JAX-traceable gradient: its field differentiates the "
            "gradient along the top eigenvectors. Pass a JAX loss or a JAX grad= function."
        )


def _orthonormal(basis: jax.Array) -> jax.Array:
    """Gram–Schmidt of the columns of ``basis`` (QR with a positive diagonal of R)."""
    q, r = jnp.linalg.qr(basis)
    return q * jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0)


def _complementarity(gain: jax.Array, target: jax.Array) -> jax.Array:
    r"""The σ² ≥ 0 with :math:`y = G\sigma^2 - q \ge 0`, :math:`\sigma^2 \odot y = 0`
    (``gain`` = G, ``target`` = q), by enumerating the active sets; the set with the least
    violation of the two inequalities is taken (the solution's is ≤ 0)."""
    n = target.shape[0]
    best, best_violation = jnp.zeros(n, target.dtype), jnp.inf
    for active in itertools.product((0.0, 1.0), repeat=n):
        mask = jnp.asarray(active, target.dtype)
        system = gain * mask[:, None] * mask[None, :] + jnp.diag(1.0 - mask)
        variance = jnp.linalg.solve(system, mask * target)
        slack = gain @ variance - target
        violation = jnp.maximum(jnp.max(-variance), jnp.max(-(1.0 - mask) * slack))
        better = violation < best_violation
        best = jnp.where(better, variance, best)
        best_violation = jnp.where(better, violation, best_violation)
    return jnp.maximum(best, 0.0)


def edge_terms(
    threshold: jax.Array,
    t: Any,
    y: EosState,
    params: FlowParams,
    grad_fn: Callable[[PyTree], PyTree],
) -> EdgeTerms:
    """The oscillation's variances and what they change in the flow at ``y`` (module
    docstring); the field of `eos_field` is built from these."""
    theta, unravel = ravel_pytree(y.theta)
    v = ravel_pytree(y.v[0])[0]

    def gradient(point: jax.Array) -> jax.Array:
        return ravel_pytree(grad_fn(unravel(point)))[0]

    a, b = params.a[0], params.b[0]
    g = gradient(theta)
    v_hat = _bias_corrected(v, g * g, b, t, rules.JAX_OPS)
    root = jnp.sqrt(jnp.maximum(v_hat, 0.0))
    precond = root + params.eps
    # The eigen-directions in parameters, w̃ = P^{-1/2} w, and the probes along them.
    q = _orthonormal(y.basis)
    directions = q / jnp.sqrt(precond)[:, None]
    norms = jnp.linalg.norm(directions, axis=0)
    probe = jnp.finfo(theta.dtype).eps ** 0.25
    steps = probe * (directions / norms).T  # (n, D)
    plus = jax.vmap(gradient)(theta + steps)
    minus = jax.vmap(gradient)(theta - steps)
    hess_dir = ((plus - minus) * (norms / (2 * probe))[:, None]).T  # h_i = H w̃_i, (D, n)
    third = ((plus + minus - 2 * g) * (norms**2 / probe**2)[:, None]).T  # T_i, (D, n)
    a_q = hess_dir / jnp.sqrt(precond)[:, None]  # A q_i
    rayleigh = q.T @ a_q
    eigenvalues = jnp.diagonal(rayleigh)
    rate = 0.5 * jnp.sqrt(a * threshold)
    basis_rate = rate * (a_q - q @ jnp.triu(0.5 * (rayleigh + rayleigh.T))) / threshold
    basis_rate = basis_rate + rate * (q - y.basis)
    # λ̇* = D - G σ² (module docstring), with the P-channel through v̂'s bias-corrected rate.
    started = t > 0
    v_window = jnp.where(started, b / rules.bias_correction(jnp.where(started, b * t, 1.0)), 0.0)
    p_per_v = jnp.where(root > 0, v_window / (2 * jnp.where(root > 0, root, 1.0)), 0.0)
    dlam_dp = -(directions * hess_dir) / precond[:, None]  # ∂λ_i/∂P, (D, n)
    velocity = -(g / precond + params.weight_decay * theta)
    drift = third.T @ velocity + dlam_dp.T @ (p_per_v * (g * g - v_hat))
    gain = 0.5 * third.T @ (third / precond[:, None]) - dlam_dp.T @ (
        p_per_v[:, None] * (hess_dir**2 + g[:, None] * third)
    )
    variance = _complementarity(gain, drift + 0.25 * a * (eigenvalues - threshold))
    mean_grad = g + 0.5 * third @ variance
    v_drive = mean_grad**2 + hess_dir**2 @ variance
    return EdgeTerms(variance, eigenvalues, mean_grad, v_drive, basis_rate)


def eos_field(
    threshold: jax.Array,
    t: Any,
    y: EosState,
    params: FlowParams,
    grad_fn: Callable[[PyTree], PyTree],
    xp: Any = rules.JAX_OPS,
) -> EosState:
    r"""The eos flow (module docstring): :math:`\dot m = a(\bar g - m)`,
    :math:`\dot v = b(\overline{g^2} - v)`, :math:`\dot\theta = -(\hat m/P + \lambda\theta)`,
    and the basis' Rayleigh-quotient dynamics."""
    _require_jax(xp)
    terms = edge_terms(threshold, t, y, params, grad_fn)
    theta, unravel = ravel_pytree(y.theta)
    m, v = ravel_pytree(y.m[0])[0], ravel_pytree(y.v[0])[0]
    a, b = params.a[0], params.b[0]
    m_hat = _bias_corrected(m, terms.mean_grad, a, t, xp)
    v_hat = _bias_corrected(v, terms.v_drive, b, t, xp)
    update = rules.normalized_update(m_hat, v_hat, params.eps, xp)
    return EosState(
        unravel(rules.parameter_velocity(update, theta, params.weight_decay)),
        (unravel(rules.ema_increment(m, terms.mean_grad, a)),),
        (unravel(rules.ema_increment(v, terms.v_drive, b)),),
        terms.basis_rate,
    )


def top_basis(
    theta: PyTree,
    precond: PyTree,
    grad_fn: Callable[[PyTree], PyTree],
    directions: int,
) -> jax.Array:
    """The top ``directions`` eigenvectors of :math:`P^{-1/2} H P^{-1/2}` at ``theta``
    (Lanczos, `preconditioned_sharpness`), raveled as the columns of a (D, n) array."""
    found = preconditioned_sharpness(
        None, theta, precond, grad=grad_fn, k=directions, return_vectors=True
    )
    assert found.vectors is not None
    return jnp.stack([ravel_pytree(vector)[0] for vector in found.vectors], axis=1)


def _start(
    directions: int,
    opt: KAdam,
    params: FlowParams,
    theta0: PyTree,
    grad_fn: Callable[[PyTree], PyTree],
    xp: Any,
) -> EosState:
    """θ₀ and zero moments; the basis from ``P = |g(θ₀)| + ε`` (the t → 0 limit of v̂)."""
    _require_jax(xp)
    base = initial_state(1, theta0, xp.zeros_like)
    precond = jax.tree_util.tree_map(lambda g: jnp.abs(g) + params.eps, grad_fn(theta0))
    basis = top_basis(theta0, precond, grad_fn, directions)
    return EosState(base.theta, base.m, base.v, basis)


def _resume(
    directions: int,
    opt: KAdam,
    params: FlowParams,
    state: TrainingState,
    t: Any,
    grad_fn: Callable[[PyTree], PyTree],
    xp: Any,
) -> EosState:
    """The leading flow's resumed moments (`resumed_state`) and the basis at that state."""
    _require_jax(xp)
    base = resumed_state(opt, params, state, t, grad_fn, xp)
    v_hat = jax.tree_util.tree_map(lambda v: v / rules.bias_correction(params.b[0] * t), base.v[0])
    precond = jax.tree_util.tree_map(lambda x: rules.preconditioner(x, params.eps), v_hat)
    basis = top_basis(base.theta, precond, grad_fn, directions)
    return EosState(base.theta, base.m, base.v, basis)


def eos_model(opt: KAdam, convention: str, directions: int = DIRECTIONS) -> FlowModel:
    """The eos flow of an Adam/AdamW spec (module docstring; theory/eos.md §5) as a
    `FlowModel` (``order="eos"``), tracking the top ``directions`` eigenvectors.

    Raises ``ValueError`` for k-Adam (k ≥ 2: no period-two threshold, theory/eos.md §3), an
    lr schedule (the threshold moves with the lr) and β₁ = 0 or β₂ = 0."""
    if opt.k != 1:
        raise ValueError(f"order='eos' needs Adam or AdamW (k = 1), got k = {opt.k}")
    if opt.schedule is not None:
        raise ValueError("order='eos' needs a constant lr: the threshold moves with the lr")
    if opt.b1s[0] == 0.0 or opt.b2s[0] == 0.0:
        raise ValueError("order='eos' needs b1 and b2 in (0, 1): its state keeps both moments")
    if not 1 <= directions <= 3:
        raise ValueError(f"directions must be 1, 2 or 3, got {directions}")
    threshold = jnp.asarray(eos_threshold(opt))
    return FlowModel(
        start=Partial(_start, directions),
        field=Partial(eos_field, threshold),
        update=flow_update,
        theta=state_theta,
        moments=state_moments,
        validity=no_validity,
        resume=Partial(_resume, directions),
    )
