r"""The experiment behind the figure ``paper_reviewers``: three of the reviewers' open
questions about Adam's stable region (theory/stability.md §1-2).

1. *Is the stable region lr-dependent?* The sparse problem's (β₁, β₂) map at three decades
   of lr (same steps): the fraction of theory-unstable cells (:math:`\beta_2 \le \beta_1^2`)
   measured stable, with and without the ε-cap band (cells whose growth this run cannot
   show, `adamflow.phase`). The exact boundary has no lr in it; what looks like a stable
   region growing as lr falls is the band, i.e. finite runs and the ε cap. The full-gradient
   quadratic (a reviewer's setup) is swept too: it has no silences, so it is measured stable
   everywhere at every lr (only its max|u| moves with lr).
2. *Does gradient noise shrink it?* Three problems with the same objective (the sparse
   problem's quadratic) and the same per-step gradient mean and variance, differing only in
   how the noise comes: the deterministic mean gradient :math:`p\,\nabla L`; Gaussian noise
   :math:`p\,\nabla L + \sqrt{p(1-p)}\,|\nabla L|\,\xi`, :math:`\xi\sim N(0, 1)` (never an
   exact zero); and the sparse problem's Bernoulli mask :math:`\mathrm{Bernoulli}(p)\,\nabla L`
   (exact zeros). Cells flipping verdict are counted between them. Theory: growth needs
   silences, so noise without zeros flips nothing and the zeros alone shrink the region.
3. *Does weight decay move it?* The sparse problem with AdamW,
   λ ∈ {0, 1e-2, 1e-1} (``phase_diagram(..., weight_decay=λ)``). Decoupled decay does not
   enter u's recursion, so the boundary :math:`\beta_2 > \beta_1^2` is unchanged; θ shrinks.

The drawing is `adamflow.plotting.reviewers.draw_paper_reviewers`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import adamflow as af
from adamflow import phase
from adamflow.problems import Problem

from .figures import FigureData

#: The three decades of lr of question 1.
LRS = (1e-1, 1e-2, 1e-3)
#: The decoupled weight decays λ of question 3.
WEIGHT_DECAYS = (0.0, 1e-2, 1e-1)
#: The lr of questions 2 and 3 (the sparse problem's default run).
LR = 1e-2
#: Coordinate count and probability of a gradient per step of the sparse problem.
DIM = 32
P = 0.02
#: The noise models of question 2, in the order drawn.
NOISE_KINDS = ("deterministic", "gaussian", "bernoulli")


def noise_problem(kind: str, *, dim: int = DIM, p: float = P, seed: int = 0) -> Problem:
    r"""The sparse problem's objective (`adamflow.problems.sparse`, condition 1) with the
    gradient noise ``kind``, all three with the same per-step mean :math:`p\,\nabla L` and
    variance :math:`p(1-p)(\nabla L)^2`:

    - ``"deterministic"``: :math:`p\,\nabla L` (no noise, no zeros);
    - ``"gaussian"``: :math:`p\,\nabla L + \sqrt{p(1-p)}\,|\nabla L|\,\xi` (no exact zero);
    - ``"bernoulli"``: `adamflow.problems.sparse` itself (exact zeros between draws).
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"kind must be one of {NOISE_KINDS}, got {kind!r}")
    base = af.problems.sparse(dim=dim, p=p, seed=seed)
    if kind == "bernoulli":
        return base
    full = af.problems.sparse(dim=dim, p=1.0, seed=seed)  # the full gradient ∇L
    spread = float(np.sqrt(p * (1.0 - p)))
    noisy = kind == "gaussian"

    def grad(theta: Any, key: jax.Array) -> Any:
        g = full.grad(theta, key)
        mean = p * g
        if not noisy:
            return mean
        return mean + spread * jnp.abs(g) * jax.random.normal(key, (dim,), dtype=g.dtype)

    def support(key: jax.Array) -> Any:
        return jnp.ones((dim,), dtype=bool)

    return Problem(
        f"sparse_{kind}",
        np.zeros(dim),
        grad,
        base.loss,
        support=support,
        params={"dim": dim, "p": p, "seed": seed, "noise": kind},
    )


class Question(NamedTuple):
    """One panel: ``labels`` names each `adamflow.PhaseDiagram` of ``diagrams``."""

    labels: tuple[str, ...]
    diagrams: tuple[af.PhaseDiagram, ...]


class Reviewers(NamedTuple):
    """What `adamflow.plotting.reviewers.draw_paper_reviewers` draws: the sparse problem at
    each lr (``lr``), the quadratic at each lr (``lr_quadratic``), the three noise models
    (``noise``) and the weight decays (``weight_decay``)."""

    lr: Question
    lr_quadratic: Question
    noise: Question
    weight_decay: Question


def unstable_stats(diagram: af.PhaseDiagram) -> dict[str, Any]:
    """Of the theory-unstable cells: how many, the fraction measured stable (all of them,
    and outside the band), the band's size; and the agreement outside the band."""
    unstable = ~np.asarray(diagram.theory_stable)
    measured = np.asarray(diagram.measured_stable)
    band = np.asarray(diagram.band)
    outside = unstable & ~band & ~np.asarray(diagram.nonfinite)
    return {
        "theory_unstable_cells": int(unstable.sum()),
        "unstable_measured_stable": float(measured[unstable].mean()) if unstable.any() else None,
        "unstable_measured_stable_outside_band": float(measured[outside].mean())
        if outside.any()
        else None,
        "band_cells": int(band.sum()),
        "agreement_outside_band": float(diagram.agreement),
        "max_log10_update": float(np.max(np.log10(np.asarray(diagram.max_update)))),
    }


def flips(a: af.PhaseDiagram, b: af.PhaseDiagram) -> dict[str, int]:
    """Cells whose measured verdict differs between ``a`` and ``b`` (same grid): all of
    them, those in the theory-stable and the theory-unstable region, and those in the
    ε-cap band of either."""
    differ = np.asarray(a.measured_stable) != np.asarray(b.measured_stable)
    stable = np.asarray(a.theory_stable)
    return {
        "flipped": int(differ.sum()),
        "flipped_theory_stable": int((differ & stable).sum()),
        "flipped_theory_unstable": int((differ & ~stable).sum()),
        "flipped_in_band": int((differ & (np.asarray(a.band) | np.asarray(b.band))).sum()),
    }


def paper_reviewers_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    r"""Sweep the three questions (module docstring) over one (β₁, β₂) grid
    (`adamflow.phase.default_grid`: 24 × 24 and 4000 steps; ``quick``: 8 × 8 and 1000
    steps), threshold 100, ε = 1e-8. Returns `Reviewers` as ``data``; ``results`` hold, per
    lr / noise model / λ, `unstable_stats`, and the `flips` between the noise models and
    between the weight decays (no run times)."""
    size, steps = (8, 1000) if quick else (24, 4000)
    b1s, b2s = phase.default_grid(size)
    common: dict[str, Any] = {"steps": steps, "seed": seed, "progress": False}

    def sweep(problem: Problem, lr: float, **extra: Any) -> af.PhaseDiagram:
        return af.phase_diagram(problem, b1s, b2s, lr=lr, **common, **extra)

    sparse = af.problems.sparse(dim=DIM, p=P, seed=seed)
    by_lr = tuple(sweep(sparse, lr) for lr in LRS)
    quadratic = af.problems.quadratic(seed=seed)
    by_lr_quadratic = tuple(sweep(quadratic, lr) for lr in LRS)
    by_noise = tuple(
        by_lr[LRS.index(LR)] if kind == "bernoulli" else sweep(noise_problem(kind, seed=seed), LR)
        for kind in NOISE_KINDS
    )
    by_decay = tuple(
        by_lr[LRS.index(LR)] if lam == 0.0 else sweep(sparse, LR, weight_decay=lam)
        for lam in WEIGHT_DECAYS
    )
    data = Reviewers(
        Question(tuple(f"lr={lr:g}" for lr in LRS), by_lr),
        Question(tuple(f"lr={lr:g}" for lr in LRS), by_lr_quadratic),
        Question(NOISE_KINDS, by_noise),
        Question(tuple(f"λ={lam:g}" for lam in WEIGHT_DECAYS), by_decay),
    )
    decays = {f"{lam:g}": d for lam, d in zip(WEIGHT_DECAYS, by_decay)}
    results: dict[str, Any] = {
        "lr": {f"{lr:g}": unstable_stats(d) for lr, d in zip(LRS, by_lr)},
        "lr_quadratic": {f"{lr:g}": unstable_stats(d) for lr, d in zip(LRS, by_lr_quadratic)},
        "noise": {kind: unstable_stats(d) for kind, d in zip(NOISE_KINDS, by_noise)},
        "noise_flips": {
            "deterministic_vs_gaussian": flips(by_noise[0], by_noise[1]),
            "gaussian_vs_bernoulli": flips(by_noise[1], by_noise[2]),
        },
        "weight_decay": {
            lam: {
                **unstable_stats(d),
                "final_loss_median": float(np.nanmedian(np.asarray(d.final_loss))),
            }
            for lam, d in decays.items()
        },
        "weight_decay_flips": {
            f"0_vs_{lam:g}": flips(by_decay[0], d)
            for lam, d in zip(WEIGHT_DECAYS[1:], by_decay[1:])
        },
    }
    parameters = {
        "b1s": b1s.tolist(),
        "b2s": b2s.tolist(),
        "steps": steps,
        "eps": 1e-8,
        "threshold": 1e2,
        "lrs": list(LRS),
        "lr": LR,
        "weight_decays": list(WEIGHT_DECAYS),
        "sparse": sparse.fingerprint(),
        "quadratic": quadratic.fingerprint(),
        "noise_problems": {k: d.parameters["problem"] for k, d in zip(NOISE_KINDS, by_noise)},
    }
    return FigureData(data, parameters, results)
