r"""The runs behind the k-Adam figures (theory/kadam.md, theory/stability.md):
``meta_adaptive``, ``kadam_stability``, ``kadam_training`` and ``phase_accuracy``.

Each ``<name>_experiment(*, quick=False, seed=0)`` computes what its figure shows and
returns a `FigureData`; the drawings are in `adamflow.plotting.kadam`. ``results`` hold the
numbers quoted in each figure's sidecar, rounded to 4 significant digits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import Adam, AdamW, KAdam, stability
from .figures import FigureData
from .meta import (
    integrate_norm_flow,
    norm_identity,
    predicted_angular_step,
    record_norm_dynamics,
    summarize_norm_dynamics,
)
from .scale_invariant import normalized_mlp
from .training import (
    compare_kadam,
    digits_mlp_task,
    level_outputs,
    modular_addition_task,
    phase_accuracy,
    switched_off_gradients,
)


def _rounded(summary: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            out[key] = _rounded(value, digits)
        elif isinstance(value, float):
            out[key] = float(f"{value:.{digits}g}")
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------- meta-adaptive


def meta_adaptive_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    r"""|θ|² of a normalized MLP's scale-invariant groups trained with AdamW, against the
    predictions (a)-(d) of theory/kadam.md §4.

    (a) the exact one-step identity
    :math:`|\theta_n|^2 = (1-\eta\lambda)^2|\theta_{n-1}|^2 - 2\eta(1-\eta\lambda)\theta_{n-1}
    \cdot u_n + \eta^2|u_n|^2`, (b) the first-order flow
    :math:`d|\theta|^2/dt = -2\lambda|\theta|^2 - 2\theta\cdot u + \eta|u|^2`, (c) the same
    without θ·u (an EMA of η|u|², rate 2λ), (d) the momentum-aware variant of (c): the EMA of
    η|ĝ|² with ĝ = g/(sqrt(v̂)+ε), Adam's update before momentum (with uncorrelated
    gradients E|u|² = (1-β₁)/(1+β₁) E|ĝ|² and 2θ·u contributes -(2β₁/(1-β₁)) η|u|² on
    average). A sweep over β₁ compares |∫2θ·u dt| / ∫η|u|² dt with 2β₁/(1-β₁). The angular
    step per iteration is compared with :math:`\sqrt{2\eta\lambda}|u|/\sqrt{E|u|^2}` over the
    second half of the run.

    ``data``: times ``ts``, ``groups``, the measured ``norm_sq`` and the predictions
    ``identity``, ``flow``, ``ema_u``, ``ema_g`` (each ``(N+1, G)``), their relative errors
    ``rel_error`` (a dict of ``(N, G)`` arrays), the measured and predicted angular steps
    over the window (``window_ts``, ``angle``, ``angle_pred_u``, ``angle_pred_g``), the
    β₁ sweep ratios and the run's settings.
    """
    lr, weight_decay, b2, batch = 0.01, 0.1, 0.999, 64
    steps = 1500 if quick else 4000
    sweep_b1s = (0.0, 0.9) if quick else (0.0, 0.5, 0.8, 0.9, 0.95)
    main_b1 = 0.9
    problem = normalized_mlp(seed)
    grad = problem.minibatch_grad(batch)

    def run(b1: float) -> Any:
        opt = AdamW(lr, b1=b1, b2=b2, weight_decay=weight_decay)
        return record_norm_dynamics(opt, grad, problem.theta0, steps, seed=seed)

    dyn = run(main_b1)
    summary = summarize_norm_dynamics(dyn)
    sweep = {b1: summarize_norm_dynamics(run(b1)) for b1 in sweep_b1s}

    n0 = dyn.norm_sq[0]
    identity = np.concatenate(
        [
            n0[None],
            norm_identity(dyn.norm_sq[:-1], dyn.theta_dot_u, dyn.update_sq, lr, weight_decay),
        ]
    )
    flow = integrate_norm_flow(n0, dyn.theta_dot_u, dyn.update_sq, lr, weight_decay)
    ema_u = integrate_norm_flow(
        n0, dyn.theta_dot_u, dyn.update_sq, lr, weight_decay, drop_theta_dot_u=True
    )
    ema_g = integrate_norm_flow(
        n0, dyn.theta_dot_u, dyn.normalized_grad_sq, lr, weight_decay, drop_theta_dot_u=True
    )
    predictions = {"identity": identity, "flow": flow, "ema_u": ema_u, "ema_g": ema_g}
    rel_error = {
        name: np.abs(pred[1:] / dyn.norm_sq[1:] - 1.0) for name, pred in predictions.items()
    }
    half = steps // 2
    for g, name in enumerate(dyn.groups):
        entry = summary[name]
        rel_d = rel_error["ema_g"][:, g]
        entry["window_mean_rel_error_ema_ghat"] = float(rel_d[half:].mean())
        entry["max_rel_error_ema_ghat"] = float(rel_d.max())

    window = slice(half, None)
    u2 = dyn.update_sq[window]
    angle_pred_u = np.stack(
        [
            predicted_angular_step(u2[:, g], u2[:, g].mean(), lr, weight_decay)
            for g in range(len(dyn.groups))
        ],
        axis=1,
    )
    angle_pred_g = np.stack(
        [
            predicted_angular_step(
                u2[:, g], dyn.normalized_grad_sq[window, g].mean(), lr, weight_decay
            )
            for g in range(len(dyn.groups))
        ],
        axis=1,
    )
    settings = {
        "lr": lr,
        "weight_decay": weight_decay,
        "b1": main_b1,
        "b2": b2,
        "batch_size": batch,
        "steps": steps,
    }
    data = {
        "problem": problem.name,
        "groups": dyn.groups,
        "ts": dyn.ts,
        "norm_sq": dyn.norm_sq,
        **predictions,
        "rel_error": rel_error,
        "window_ts": dyn.ts[1:][window],
        "angle": dyn.angle[window],
        "angle_pred_u": angle_pred_u,
        "angle_pred_g": angle_pred_g,
        "sweep_b1s": list(sweep_b1s),
        "sweep_cross_over_self": {
            name: [sweep[b][name]["cross_over_self_window"] for b in sweep_b1s]
            for name in dyn.groups
        },
        "sweep_norm_over_equilibrium": {
            name: [sweep[b][name]["norm_sq_over_equilibrium"] for b in sweep_b1s]
            for name in dyn.groups
        },
        **settings,
    }
    parameters = {
        "problem": problem.name,
        **settings,
        "sweep_b1s": list(sweep_b1s),
        "quick": quick,
    }
    results = {
        "main_run": _rounded(summary),
        "b1_sweep": {str(b): _rounded(s) for b, s in sweep.items()},
    }
    return FigureData(data, parameters, results)


# --------------------------------------------------------------------------- per-level bound


def kadam_stability_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    r"""A stable top level bounds k-Adam's update whatever the lower levels do
    (theory/kadam.md §3): :math:`|u^{(k)}_n| \le C(\beta_{1,k}, \beta_{2,k}) =
    (1-\beta_1)/(\sqrt{1-\beta_2}\sqrt{1-\beta_1^2/\beta_2})` (theory/stability.md §1).

    Gradients N(0, scale²) switch off after ``switch_off`` steps. Per step: max over
    coordinates of |u⁽ⁱ⁾_n| per level for 2- and 3-Adam whose lower levels are unstable
    (β₂ < β₁²), and for plain Adam stable and unstable (level 1 is plain Adam with the
    lower (β₁, β₂)). Sweep: the largest |u| over the run against β₂ of level 1, for plain
    Adam and for 2-Adam with a stable top level, beside the ε-capped estimate of
    theory/stability.md §2. ``quick``: 8 sweep points instead of 25.

    ``data``: ``n`` (steps), ``curves`` (name -> max|u| per step), ``bound_top``, the sweep
    (``b2_sweep``, ``sweep_plain``, ``sweep_top``, ``capped``) and the settings.
    """
    steps = 650
    switch_off, dims, scale, b1 = 200, 16, 1e-2, 0.9
    grads = switched_off_gradients(steps, switch_off, dims, scale=scale, seed=seed)
    unstable, top = 0.5, 0.999
    specs = {
        "2-Adam": KAdam(1e-3, k=2, b1=b1, b2=(unstable, top)),
        "3-Adam": KAdam(1e-3, k=3, b1=b1, b2=(unstable, unstable, top)),
    }
    outputs = {name: level_outputs(opt, grads) for name, opt in specs.items()}
    stable_adam = level_outputs(Adam(1e-3, b1=b1, b2=top), grads)[0]
    bound_top = float(stability.update_bound(b1, top))
    b2_sweep = np.linspace(0.3, 0.999, 8 if quick else 25)
    sweep_plain, sweep_top = [], []
    for b2_1 in b2_sweep:
        u = level_outputs(KAdam(1e-3, k=2, b1=b1, b2=(float(b2_1), top)), grads)
        sweep_plain.append(float(np.abs(u[0]).max()))
        sweep_top.append(float(np.abs(u[1]).max()))
    capped = stability.eps_capped_amplification(b1, b2_sweep, scale, 1e-8)

    def per_step(u: np.ndarray) -> np.ndarray:
        return np.abs(u).max(axis=1)

    curves = {
        "plain_adam_unstable": per_step(outputs["2-Adam"][0]),
        "2-Adam_top": per_step(outputs["2-Adam"][1]),
        "3-Adam_level2": per_step(outputs["3-Adam"][1]),
        "3-Adam_top": per_step(outputs["3-Adam"][2]),
        "plain_adam_stable": per_step(stable_adam),
    }
    data = {
        "n": np.arange(1, steps + 1),
        "curves": curves,
        "bound_top": bound_top,
        "b2_sweep": b2_sweep,
        "sweep_plain": np.asarray(sweep_plain),
        "sweep_top": np.asarray(sweep_top),
        "capped": np.asarray(capped),
        "b1": b1,
        "b2_unstable": unstable,
        "b2_top": top,
        "switch_off": switch_off,
        "dims": dims,
        "grad_scale": scale,
    }
    results = {
        "bound_top": bound_top,
        "max_update": {
            "plain_adam_unstable": float(np.abs(outputs["2-Adam"][0]).max()),
            "2-Adam_top": float(np.abs(outputs["2-Adam"][1]).max()),
            "3-Adam_level2": float(np.abs(outputs["3-Adam"][1]).max()),
            "3-Adam_top": float(np.abs(outputs["3-Adam"][2]).max()),
            "plain_adam_stable": float(np.abs(stable_adam).max()),
        },
        "sweep_max_top_over_bound": float(max(sweep_top) / bound_top),
        "sweep_max_plain": float(max(sweep_plain)),
    }
    parameters = {
        "steps": steps,
        "switch_off": switch_off,
        "dims": dims,
        "grad_scale": scale,
        "b1": b1,
        "b2_unstable": unstable,
        "b2_top": top,
        "eps": 1e-8,
        "b2_sweep": b2_sweep,
        "quick": quick,
    }
    return FigureData(data, parameters, _rounded(results))


# --------------------------------------------------------------------------- training


def _training_settings(quick: bool) -> dict[str, dict[str, Any]]:
    if quick:  # one compile per (task, k, normalize); the transformer's take ~10 s each
        return {
            "digits": dict(
                ks=(1, 2),
                normalize=(False, True),
                lrs=(3e-3,),
                b1=0.9,
                b2=0.999,
                weight_decay=1e-2,
                steps=100,
                eval_every=50,
                n_seeds=2,
            ),
        }
    return {
        "digits": dict(
            ks=(1, 2, 3),
            normalize=(False, True),
            lrs=(1e-3, 3e-3, 1e-2),
            b1=0.9,
            b2=0.999,
            weight_decay=1e-2,
            steps=600,
            eval_every=50,
            n_seeds=3,
        ),
        "modular": dict(
            ks=(1, 2, 3),
            normalize=(False, True),
            lrs=(3e-4, 1e-3),
            b1=0.9,
            b2=0.98,
            weight_decay=1.0,
            steps=2000,
            eval_every=100,
            n_seeds=3,
        ),
    }


def kadam_training_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    r"""Final test accuracy (mean ± std over seeds) of k-Adam with decoupled decay,
    :math:`\theta_n = \theta_{n-1} - \eta(u^{(k)}_n + \lambda\theta_{n-1})` (theory/kadam.md
    §1), for k = 1, 2, 3 with and without a LayerNorm, on an MLP on digits and a one-layer
    transformer on modular addition, at several learning rates; learning curves at each
    configuration's best lr. ``quick`` trains only the MLP (k = 1, 2), briefly.

    ``data``: one dict per task with ``task``, ``ks``, ``normalize``, ``lrs``, ``steps``
    (evaluation steps), the final accuracy's ``mean`` and ``std`` over seeds (shape
    ``(k, normalize, lr)``), ``best`` (best lr index per (k, normalize)), the best lr's curve
    mean and std over seeds (``curve_mean``, ``curve_std``: ``(k, normalize, E)``),
    ``n_seeds`` and the task's ``b1``, ``b2``, ``weight_decay``.
    """
    settings = _training_settings(quick)
    factories = {"digits": digits_mlp_task, "modular": modular_addition_task}
    tasks = {name: factories[name](seed) for name in settings}
    data: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for name, task in tasks.items():
        res = compare_kadam(task, seed=seed, **settings[name])
        final = res.test_accuracy[..., -1]  # (k, norm, lr, seed)
        mean, std = final.mean(axis=-1), final.std(axis=-1)
        best = np.argmax(mean, axis=-1)  # (k, norm)
        curves = np.take_along_axis(res.test_accuracy, best[:, :, None, None, None], axis=2)
        curves = curves[:, :, 0]  # (k, norm, seed, E)
        task_summary: dict[str, Any] = {}
        for i, k in enumerate(res.ks):
            for j, normalize in enumerate(res.normalize):
                label = f"k={k}, {'LN' if normalize else 'no norm'}"
                task_summary[label] = {
                    f"lr={lr:g}": f"{mean[i, j, q]:.3f} ± {std[i, j, q]:.3f}"
                    for q, lr in enumerate(res.lrs)
                }
        summary[res.task] = task_summary
        data.append(
            {
                "task": res.task,
                "ks": res.ks,
                "normalize": res.normalize,
                "lrs": res.lrs,
                "steps": res.steps,
                "mean": mean,
                "std": std,
                "best": best,
                "curve_mean": curves.mean(axis=2),
                "curve_std": curves.std(axis=2),
                "n_seeds": final.shape[-1],
                "b1": settings[name]["b1"],
                "b2": settings[name]["b2"],
                "weight_decay": settings[name]["weight_decay"],
            }
        )
    parameters = {name: {**settings[name], "task": tasks[name].name} for name in tasks}
    return FigureData(data, parameters, {"final_test_accuracy": summary})


def phase_accuracy_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    r"""Final test accuracy of AdamW on the digits MLP over a (β₁, β₂) grid, beside the
    stable region β₂ > β₁² and the growth rate :math:`\max(0, \ln(\beta_1/\sqrt{\beta_2}))`
    per step of the update bound (theory/stability.md §1-2). ``quick``: a 4 × 4 grid, one
    seed, 200 steps (9 × 9, 3 seeds, 600 steps otherwise).

    ``data``: ``one_minus_b1``, ``one_minus_b2`` (grid axes), the accuracy ``mean`` and
    ``std`` over seeds (shape ``(b1, b2)``), ``stable`` and ``growth`` per cell, and the
    settings; ``results``: every run's ``test_accuracy`` and summary means over the stable
    and unstable cells.
    """
    if quick:
        one_minus_b1, one_minus_b2, n_seeds, steps = (
            np.logspace(-2, 0, 4),
            np.logspace(-3, np.log10(0.7), 4),
            1,
            200,
        )
    else:
        one_minus_b1, one_minus_b2, n_seeds, steps = (
            np.logspace(-2, 0, 9),
            np.logspace(-3, np.log10(0.7), 9),
            3,
            600,
        )
    b1s, b2s = 1.0 - one_minus_b1, 1.0 - one_minus_b2
    lr, weight_decay = 3e-3, 1e-2
    task = digits_mlp_task(seed)
    grid = phase_accuracy(
        task,
        b1s,
        b2s,
        lr=lr,
        weight_decay=weight_decay,
        steps=steps,
        n_seeds=n_seeds,
        seed=seed,
    )
    acc = grid.test_accuracy.mean(axis=-1)  # (b1, b2)
    acc_std = grid.test_accuracy.std(axis=-1)
    stable = np.asarray(stability.is_stable(b1s[:, None], b2s[None, :]))
    growth = np.asarray(stability.growth_rate(b1s[:, None], b2s[None, :]))

    order = np.argsort(acc[~stable])[:3]
    worst = [
        {"b1": float(b), "b2": float(g), "accuracy": float(a)}
        for b, g, a in zip(
            np.broadcast_to(b1s[:, None], acc.shape)[~stable][order],
            np.broadcast_to(b2s[None, :], acc.shape)[~stable][order],
            acc[~stable][order],
        )
    ]
    strongly = growth > 0.1
    summary = {
        "mean_accuracy_stable": float(acc[stable].mean()),
        "mean_accuracy_unstable": float(acc[~stable].mean()) if (~stable).any() else None,
        "mean_accuracy_unstable_growth_gt_0.1": (
            float(acc[strongly].mean()) if strongly.any() else None
        ),
        "mean_accuracy_unstable_growth_le_0.1": (
            float(acc[~stable & ~strongly].mean()) if (~stable & ~strongly).any() else None
        ),
        "min_accuracy_stable": float(acc[stable].min()),
        "worst_unstable_cells": worst,
        "cells": {"stable": int(stable.sum()), "unstable": int((~stable).sum())},
    }
    data = {
        "one_minus_b1": one_minus_b1,
        "one_minus_b2": one_minus_b2,
        "mean": acc,
        "std": acc_std,
        "stable": stable,
        "growth": growth,
        "n_seeds": n_seeds,
        "task": task.name,
        "lr": lr,
        "weight_decay": weight_decay,
        "steps": steps,
    }
    parameters = {
        "b1s": b1s,
        "b2s": b2s,
        "lr": lr,
        "weight_decay": weight_decay,
        "steps": steps,
        "n_seeds": n_seeds,
        "task": task.name,
        "batch_size": 64,
        "quick": quick,
    }
    results = {"test_accuracy": grid.test_accuracy, **_rounded(summary)}
    return FigureData(data, parameters, results)
