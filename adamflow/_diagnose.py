"""Why a flow failed: the first point where the gradient, the update or the velocity became
non-finite, instead of a solver's "maximum number of steps reached"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ._flows import FlowModel
from ._gradients import first_nonfinite_leaf
from ._optimizers import KAdam
from ._trajectory import PyTree, first_nonfinite_index
from .rules import JAX_OPS

#: Explicit Euler probes between the last finite saved point and the next one.
PROBES = 1000


def explain_failure(
    model: FlowModel,
    opt: KAdam,
    params: Any,
    grad_fn: Callable[[PyTree], PyTree],
    xp: Any,
    ts: np.ndarray,
    ys: Any,
    y0: Any,
) -> str | None:
    """The first non-finite quantity (state, gradient, update u, velocity) along a failed
    path, with its time and step: checked at the last finite saved state (or ``y0``), then at
    `PROBES`
    explicit Euler points up to the next saved time. ``None`` when everything stays finite
    there (the solver failed for another reason)."""

    def gradient(t: Any, y: Any) -> Any:
        return grad_fn(model.theta(y))

    def update(t: Any, y: Any) -> Any:
        return model.update(t, y, params, grad_fn, xp)

    def velocity(t: Any, y: Any) -> Any:
        return model.field(t, y, params, grad_fn, xp)

    def euler(t: Any, y: Any, h: Any) -> Any:
        return jax.tree_util.tree_map(lambda a, b: a + h * b, y, velocity(t, y))

    if xp is JAX_OPS:  # compile each once: up to PROBES evaluations follow
        gradient, update, velocity, euler = (
            jax.jit(f) for f in (gradient, update, velocity, euler)
        )
    checks = (
        ("the gradient", gradient),
        ("the update u = m̂/(sqrt(v̂)+eps)", update),
        ("the flow's velocity", velocity),
    )
    bad = first_nonfinite_index(ys)
    last = len(ts) - 1 if bad is None else max(bad - 1, 0)
    t, t_next = float(ts[last]), float(ts[min(last + 1, len(ts) - 1)])
    # A solve that fails before its first save leaves no saved state: start from y0.
    y = y0 if bad == 0 else jax.tree_util.tree_map(lambda x: x[last], ys)
    h = (t_next - t) / PROBES
    for _ in range(PROBES + 1):
        found = None
        leaf = first_nonfinite_leaf(y)
        if leaf is not None:
            found = ("the flow's state", leaf)
        for name, function in checks:
            if found is None:
                leaf = first_nonfinite_leaf(function(t, y))
                found = None if leaf is None else (name, leaf)
        if found is not None:
            name, leaf = found
            hint = ""
            if name.startswith("the update") and opt.eps == 0:
                hint = "; eps=0 gives 0/0 where a gradient and its second moment vanish"
            return (
                f"{name} became non-finite at t = {t:.6g} (step {t / opt.lr:.6g}), "
                f"first in {leaf}{hint}"
            )
        if h <= 0:
            return None
        y = euler(t, y, h)
        t += h
    return None


def explain_stall(
    model: FlowModel,
    opt: KAdam,
    params: Any,
    grad_fn: Callable[[PyTree], PyTree],
    xp: Any,
    ts: np.ndarray,
    ys: Any,
    num_steps: int,
    max_steps: int,
    t_start: float,
    holds_the_edge: bool = False,
) -> str:
    r"""Where a solve that used all ``max_steps`` solver steps got to, how many solver steps
    each discrete step cost, and why: the preconditioned sharpness
    :math:`\lambda_{\max}(P^{-1}H)` at the last saved state it reached against the edge of
    stability :math:`s^*` (theory/eos.md §1-§2). An explicit solver's step is bounded by
    :math:`\sim 1/\lambda(P^{-1}H)` in t, so past :math:`s^*`, where discrete Adam stops
    sharpening and a leading-order flow does not, a flow costs ever more steps
    (theory/eos.md §5). ``holds_the_edge``: the flow is the eos flow, which is not sent to
    itself. Not measured at t = 0, where v̂ is a limit the saved raw moment cannot give."""
    from ._sharpness import eos_threshold, sharpness_at
    from .rules import bias_correction

    bad = first_nonfinite_index(ys)
    reached = len(ts) - 1 if bad is None else bad - 1
    t_reached = float(ts[reached]) if reached >= 0 else t_start
    covered = (t_reached - t_start) / opt.lr
    text = (
        f"the solver took all max_steps={max_steps} steps and passed step "
        f"{t_reached / opt.lr:.6g} (the last saved point it reached)"
    )
    if covered > 0:
        text += f", {num_steps / covered:.3g} solver steps per discrete step"
    sharpness = None
    # At t = 0 the bias-corrected v̂ is a 0/0 limit the saved raw moment cannot give.
    if reached >= 0 and t_reached > 0 and xp is JAX_OPS:
        try:
            threshold = eos_threshold(opt)
        except (TypeError, ValueError):  # k-Adam factors without a z = -1 edge, schedules
            threshold = None
        if threshold is not None:
            y = jax.tree_util.tree_map(lambda x: x[reached : reached + 1], ys)
            _, v = model.moments(ts[reached : reached + 1], y, params, grad_fn, xp)
            divisor = bias_correction(float(np.asarray(params.b)[0]) * t_reached)
            first = lambda tree: jax.tree_util.tree_map(lambda x: x[0], tree)  # noqa: E731
            at = sharpness_at(opt, grad_fn, first(model.theta(y)), first(v[0]), divisor)
            sharpness = at / threshold
    if sharpness is not None:
        text += (
            f"; there its preconditioned sharpness lambda_max(P^-1 H) is {sharpness:.3g}x "
            "the edge-of-stability threshold eos_threshold(opt)"
        )
        if sharpness <= 1:
            text += (
                " (below it: sharpening is not the cause; if many solver steps per discrete "
                "step, an implicit solver may help)"
            )
        elif holds_the_edge:
            text += " (above it although this flow models the edge: theory/eos.md §5.4)"
        else:
            text += (
                ", where discrete Adam stops sharpening and this flow does not: it is stiff "
                "and departs from the optimizer (order='eos' follows Adam through the edge, "
                "theory/eos.md §5)"
            )
    return text + ". Use a larger max_steps, or throw=False for the path up to there"
