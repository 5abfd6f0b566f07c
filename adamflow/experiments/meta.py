r"""The meta-adaptive effect of normalization, measured (theory/kadam.md §4).

For a scale-invariant group θ (``L(cθ) = L(θ)``) trained with AdamW,
``θ_n = (1-ηλ) θ_{n-1} - η u_n`` gives exactly

    |θ_n|² = (1-ηλ)² |θ_{n-1}|² - 2η(1-ηλ) θ_{n-1}·u_n + η² |u_n|²            (a)

and to first order in η the flow

    d|θ|²/dt = -2λ|θ|² - 2 θ·u + η|u|²                                           (b)

Dropping θ·u (exact for SGD, where θ·g = 0; only approximate for Adam) leaves

    |θ(t)|² ≈ e^{-2λt}|θ_0|² + η ∫_0^t e^{-2λ(t-s)} |u(s)|² ds                   (c)

an exponential moving average of |u|² with rate 2λ. In equilibrium
``|θ|² = η E|u|²/(2λ)`` and the direction moves by about
``sqrt(2ηλ)·|u|/sqrt(E|u|²)`` radians per step: u is normalized a second time.

`record_norm_dynamics` runs a real optimizer and records, per group and per step, the
quantities (a)-(c) need; the other functions turn them into predictions and numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import KAdam, PyTree, cascade_step, init_state, parameter_step
from ..rules import bias_correction, decay_per_step, normalized_update
from ..validation import check_int

tree_map = jax.tree_util.tree_map


class NormDynamics(NamedTuple):
    """Per-group scalars recorded along a run (``N`` steps, groups in ``groups`` order).

    ``norm_sq[n, g] = |θ_n|²`` for ``n = 0..N`` (shape ``(N+1, G)``); for ``n = 1..N``
    (shape ``(N, G)``, row ``n-1``): ``theta_dot_u = θ_{n-1}·u_n``,
    ``update_sq = |u_n|²``, ``normalized_grad_sq = |ĝ_n|²`` with ``ĝ_n = g_n/(sqrt(v̂_n)+ε)``
    (Adam's update without momentum; NaN for k ≥ 2), and ``angle``, the angle between
    ``θ_{n-1}`` and ``θ_n`` in radians.
    """

    groups: tuple[str, ...]
    lr: float
    weight_decay: float
    norm_sq: np.ndarray
    theta_dot_u: np.ndarray
    update_sq: np.ndarray
    normalized_grad_sq: np.ndarray
    angle: np.ndarray

    @property
    def ts(self) -> np.ndarray:
        """Times ``t_n = nη`` of ``norm_sq`` (``n = 0..N``)."""
        return self.lr * np.arange(self.norm_sq.shape[0])


def angle_between(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    r"""Angle between two vectors, :math:`2\,\mathrm{atan2}(|\hat a - \hat b|, |\hat a + \hat b|)`
    (accurate for tiny angles, where ``arccos`` of the cosine is not); the angular step of a
    scale-invariant group (theory/kadam.md §4)."""
    a_hat = a / jnp.linalg.norm(a)
    b_hat = b / jnp.linalg.norm(b)
    return 2.0 * jnp.arctan2(jnp.linalg.norm(a_hat - b_hat), jnp.linalg.norm(a_hat + b_hat))


def record_norm_dynamics(
    opt: KAdam,
    grad: Callable[[PyTree, jax.Array], PyTree],
    theta0: dict[str, jnp.ndarray],
    steps: int,
    *,
    groups: Sequence[str] | None = None,
    seed: int = 0,
) -> NormDynamics:
    """Run ``opt`` (the k-level cascade, theory/kadam.md §1) for ``steps`` steps and record the
    norm dynamics of each group.

    ``grad(theta, key)`` is the (possibly stochastic) gradient, ``key`` a fresh PRNG key per
    step derived from ``seed``; ``theta0`` a dict of arrays whose keys ``groups`` (default:
    all) are the scale-invariant groups.
    """
    if not isinstance(opt, KAdam):
        raise TypeError(f"opt must be an adamflow spec (Adam, AdamW, KAdam), got {opt!r}")
    steps = check_int("steps", steps, 1)
    if not isinstance(theta0, dict):
        raise TypeError(f"theta0 must be a dict of arrays (one per group), got {type(theta0)}")
    names = tuple(theta0) if groups is None else tuple(groups)
    missing = [name for name in names if name not in theta0]
    if missing or not names:
        raise ValueError(f"groups must be keys of theta0 {sorted(theta0)}, got {list(names)}")
    theta0 = {key: jnp.asarray(value, jnp.result_type(float)) for key, value in theta0.items()}
    keys = jax.random.split(jax.random.PRNGKey(seed), steps)
    records = _record_scan(grad, names, opt.k, opt, theta0, keys)
    norm_sq0 = np.array([float(jnp.sum(theta0[name] ** 2)) for name in names])
    norm_sq, theta_dot_u, update_sq, grad_sq, angle = (np.asarray(r) for r in records)
    return NormDynamics(
        groups=names,
        lr=opt.lr,
        weight_decay=opt.weight_decay,
        norm_sq=np.concatenate([norm_sq0[None], norm_sq], axis=0),
        theta_dot_u=theta_dot_u,
        update_sq=update_sq,
        normalized_grad_sq=grad_sq,
        angle=angle,
    )


@jax.jit(static_argnums=(0, 1, 2))
def _record_scan(
    grad: Callable[[PyTree, jax.Array], PyTree],
    names: tuple[str, ...],
    k: int,
    hyper: Any,
    theta0: dict[str, jnp.ndarray],
    keys: jax.Array,
) -> Any:
    def one_step(carry: Any, key: jax.Array) -> Any:
        theta, state = carry
        g = grad(theta, key)
        new_state, u = cascade_step(hyper, state, g)
        new_theta = parameter_step(hyper, theta, u)
        # Adam's normalized gradient before momentum, ĝ = g/(sqrt(v̂)+ε) (k = 1 only).
        if k == 1:
            bc = bias_correction(new_state.count * decay_per_step(hyper.b2s[0]))
            v_hat = tree_map(lambda v: v / bc, new_state.v[0])
            g_hat = tree_map(lambda x, v: normalized_update(x, v, hyper.eps), g, v_hat)
            g_hat_sq = jnp.stack([jnp.sum(g_hat[name] ** 2) for name in names])
        else:
            g_hat_sq = jnp.full(len(names), jnp.nan)
        record = (
            jnp.stack([jnp.sum(new_theta[name] ** 2) for name in names]),
            jnp.stack([jnp.sum(theta[name] * u[name]) for name in names]),
            jnp.stack([jnp.sum(u[name] ** 2) for name in names]),
            g_hat_sq,
            jnp.stack([angle_between(theta[x].ravel(), new_theta[x].ravel()) for x in names]),
        )
        return (new_theta, new_state), record

    _, records = jax.lax.scan(one_step, (theta0, init_state(k, theta0)), keys)
    return records


def norm_identity(
    norm_sq_prev: Any, theta_dot_u: Any, update_sq: Any, lr: float, weight_decay: float
) -> Any:
    r"""The exact one-step identity (a):
    :math:`|\theta_n|^2 = (1-\eta\lambda)^2|\theta_{n-1}|^2 - 2\eta(1-\eta\lambda)\,
    \theta_{n-1}\cdot u_n + \eta^2|u_n|^2` (theory/kadam.md §4.4)."""
    shrink = 1.0 - lr * weight_decay
    return shrink**2 * norm_sq_prev - 2.0 * lr * shrink * theta_dot_u + lr**2 * update_sq


def integrate_norm_flow(
    norm_sq0: Any,
    theta_dot_u: np.ndarray,
    update_sq: np.ndarray,
    lr: float,
    weight_decay: float,
    *,
    drop_theta_dot_u: bool = False,
) -> np.ndarray:
    r"""|θ|² predicted by the first-order flow (b), or by (c) with ``drop_theta_dot_u``
    (theory/kadam.md §4.5-4.6).

    Integrates :math:`\dot N = -2\lambda N + f` with the forcing
    :math:`f_n = -2\,\theta_{n-1}\cdot u_n + \eta|u_n|^2` (without the first term for (c))
    held constant on each step :math:`(t_{n-1}, t_n]`, exactly:
    :math:`N_n = e^{-2\lambda\eta} N_{n-1} + \eta\,\varphi(2\lambda\eta)\, f_n` with
    :math:`\varphi(x) = (1-e^{-x})/x`. For (c) this is
    :math:`e^{-2\lambda t}N_0 + \eta\int_0^t e^{-2\lambda(t-s)}|u(s)|^2 ds`, the EMA of
    :math:`|u|^2` with rate :math:`2\lambda`. Returns :math:`N_0..N_N` along axis 0.
    """
    theta_dot_u = np.asarray(theta_dot_u, dtype=float)
    update_sq = np.asarray(update_sq, dtype=float)
    forcing = lr * update_sq if drop_theta_dot_u else lr * update_sq - 2.0 * theta_dot_u
    x = 2.0 * weight_decay * lr
    decay = np.exp(-x)
    phi = 1.0 if x == 0.0 else -np.expm1(-x) / x
    out = np.empty((forcing.shape[0] + 1,) + forcing.shape[1:])
    out[0] = norm_sq0
    for n in range(forcing.shape[0]):
        out[n + 1] = decay * out[n] + lr * phi * forcing[n]
    return out


def equilibrium_norm_sq(mean_update_sq: Any, lr: float, weight_decay: float) -> Any:
    r"""Equilibrium of (c): :math:`|\theta|^2 = \eta\,E|u|^2/(2\lambda)` (λ > 0;
    theory/kadam.md §4)."""
    if weight_decay <= 0:
        raise ValueError(f"weight_decay must be > 0 for an equilibrium, got {weight_decay!r}")
    return lr * mean_update_sq / (2.0 * weight_decay)


def predicted_angular_step(
    update_sq: Any, mean_update_sq: Any, lr: float, weight_decay: float
) -> Any:
    r"""Equilibrium angular step per iteration,
    :math:`\sqrt{2\eta\lambda}\,|u|/\sqrt{E|u|^2}` (= :math:`\eta|u|/|\theta|` at the
    equilibrium norm, for u ⟂ θ; theory/kadam.md §4)."""
    return np.sqrt(2.0 * lr * weight_decay * np.asarray(update_sq) / np.asarray(mean_update_sq))


def summarize_norm_dynamics(dyn: NormDynamics, *, equilibrium_from: float = 0.5) -> dict:
    """The measured numbers of a recorded run, per group (predictions of theory/kadam.md §4).

    For each group: the largest relative error of (a), (b) and (c) against the measured
    |θ|² (whole run) and their mean relative error over the equilibrium window (the last
    ``1 - equilibrium_from`` of the run); the size of θ·u as
    ``|∫ 2θ·u dt| / ∫ η|u|² dt`` (whole run and window) and the mean cosine between θ and u;
    in the window, measured mean |θ|² over ``η E|u|²/(2λ)``, and the median and mean-ratio of
    the measured angular step over ``sqrt(2ηλ)|u|/sqrt(E|u|²)`` with E over the window.
    """
    if not 0.0 <= equilibrium_from < 1.0:
        raise ValueError(f"equilibrium_from must be in [0, 1), got {equilibrium_from!r}")
    lr, lam = dyn.lr, dyn.weight_decay
    n_steps = dyn.update_sq.shape[0]
    start = int(equilibrium_from * n_steps)
    measured = dyn.norm_sq
    identity = norm_identity(measured[:-1], dyn.theta_dot_u, dyn.update_sq, lr, lam)
    flow = integrate_norm_flow(measured[0], dyn.theta_dot_u, dyn.update_sq, lr, lam)
    ema = integrate_norm_flow(
        measured[0], dyn.theta_dot_u, dyn.update_sq, lr, lam, drop_theta_dot_u=True
    )
    summary: dict[str, Any] = {}
    for g, name in enumerate(dyn.groups):
        rel_identity = np.abs(identity[:, g] / measured[1:, g] - 1.0)
        rel_flow = np.abs(flow[1:, g] / measured[1:, g] - 1.0)
        rel_ema = np.abs(ema[1:, g] / measured[1:, g] - 1.0)
        cross = 2.0 * dyn.theta_dot_u[:, g]
        self_term = lr * dyn.update_sq[:, g]
        cosine = dyn.theta_dot_u[:, g] / np.sqrt(measured[:-1, g] * dyn.update_sq[:, g])
        entry: dict[str, Any] = {
            "max_rel_error_identity": float(rel_identity.max()),
            "max_rel_error_flow": float(rel_flow.max()),
            "max_rel_error_ema": float(rel_ema.max()),
            "window_mean_rel_error_flow": float(rel_flow[start:].mean()),
            "window_mean_rel_error_ema": float(rel_ema[start:].mean()),
            "cross_over_self": float(abs(cross.sum()) / self_term.sum()),
            "cross_over_self_window": float(abs(cross[start:].sum()) / self_term[start:].sum()),
            "signed_cross_over_self": float(cross.sum() / self_term.sum()),
            "mean_cosine_theta_u": float(cosine.mean()),
            "final_norm_sq": float(measured[-1, g]),
        }
        if lam > 0:
            window_u2 = dyn.update_sq[start:, g]
            mean_u2 = float(window_u2.mean())
            predicted = predicted_angular_step(window_u2, mean_u2, lr, lam)
            measured_angle = dyn.angle[start:, g]
            entry.update(
                norm_sq_over_equilibrium=float(
                    measured[start + 1 :, g].mean() / equilibrium_norm_sq(mean_u2, lr, lam)
                ),
                angle_ratio_median=float(np.median(measured_angle / predicted)),
                angle_ratio_of_means=float(measured_angle.mean() / predicted.mean()),
            )
        summary[name] = entry
    return summary
