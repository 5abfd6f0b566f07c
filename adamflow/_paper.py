r"""The paper's own model of Adam (theory/adam.md §1, §4; its letters in every theory page):
a second-order parameter equation

    θ̇ + (η/2) θ̈ = -(u⁽ᵏ⁾ + λθ),   θ(0) = θ₀,   θ̇(0) = -(u(0) + λθ₀)   (the first discrete step)

with the moments of the leading flow (`order="paper"` of `adamflow.integrate`; the paper's
rates are ``convention="paper"``, a = (1-β₁)/(β₁η)). It keeps the second Taylor term of
θ(t - η) in the parameter update; the extra fast mode θ̇ ∝ e^{-2t/η} decays (the start
above does not excite it at leading order). Reconstructed from the paper's reviews: where
its ε and bias correction sit is not known, so §1's choices are used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from . import rules
from ._flows import (
    FlowModel,
    FlowParams,
    FlowState,
    cascade_rates,
    flow_update,
    initial_state,
    no_validity,
    resumed_state,
    state_moments,
    state_theta,
)
from ._optimizers import KAdam
from ._trajectory import PyTree, TrainingState

tree_map = jax.tree_util.tree_map


class PaperState(NamedTuple):
    """State of the paper's model: parameters, their velocity θ̇, raw moments per level."""

    theta: PyTree
    velocity: PyTree
    m: tuple[PyTree, ...]
    v: tuple[PyTree, ...]


def _start(
    opt: KAdam, params: FlowParams, theta0: PyTree, grad_fn: Callable[[PyTree], PyTree], xp: Any
) -> PaperState:
    base = initial_state(opt.k, theta0, xp.zeros_like)
    u0 = flow_update(0.0, base, params, grad_fn, xp)  # the t -> 0 limit of the update
    velocity = tree_map(
        lambda u, p: rules.parameter_velocity(u, p, params.weight_decay), u0, theta0
    )
    return PaperState(theta0, velocity, base.m, base.v)


def _resume(
    opt: KAdam,
    params: FlowParams,
    state: TrainingState,
    t: Any,
    grad_fn: Callable[[PyTree], PyTree],
    xp: Any,
) -> PaperState:
    """The state at time ``t`` from a discrete `TrainingState`: its θ and moments (as the
    leading flow takes them, `resumed_state`) and the consistent velocity
    θ̇ = -(u(t) + λθ) (the paper's start, moved to t)."""
    base = resumed_state(opt, params, state, t, grad_fn, xp)
    update = flow_update(t, base, params, grad_fn, xp)
    velocity = tree_map(
        lambda u, p: rules.parameter_velocity(u, p, params.weight_decay), update, base.theta
    )
    return PaperState(base.theta, velocity, base.m, base.v)


def paper_field(
    lr: Any,
    t: Any,
    y: PaperState,
    params: FlowParams,
    grad_fn: Callable[[PyTree], PyTree],
    xp: Any,
) -> PaperState:
    r"""The paper's model as a first-order system (theory/adam.md §4):
    :math:`\dot\theta = w`, :math:`\dot w = \tfrac{2}{\eta}(-(u^{(k)} + \lambda\theta) - w)`,
    :math:`\dot m_i = a_i(u^{(i-1)} - m_i)`, :math:`\dot v_i = b_i((u^{(i-1)})^2 - v_i)`."""
    moments = FlowState(y.theta, y.m, y.v)
    update, dms, dvs = cascade_rates(t, moments, grad_fn(y.theta), params, xp)
    acceleration = tree_map(
        lambda u, p, w: (2.0 / lr) * (rules.parameter_velocity(u, p, params.weight_decay) - w),
        update,
        y.theta,
        y.velocity,
    )
    return PaperState(y.velocity, acceleration, dms, dvs)


def paper_model(opt: KAdam, convention: str) -> FlowModel:
    """The paper's second-order model of ``opt`` as a `FlowModel` (``order="paper"``); any
    convention's rates (the paper's own: ``convention="paper"``)."""
    return FlowModel(
        start=_start,
        field=Partial(paper_field, jnp.asarray(opt.lr)),
        update=flow_update,
        theta=state_theta,
        moments=state_moments,
        validity=no_validity,
        resume=_resume,
    )
