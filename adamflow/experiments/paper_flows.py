"""How close each continuous model follows discrete Adam/AdamW: the paper's model
(`order="paper", convention="paper"`) against our leading and corrected flows, and the
mixed cases that separate the paper's rates from its second-order parameter equation
(theory/adam.md §1, §4; theory/corrected_flow.md §2)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

import adamflow as af

from .convergence import far_quadratic
from .figures import FigureData

#: (order, convention) of each model compared; the paper's own model is ("paper", "paper").
MODELS = (
    ("leading", "exact"),
    ("leading", "paper"),
    ("paper", "paper"),
    ("paper", "exact"),
    ("corrected", "exact"),
)


def paper_flows_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    r"""Largest error :math:`\max_{n\eta \le T} |\theta_n - \theta(n\eta)|` of each model in
    `MODELS` against discrete Adam and AdamW (β₁ 0.85, β₂ 0.98, λ 0.05) on the convergence
    figure's quadratic far from its minimum, T = 0.5, over lr; fitted order p and constant
    C in :math:`\text{error} \approx C\eta^p` (``seed`` is unused: the problem is
    deterministic)."""
    lrs = [0.02, 0.01] if quick else [0.02, 0.01, 0.005, 0.0025, 0.00125]
    specs = {
        "Adam": af.Adam(0.01, b1=0.85, b2=0.98),
        "AdamW": af.AdamW(0.01, b1=0.85, b2=0.98, weight_decay=0.05),
    }
    theta0 = jnp.zeros(5)
    fits: dict[str, dict[str, Any]] = {}
    for name, opt in specs.items():
        fits[name] = {}
        for order, convention in MODELS:
            fit = af.convergence_order(
                opt,
                far_quadratic,
                theta0,
                lrs,
                t1=0.5,
                order=order,
                convention=convention,
                metric="max",
                rtol=1e-10,
                atol=1e-12,
            )
            fits[name][f"{order}/{convention}"] = {
                "lrs": [float(x) for x in fit.lrs],
                "errors": [float(e) for e in fit.errors],
                "order": fit.order,
                "constant": fit.constant,
                "refused": {str(k): v for k, v in fit.refused.items()},
            }
    parameters = {
        "problem": "far_quadratic (5-d coupled quadratic far from its minimum), theta0 = 0",
        "b1": 0.85,
        "b2": 0.98,
        "weight_decay_adamw": 0.05,
        "t1": 0.5,
        "lrs": lrs,
        "models": [f"{o}/{c}" for o, c in MODELS],
        "rtol": 1e-10,
        "atol": 1e-12,
        "quick": quick,
    }
    return FigureData(fits, parameters, {"fits": fits})
