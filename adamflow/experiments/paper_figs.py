r"""The runs behind the paper's Figs. 3-4 and its appendix's assumptions figure
(arXiv 2411.05746; theory/stability.md, theory/kadam.md).

- ``paper_fig3_generalization``: generalization against the paper's stability quantity
  :math:`C = 2(1-\beta_1)/\beta_1 - (1-\beta_2)/\beta_2` (`adamflow.stability.paper_criterion`)
  over a (β₁, β₂) grid that crosses both C = 0 and the exact boundary β₂ = β₁²;
- ``paper_fig4_kadam``: k-Adam for k = 1..10 under four per-level strategies
  (`adamflow.experiments.paper_training.level_factors`), a small CNN, against tuned AdamW,
  and the reviewers' ablation (2-Adam without level-2 momentum against a normalization
  layer);
- ``paper_assumptions``: the two assumptions of the meta-adaptive derivation
  (theory/kadam.md §4) measured on a normalized network trained with AdamW:
  :math:`\langle W(t), g_W(\tau)\rangle \approx 0` for τ ≤ t, and "every entry of v alike".

Each ``<name>_experiment(*, quick=False, seed=0)`` returns a `FigureData`; the drawings are
in `adamflow.plotting.paper_figs`. ``results`` hold JSON-able numbers (4 significant digits).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as scipy_stats

from .. import AdamW, KAdam, PyTree, cascade_step, init_state, parameter_step, stability
from ..validation import check_int
from .figures import FigureData
from .paper_training import (
    Curves,
    digits_cnn_task,
    level_factors,
    seed_keys,
    strategy_spec,
    train_grid,
)
from .scale_invariant import ScaleInvariantProblem, normalized_mlp
from .training import Task, digits_mlp_task, modular_addition_task


def _round(value: Any, digits: int = 4) -> Any:
    """Floats (also inside dicts and lists) to ``digits`` significant digits (``inf`` and
    ``nan`` kept: the sidecar writes them as strings)."""
    if isinstance(value, dict):
        return {key: _round(v, digits) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v, digits) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(f"{float(value):.{digits}g}") if np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


# --------------------------------------------------------------------------- Fig. 3


def steps_to_threshold(steps: np.ndarray, curve: np.ndarray, threshold: float) -> np.ndarray:
    """First evaluation step at which ``curve`` (last axis: evaluations at ``steps``) is at or
    below ``threshold``; ``inf`` where it never is (NaN entries never count)."""
    below = np.asarray(curve) <= threshold  # NaN compares False
    first = np.argmax(below, axis=-1)
    return np.where(below.any(axis=-1), np.asarray(steps, float)[first], np.inf)


def spearman(x: Any, y: Any) -> float | None:
    """Spearman's rank correlation of ``x`` and ``y`` (``inf`` ranks last, ties share a
    rank); None when fewer than 3 points or either side is constant."""
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if x.size < 3 or np.unique(x).size < 2 or np.unique(y).size < 2:
        return None
    # Rank first (inf is a legitimate "worst" value), then Pearson of the ranks.
    rx, ry = scipy_stats.rankdata(x), scipy_stats.rankdata(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def _fig3_settings(quick: bool) -> dict[str, dict[str, Any]]:
    if quick:
        return {
            "digits": dict(
                one_minus_b1=np.logspace(-2, np.log10(0.5), 4),
                one_minus_b2=np.logspace(-3, np.log10(0.7), 4),
                lr=3e-3,
                weight_decay=1e-2,
                steps=200,
                eval_every=10,
                n_seeds=2,
                threshold=0.3,
            )
        }
    return {
        "digits": dict(
            one_minus_b1=np.logspace(-2, np.log10(0.5), 8),
            one_minus_b2=np.logspace(-3, np.log10(0.7), 8),
            lr=3e-3,
            weight_decay=1e-2,
            steps=800,
            eval_every=10,
            n_seeds=3,
            threshold=0.2,
            other_thresholds=(0.15, 0.3),
        ),
        "modular": dict(
            one_minus_b1=np.logspace(-2, np.log10(0.5), 6),
            one_minus_b2=np.logspace(-3, np.log10(0.7), 6),
            lr=1e-3,
            weight_decay=1.0,
            steps=1500,
            eval_every=25,
            n_seeds=2,
            threshold=1.0,
            other_thresholds=(0.5, 2.0),
        ),
    }


def generalization_grid(
    task: Task,
    one_minus_b1: Any,
    one_minus_b2: Any,
    *,
    lr: float,
    weight_decay: float,
    steps: int,
    eval_every: int,
    n_seeds: int,
    threshold: float,
    other_thresholds: tuple[float, ...] = (),
    seed: int = 0,
) -> dict[str, Any]:
    r"""Train AdamW(lr, β₁, β₂, λ) on ``task`` (no normalization layer) at every grid cell and
    seed, and measure generalization against the paper's C.

    Per cell: C, exact stability β₂ > β₁² (theory/stability.md §1), the final test loss
    (seed mean; ``inf`` where a seed diverged) and the steps to a test loss ≤ ``threshold``
    (seed mean; ``inf`` unless every seed gets there). Spearman correlations of both with C
    over all cells, the C > 0 and C < 0 sides, and the exactly stable cells; on the C > 0
    side also with 1 − β₁ and 1 − β₂ alone (is C more than the momentum?). The steps'
    correlations are also given for ``other_thresholds`` (how much they hang on the choice).
    """
    x = np.asarray(one_minus_b1, float)
    y = np.asarray(one_minus_b2, float)
    b1s, b2s = 1.0 - x, 1.0 - y
    opts = [
        AdamW(lr, b1=float(b1), b2=float(b2), weight_decay=weight_decay) for b1 in b1s for b2 in b2s
    ]
    curves = train_grid(
        task.model(False),
        task.data,
        opts,
        seed_keys(seed, n_seeds),
        steps=steps,
        batch_size=task.batch_size,
        eval_every=eval_every,
        chunk=min(len(opts) * n_seeds, 24),
    )
    shape = (len(b1s), len(b2s))
    b1_grid, b2_grid = np.meshgrid(b1s, b2s, indexing="ij")
    c_grid = np.asarray(stability.paper_criterion(b1_grid, b2_grid), float)
    stable = np.asarray(stability.is_stable(b1_grid, b2_grid), bool)
    final = curves.test_loss[..., -1]  # (cells, seeds)
    final = np.where(np.isfinite(final), final, np.inf)
    final_cell = final.mean(axis=-1).reshape(shape)
    reach = steps_to_threshold(curves.steps, curves.test_loss, threshold)  # (cells, seeds)
    reach_cell = reach.mean(axis=-1).reshape(shape)
    accuracy = curves.test_accuracy[..., -1].mean(axis=-1).reshape(shape)

    def correlations(values: np.ndarray) -> dict[str, Any]:
        c, v = c_grid.ravel(), values.ravel()
        pos, neg, st = c > 0, c < 0, stable.ravel()
        return {
            "all": spearman(c, v),
            "C>0": spearman(c[pos], v[pos]),
            "C<0": spearman(c[neg], v[neg]),
            "exact_stable": spearman(c[st], v[st]),
            "C>0_vs_1-b1": spearman(np.broadcast_to(x[:, None], shape).ravel()[pos], v[pos]),
            "C>0_vs_1-b2": spearman(np.broadcast_to(y[None, :], shape).ravel()[pos], v[pos]),
            "n_cells": {"C>0": int(pos.sum()), "C<0": int(neg.sum()), "all": int(c.size)},
        }

    pos = c_grid > 0
    finite_final = np.isfinite(final_cell)
    sensitivity = {}
    for other in sorted({threshold, *other_thresholds}):
        cells = steps_to_threshold(curves.steps, curves.test_loss, other).mean(axis=-1)
        rho = correlations(cells.reshape(shape))
        sensitivity[f"{other:g}"] = {
            "all": rho["all"],
            "C>0": rho["C>0"],
            "C<0": rho["C<0"],
            "cells_reaching": int(np.isfinite(cells).sum()),
        }
    summary = {
        "spearman_final_test_loss_vs_C": correlations(final_cell),
        "spearman_steps_to_threshold_vs_C": correlations(reach_cell),
        "steps_to_threshold_by_threshold": sensitivity,
        "median_final_test_loss": {
            "C>0": float(np.median(final_cell[pos])),
            "C<0": float(np.median(final_cell[~pos])) if (~pos).any() else None,
        },
        "cells_reaching_threshold": {
            "C>0": int(np.isfinite(reach_cell[pos]).sum()),
            "C<0": int(np.isfinite(reach_cell[~pos]).sum()),
        },
        "cells_diverged": int((~finite_final).sum()),
        "exact_stable_with_C<0": int((stable & ~pos).sum()),
        "best_cell": {
            "b1": float(b1_grid.ravel()[np.argmin(final_cell)]),
            "b2": float(b2_grid.ravel()[np.argmin(final_cell)]),
            "C": float(c_grid.ravel()[np.argmin(final_cell)]),
            "final_test_loss": float(final_cell.min()),
        },
    }
    data = {
        "task": task.name,
        "one_minus_b1": x,
        "one_minus_b2": y,
        "C": c_grid,
        "stable": stable,
        "final_test_loss": final_cell,
        "final_test_loss_runs": final.reshape(*shape, n_seeds),
        "steps_to_threshold": reach_cell,
        "final_test_accuracy": accuracy,
        "threshold": threshold,
        "spearman_loss": summary["spearman_final_test_loss_vs_C"],
        "spearman_steps": summary["spearman_steps_to_threshold_vs_C"],
        "steps": steps,
        "eval_every": eval_every,
        "lr": lr,
        "weight_decay": weight_decay,
        "n_seeds": n_seeds,
    }
    return {"data": data, "summary": summary}


def paper_fig3_generalization_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    r"""The paper's Fig. 3: does a larger C go with faster generalization?

    AdamW at a fixed lr over a (β₁, β₂) grid (log-spaced 1 − β₁ ∈ [0.01, 0.5],
    1 − β₂ ∈ [0.001, 0.7], so the grid crosses C = 0 and β₂ = β₁²), vmapped over cells and
    seeds: final test loss and steps to a test-loss threshold, each against C. Tasks: the
    digits MLP (`digits_mlp_task`, minibatch 64) and, in full mode, the one-layer
    transformer on (a + b) mod 17 (`modular_addition_task`, full batch, λ = 1). ``quick``:
    digits only, a 4 × 4 grid, 200 steps, 2 seeds.

    ``data``: one dict per task (see `generalization_grid`); ``results``: per task, the
    Spearman correlations and counts of `generalization_grid`.
    """
    settings = _fig3_settings(quick)
    factories: dict[str, Callable[[int], Task]] = {
        "digits": digits_mlp_task,
        "modular": modular_addition_task,
    }
    data, results, parameters = [], {}, {}
    for name, setting in settings.items():
        task = factories[name](seed)
        grid = generalization_grid(task, seed=seed, **setting)
        data.append(grid["data"])
        results[task.name] = _round(grid["summary"])
        parameters[name] = {
            **setting,
            "task": task.name,
            "batch_size": task.batch_size,
            "b1s": 1.0 - setting["one_minus_b1"],
            "b2s": 1.0 - setting["one_minus_b2"],
            "eps": 1e-8,
            "optimizer": "AdamW",
        }
    parameters["quick"] = quick
    return FigureData(data, parameters, {"fig3": results})


# --------------------------------------------------------------------------- Fig. 4


def _fig4_settings(quick: bool) -> dict[str, Any]:
    if quick:
        return dict(
            ks=(1, 2, 3),
            lrs=(1e-3, 3e-3),
            fixed_lr=3e-3,
            adamw_decays=(1e-1,),
            steps=100,
            eval_every=50,
            n_seeds=2,
        )
    return dict(
        ks=tuple(range(1, 11)),
        lrs=(3e-4, 1e-3, 3e-3, 1e-2),
        fixed_lr=3e-3,
        adamw_decays=(1e-2, 1e-1),
        steps=600,
        eval_every=100,
        n_seeds=3,
    )


class _ConfigTable:
    """Unique specs with their (label -> index) lookup, so shared runs are trained once."""

    def __init__(self) -> None:
        self.specs: list[KAdam] = []
        self.index: dict[KAdam, int] = {}

    def add(self, spec: KAdam) -> int:
        key = spec.replace(name="KAdam")
        if key not in self.index:
            self.index[key] = len(self.specs)
            self.specs.append(key)
        return self.index[key]


def _beats(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Is the seed mean of ``a`` above that of ``b``, and beyond twice the standard error of
    the difference?"""
    diff = float(a.mean() - b.mean())
    se = float(np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)) if a.size > 1 else 0.0
    return {"difference": diff, "beats": diff > 0, "beyond_2se": diff > 2 * se, "se": se}


def kadam_strategies(
    task: Task,
    *,
    ks: tuple[int, ...],
    lrs: tuple[float, ...],
    fixed_lr: float,
    adamw_decays: tuple[float, ...],
    steps: int,
    eval_every: int,
    n_seeds: int,
    b1: float = 0.9,
    b2: float = 0.999,
    seed: int = 0,
) -> dict[str, Any]:
    r"""k-Adam on ``task`` for every k in ``ks`` under the four strategies of
    `adamflow.experiments.paper_training.level_factors` (no weight decay), tuned AdamW, and
    the normalization ablation; final test accuracies over ``n_seeds`` seeds.

    (a) ``equal``, (b) ``no_momentum``, (c) ``decay`` train at ``fixed_lr``; (d) ``tuned``
    has (a)'s levels and the lr of ``lrs`` with the best seed-mean final test accuracy, per
    k. AdamW: k = 1, best over ``lrs`` × ``adamw_decays``. Ablation (best lr each): 2-Adam
    with level-2 β₁ = 0 (no normalization layer) against Adam and AdamW with a LayerNorm
    after the hidden layer (``task.model(True)``), and Adam without. Selection uses the test
    split (there is no validation split), the same rule for every tuned entry.
    """
    table = _ConfigTable()
    strategy_index: dict[str, dict[int, int]] = {s: {} for s in ("equal", "no_momentum", "decay")}
    tuned_index: dict[int, dict[float, int]] = {}
    for k in ks:
        for name in strategy_index:
            strategy_index[name][k] = table.add(strategy_spec(name, fixed_lr, k, b1=b1, b2=b2))
        tuned_index[k] = {lr: table.add(strategy_spec("tuned", lr, k, b1=b1, b2=b2)) for lr in lrs}
    adamw_index = {
        (lr, wd): table.add(AdamW(lr, b1=b1, b2=b2, weight_decay=wd))
        for lr in lrs
        for wd in adamw_decays
    }
    no_mom2_index = {lr: table.add(strategy_spec("no_momentum", lr, 2, b1=b1, b2=b2)) for lr in lrs}
    keys = seed_keys(seed, n_seeds)
    run: dict[str, Any] = dict(
        steps=steps, batch_size=task.batch_size, eval_every=eval_every, chunk=n_seeds
    )
    plain: Curves = train_grid(task.model(False), task.data, table.specs, keys, **run)
    ln_specs = [KAdam(lr, k=1, b1=b1, b2=b2, weight_decay=0.0) for lr in lrs] + [
        KAdam(lr, k=1, b1=b1, b2=b2, weight_decay=wd) for lr in lrs for wd in adamw_decays
    ]
    normed: Curves = train_grid(task.model(True), task.data, ln_specs, keys, **run)
    acc = plain.test_accuracy[..., -1]  # (configs, seeds)
    acc_ln = normed.test_accuracy[..., -1]

    def best(indices: dict[Any, int], table_acc: np.ndarray) -> tuple[Any, np.ndarray]:
        choice = max(indices, key=lambda key: table_acc[indices[key]].mean())
        return choice, table_acc[indices[choice]]

    per_strategy: dict[str, np.ndarray] = {}
    tuned_lr: dict[int, float] = {}
    for name, idx in strategy_index.items():
        per_strategy[name] = np.stack([acc[idx[k]] for k in ks])  # (K, seeds)
    tuned_rows = []
    for k in ks:
        lr, row = best(tuned_index[k], acc)
        tuned_lr[k] = lr
        tuned_rows.append(row)
    per_strategy["tuned"] = np.stack(tuned_rows)
    (adamw_lr, adamw_wd), adamw_acc = best(adamw_index, acc)
    no_mom2_lr, no_mom2_acc = best(no_mom2_index, acc)
    ln_adam_index = {lr: i for i, lr in enumerate(lrs)}
    ln_adamw_index = {
        (lr, wd): len(lrs) + i
        for i, (lr, wd) in enumerate((lr, wd) for lr in lrs for wd in adamw_decays)
    }
    ln_adam_lr, ln_adam_acc = best(ln_adam_index, acc_ln)
    (ln_adamw_lr, ln_adamw_wd), ln_adamw_acc = best(ln_adamw_index, acc_ln)
    ablation = {
        "2-Adam, level-2 b1=0 (no LN)": (no_mom2_acc, {"lr": no_mom2_lr}),
        "Adam + LN": (ln_adam_acc, {"lr": ln_adam_lr}),
        "AdamW + LN": (ln_adamw_acc, {"lr": ln_adamw_lr, "weight_decay": ln_adamw_wd}),
        "Adam (no LN)": (per_strategy["tuned"][list(ks).index(1)], {"lr": tuned_lr[1]})
        if 1 in ks
        else (np.full(n_seeds, np.nan), {}),
        "AdamW (no LN)": (adamw_acc, {"lr": adamw_lr, "weight_decay": adamw_wd}),
    }

    summary: dict[str, Any] = {
        "final_test_accuracy": {
            name: {
                f"k={k}": {"mean": float(rows[i].mean()), "std": float(rows[i].std())}
                for i, k in enumerate(ks)
            }
            for name, rows in per_strategy.items()
        },
        "tuned_lr": {f"k={k}": lr for k, lr in tuned_lr.items()},
        "adamw_tuned": {
            "mean": float(adamw_acc.mean()),
            "std": float(adamw_acc.std()),
            "lr": adamw_lr,
            "weight_decay": adamw_wd,
        },
        "ablation": {
            name: {"mean": float(a.mean()), "std": float(a.std()), **extra}
            for name, (a, extra) in ablation.items()
        },
    }
    if 1 in ks and 2 in ks:
        i1, i2 = list(ks).index(1), list(ks).index(2)
        k2_vs_k1 = {name: _beats(rows[i2], rows[i1]) for name, rows in per_strategy.items()}
        summary["k2_vs_k1"] = k2_vs_k1
        summary["k2_beats_k1_count"] = {
            "raw": sum(v["beats"] for v in k2_vs_k1.values()),
            "beyond_2se": sum(v["beyond_2se"] for v in k2_vs_k1.values()),
            "of": len(k2_vs_k1),
        }
        beyond = [i for i, k in enumerate(ks) if k > 2]
        if beyond:
            summary["beyond_k2"] = {
                name: {
                    "k2": float(rows[i2].mean()),
                    f"k{ks[-1]}": float(rows[-1].mean()),
                    "worst_k": int(ks[beyond[int(np.argmin(rows[beyond].mean(axis=1)))]]),
                    "worst_drop_from_k2": float(rows[i2].mean() - rows[beyond].mean(axis=1).min()),
                }
                for name, rows in per_strategy.items()
            }
        summary["2adam_nomom_vs_adamw_ln"] = _beats(no_mom2_acc, ln_adamw_acc)
        summary["best_k_vs_adamw"] = {
            name: _beats(rows[int(np.argmax(rows.mean(axis=1)))], adamw_acc)
            for name, rows in per_strategy.items()
        }
    data = {
        "task": task.name,
        "ks": list(ks),
        "strategies": {
            name: {"mean": rows.mean(axis=1), "std": rows.std(axis=1), "runs": rows}
            for name, rows in per_strategy.items()
        },
        "level_factors": {
            name: level_factors(name, max(ks), b1, b2) for name in ("equal", "no_momentum", "decay")
        },
        "tuned_lr": [tuned_lr[k] for k in ks],
        "adamw": {
            "mean": float(adamw_acc.mean()),
            "std": float(adamw_acc.std()),
            "runs": adamw_acc,
        },
        "adamw_lr": adamw_lr,
        "adamw_weight_decay": adamw_wd,
        "ablation": {
            name: {"mean": float(a.mean()), "std": float(a.std()), "runs": a, **extra}
            for name, (a, extra) in ablation.items()
        },
        "fixed_lr": fixed_lr,
        "lrs": list(lrs),
        "b1": b1,
        "b2": b2,
        "steps": steps,
        "n_seeds": n_seeds,
    }
    return {
        "data": data,
        "summary": summary,
        "n_runs": (len(table.specs) + len(ln_specs)) * n_seeds,
    }


def paper_fig4_kadam_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    r"""The paper's Fig. 4: k-Adam, k = 1..10, under four per-level strategies, against tuned
    AdamW; plus the reviewers' ablation (2-Adam with level-2 momentum 0 against a
    normalization layer).

    The paper trains a CNN on CIFAR-10, which cannot be fetched here: this runs the small
    CNN of `adamflow.experiments.paper_training.cnn` (conv 8, conv 16, pool, dense 64) on
    scikit-learn's 8×8 digits (`digits_cnn_task`), minibatches of 64; `kadam_strategies`
    takes any `Task` (`cifar10_cnn_task` where the CIFAR-10 files exist). β₁ = 0.9,
    β₂ = 0.999; mean ± std over seeds. ``quick``: k = 1..3, 2 lrs, 100 steps, 2 seeds.

    ``data``: as `kadam_strategies` returns; ``results``: final test accuracies per k and
    strategy, the tuned lrs, AdamW's, whether k = 2 beats k = 1 per strategy (raw and
    beyond 2 standard errors), the drop beyond k = 2, and the ablation.
    """
    settings = _fig4_settings(quick)
    task = digits_cnn_task(seed)
    out = kadam_strategies(task, seed=seed, **settings)
    parameters = {
        **settings,
        "task": task.name,
        "model": "conv3x3(8)-relu-conv3x3(16)-relu-avgpool2-dense(64)[-LN]-relu-dense(10)",
        "batch_size": task.batch_size,
        "b1": 0.9,
        "b2": 0.999,
        "eps": 1e-8,
        "strategy_weight_decay": 0.0,
        "decay_b2_target": 0.9,
        "selection": "best seed-mean final test accuracy over the sweep",
        "n_runs": out["n_runs"],
        "quick": quick,
    }
    return FigureData(out["data"], parameters, {"fig4": _round(out["summary"])})


# --------------------------------------------------------------------------- assumptions


def record_alignment(
    opt: KAdam,
    grad: Callable[[PyTree, jax.Array], PyTree],
    theta0: dict[str, jnp.ndarray],
    steps: int,
    every: int,
    *,
    lags: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    r"""Run ``opt`` (the cascade of theory/kadam.md §1) for ``steps`` steps on ``grad(theta,
    key)`` and record how each group's weight lines up with its past gradients.

    Snapshots at :math:`t_i = i\cdot` ``every`` (``i = 0..steps/every - 1``): each group's
    :math:`W(t_i) = \theta_{t_i}`, the minibatch gradient :math:`g_W(t_i)` taken there (the
    one the next step uses) and the level-1 second moment v after that step. Every step n:
    :math:`\cos\langle W(n), g_W(n-j)\rangle` for the lags ``j = 1..lags`` (default
    ``every``; NaN for ``j > n``). Returns ``{"steps": (S,), "theta": {group: (S, *shape)},
    "grad": …, "v": …, "lag_cos": {group: (steps, lags)}}``.
    """
    steps = check_int("steps", steps, 1)
    every = check_int("every", every, 1)
    lags = every if lags is None else check_int("lags", lags, 1)
    if steps % every:
        raise ValueError(f"steps ({steps}) must be a multiple of every ({every})")
    names = tuple(theta0)
    n_snap = steps // every
    keys = jax.random.split(jax.random.PRNGKey(seed), steps).reshape(n_snap, every, -1)

    def one_step(carry: Any, key: jax.Array) -> Any:
        theta, state, buffer = carry
        g = grad(theta, key)  # g_W(n-1), at θ_{n-1}
        state, u = cascade_step(opt, state, g)
        theta = parameter_step(opt, theta, u)  # W(n)
        cosines = {}
        for name in names:
            past = jnp.concatenate([g[name].ravel()[None], buffer[name][:-1]])
            buffer = {**buffer, name: past}
            w = theta[name].ravel()
            norms = jnp.linalg.norm(past, axis=1) * jnp.linalg.norm(w)
            cosines[name] = jnp.where(
                norms > 0, past @ w / jnp.where(norms > 0, norms, 1.0), jnp.nan
            )
        return (theta, state, buffer), (g, cosines)

    @jax.jit
    def run(theta0: PyTree, keys: jax.Array) -> Any:
        def block(carry: Any, block_keys: jax.Array) -> Any:
            theta = carry[0]
            carry, (g, first) = one_step(carry, block_keys[0])
            record = (theta, g, carry[1].v[0])
            carry, (_, rest) = jax.lax.scan(one_step, carry, block_keys[1:])
            cosines = {n: jnp.concatenate([first[n][None], rest[n]]) for n in names}
            return carry, (record, cosines)

        buffer = {n: jnp.zeros((lags, theta0[n].size), theta0[n].dtype) for n in names}
        init = (theta0, init_state(opt.k, theta0), buffer)
        return jax.lax.scan(block, init, keys)[1]

    (theta, g, v), cosines = run(theta0, keys)
    to_np = lambda tree: {name: np.asarray(a) for name, a in tree.items()}  # noqa: E731
    return {
        "steps": np.arange(n_snap) * every,
        "theta": to_np(theta),
        "grad": to_np(g),
        "v": to_np(v),
        "lag_cos": {name: np.asarray(c).reshape(steps, lags) for name, c in cosines.items()},
    }


def alignment_matrix(theta: np.ndarray, grad: np.ndarray) -> np.ndarray:
    r"""``cos[i, j]`` = :math:`\cos\langle W(t_i), g(t_j)\rangle` for ``j <= i`` (NaN above the
    diagonal); ``theta`` and ``grad`` have a leading snapshot axis."""
    w = theta.reshape(theta.shape[0], -1)
    g = grad.reshape(grad.shape[0], -1)
    w_hat = w / np.linalg.norm(w, axis=1, keepdims=True)
    g_norm = np.linalg.norm(g, axis=1, keepdims=True)
    g_hat = g / np.where(g_norm > 0, g_norm, 1.0)
    cos = w_hat @ g_hat.T
    return np.where(np.tril(np.ones_like(cos, bool)), cos, np.nan)


def entry_spread(v: np.ndarray) -> dict[str, np.ndarray]:
    r"""Spread of Adam's second moment over a weight's entries at each snapshot (leading
    axis): the coefficient of variation std/mean of :math:`v` and of :math:`\sqrt v` (the
    per-entry scale of the update), and the 90/10 percentile ratio of :math:`\sqrt v`, over
    the entries whose :math:`v` is ever non-zero (inputs that are constant in the data give
    exactly zero gradient); 0, 0, 1 if every entry were scaled alike."""
    flat = v.reshape(v.shape[0], -1)
    live = flat.max(axis=0) > 0
    flat = flat[:, live]
    root = np.sqrt(flat)
    q90, q10 = np.percentile(root, 90, axis=1), np.percentile(root, 10, axis=1)
    return {
        "cv_v": flat.std(axis=1) / flat.mean(axis=1),
        "cv_sqrt_v": root.std(axis=1) / root.mean(axis=1),
        "q90_q10_sqrt_v": q90 / np.where(q10 > 0, q10, np.nan),
        "live_entries": np.asarray(int(live.sum())),
        "entries": np.asarray(live.size),
    }


def _quantiles(values: np.ndarray) -> dict[str, float]:
    """10/50/90% quantiles of |values| and the median of the signed values (NaN dropped)."""
    values = values[np.isfinite(values)]
    if not values.size:
        return {
            "q10": float("nan"),
            "q50": float("nan"),
            "q90": float("nan"),
            "signed_median": float("nan"),
        }
    a = np.abs(values)
    q10, q50, q90 = np.percentile(a, [10, 50, 90])
    return {"q10": q10, "q50": q50, "q90": q90, "signed_median": float(np.median(values))}


def lag_profile(
    lag_cos: np.ndarray, cos: np.ndarray, snap_steps: np.ndarray, edges: np.ndarray
) -> dict[str, np.ndarray]:
    """|cos⟨W(t), g_W(τ)⟩| against the lag t − τ: from every step for the lags ``1..J`` of
    ``lag_cos`` (``(steps, J)``), then from the snapshot pairs of ``cos`` binned by
    ``edges`` (lags at or above ``J + 1``). Returns ``lag`` (bin centres) and the
    `_quantiles` fields as arrays."""
    rows: list[tuple[float, dict[str, float]]] = []
    for j in range(lag_cos.shape[1]):
        rows.append((float(j + 1), _quantiles(lag_cos[:, j])))
    i, k = np.tril_indices(cos.shape[0], k=-1)
    lag = snap_steps[i] - snap_steps[k]
    values = cos[i, k]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (lag >= lo) & (lag < hi)
        if sel.any():
            rows.append((float(np.exp(np.mean(np.log(lag[sel])))), _quantiles(values[sel])))
    out = {"lag": np.array([r[0] for r in rows])}
    for key in ("q10", "q50", "q90", "signed_median"):
        out[key] = np.array([r[1][key] for r in rows])
    return out


def meta_assumptions(
    problem: ScaleInvariantProblem,
    *,
    b1s: tuple[float, ...],
    lr: float,
    weight_decay: float,
    b2: float,
    batch_size: int | None,
    steps: int,
    every: int,
    seed: int = 0,
) -> dict[str, Any]:
    r"""Measure the two assumptions of the meta-adaptive derivation (theory/kadam.md §4) on
    ``problem``'s scale-invariant groups, trained with AdamW(lr, β₁, β₂, λ) for each β₁ of
    ``b1s`` on minibatches of ``batch_size``.

    (i) :math:`\cos\langle W(t), g_W(\tau)\rangle`: every step for the lags 1..``every``
    (`record_alignment`), and over all snapshot pairs τ ≤ t (`alignment_matrix`; τ = t is 0
    by scale invariance). (ii) the spread of v over each weight's entries (`entry_spread`).
    Returns ``{"data": …, "summary": …}`` (the drawing's data and the numbers).
    """
    grad = problem.minibatch_grad(batch_size)
    lags = every  # per-step lags 1..every; longer lags from the snapshots
    # Snapshot lags every..steps-every in log-spaced bins (edges multiples of ``every``).
    lag_edges = np.unique(np.round(np.geomspace(every, steps, 12) / every)) * every
    angular_step = float(np.sqrt(2 * lr * weight_decay))
    runs: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for b1 in b1s:
        opt = AdamW(lr, b1=b1, b2=b2, weight_decay=weight_decay)
        rec = record_alignment(opt, grad, problem.theta0, steps, every, lags=lags, seed=seed)
        per_group, group_summary = {}, {}
        for name in problem.groups:
            cos = alignment_matrix(rec["theta"][name], rec["grad"][name])
            d = int(np.prod(rec["theta"][name].shape[1:]))
            spread = entry_spread(rec["v"][name])
            lower = np.abs(cos[np.tril_indices(cos.shape[0], k=-1)])
            lag_cos = rec["lag_cos"][name][lags:]  # steps with every lag defined
            per_group[name] = {
                "cos": cos,
                "lags": lag_profile(lag_cos, cos, rec["steps"], lag_edges),
                "spread": spread,
                "random_median": 0.6745 / np.sqrt(d),
                "entries": d,
            }
            group_summary[name] = {
                "abs_cos_snapshot_pairs": {
                    "median": float(np.median(lower)),
                    "q90": float(np.percentile(lower, 90)),
                    "max": float(lower.max()),
                },
                "abs_cos_lag_1": _quantiles(lag_cos[:, 0]),
                f"abs_cos_lag_{lags}": _quantiles(lag_cos[:, -1]),
                "abs_cos_same_step_max": float(np.nanmax(np.abs(np.diagonal(cos)))),
                "random_direction_median": float(0.6745 / np.sqrt(d)),
                "cv_v_median": float(np.median(spread["cv_v"][1:])),
                "cv_sqrt_v_median": float(np.median(spread["cv_sqrt_v"][1:])),
                "q90_q10_sqrt_v_median": float(np.nanmedian(spread["q90_q10_sqrt_v"][1:])),
                "live_entries": int(spread["live_entries"]),
                "entries": d,
            }
        runs[f"{b1:g}"] = per_group
        summary[f"b1={b1:g}"] = group_summary
    data = {
        "problem": problem.name,
        "groups": problem.groups,
        "b1s": list(b1s),
        "runs": runs,
        "snap_steps": np.arange(steps // every) * every,
        "lag_edges": lag_edges,
        "angular_step": angular_step,
        "lags": lags,
        "lr": lr,
        "weight_decay": weight_decay,
        "b2": b2,
        "batch_size": batch_size,
        "steps": steps,
        "every": every,
    }
    summary = {"equilibrium_angular_step": angular_step, "snapshot_every": every, **summary}
    return {"data": data, "summary": summary}


def paper_assumptions_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    r"""The paper's appendix: are the two assumptions of the meta-adaptive derivation true
    (theory/kadam.md §4)?

    The normalized MLP of `adamflow.experiments.scale_invariant.normalized_mlp` (``W1``
    followed by a LayerNorm, ``W2`` weight-normalized: both scale-invariant) trained with
    AdamW (lr 0.01, λ = 0.1, β₂ = 0.999, minibatch 64) at β₁ = 0.9, and at β₁ = 0 for
    comparison (`meta_assumptions`). (i) :math:`\cos\langle W(t), g_W(\tau)\rangle` for
    τ ≤ t, beside the median |cos| of random directions, :math:`0.674/\sqrt d`, and the
    equilibrium rotation of W per step, :math:`\sqrt{2\eta\lambda}`. (ii) The spread of v
    over each weight's entries. ``quick``: 600 steps, snapshots every 20 (3000 and 30
    otherwise).

    ``data``: per β₁ and group the cos matrix, the lag profile and the spread curves;
    ``results``: quantiles of |cos| over the snapshot pairs and at lags 1 and ``every``, and
    the median over time of each spread measure.
    """
    settings: dict[str, Any] = dict(
        b1s=(0.9, 0.0), lr=0.01, weight_decay=0.1, b2=0.999, batch_size=64
    )
    settings.update(steps=600, every=20) if quick else settings.update(steps=3000, every=30)
    problem = normalized_mlp(seed)
    out = meta_assumptions(problem, seed=seed, **settings)
    parameters = {
        "problem": problem.name,
        "optimizer": "AdamW",
        **settings,
        "eps": 1e-8,
        "quick": quick,
    }
    return FigureData(out["data"], parameters, {"assumptions": _round(out["summary"])})
