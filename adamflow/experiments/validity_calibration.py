r"""The calibration of the corrected flows' start indicator (theory/corrected_validity.md §2).

A corrected flow (``order="corrected"``/``"corrected2"`` of `adamflow.integrate`) is an
expansion in lr; whether it beats the leading flow is predicted, before its solve, by
`adamflow.StartValidity`: ``rms``, the root mean square over the coordinates of
:math:`\eta|\dot x_i|/(\sqrt{\hat v_i}+\varepsilon)` at the flow's start. `calibration_table`
measures, on four models and four lrs (Adam β₁ 0.9, β₂ 0.999, horizon t = 1), the largest
error along the path of the leading flow (from θ₀) and of both corrected flows started at
step 1 with their refusal lifted (``allow_invalid_start=True``), next to the indicator
there; `fit_gain` fits the gain leading/corrected :math:`\approx C\,\mathrm{rms}^{-p}`
(the library's ``adamflow._corrected.GAIN_SCALE`` and ``GAIN_POWER``, checked against the
committed table by tests/test_corrected.py), and `rule_errors` lists the rows that the
refusal rules (predicted gain below 1; corrected2's ``series_ratio`` ≥ 1) would misjudge.

Run it as ``python -m adamflow.experiments.validity_calibration [--out PATH]`` (default
``figures/validity_calibration.json``, the committed table; about 30 minutes on two
cores).
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import (
    Adam,
    KAdam,
    PyTree,
    Trajectory,
    ValidityWarning,
    integrate,
    problems,
    run_discrete,
)
from .convergence import far_quadratic

#: The calibration's learning rates and horizon (steps = T1/lr), and Adam's factors.
LRS = (0.02, 0.01, 0.005, 0.0025)
T1 = 1.0
B1, B2 = 0.9, 0.999
ORDERS = ("leading", "corrected", "corrected2")
#: Solver settings (diffrax Tsit5). The errors measured are >= 1e-7 except corrected2's on
#: far_quadratic (~1e-9: the tolerance's floor there, so its gain is a lower bound).
RTOL, ATOL = 1e-8, 1e-12
#: The most solver steps per order: corrected2's field costs ~10 leading fields, and where
#: it needs more than this its field is non-finite or blowing up near the start.
MAX_STEPS = {"leading": 20_000, "corrected": 20_000, "corrected2": 6_000}
#: Where the table is written by default.
DEFAULT_OUT = "figures/validity_calibration.json"


# --------------------------------------------------------------------------- models


def tanh_mlp() -> tuple[Callable[[PyTree], Any], PyTree]:
    """A 97-parameter tanh MLP (2-24-1), full-batch MSE on 64 points (issue 21's model;
    tests/test_eos.py uses it too)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(64, 2)))
    y = jnp.sin(2 * x[:, :1]) * jnp.cos(x[:, 1:])
    theta0 = {
        "w1": jnp.asarray(rng.normal(size=(2, 24))),
        "b1": jnp.zeros(24),
        "w2": jnp.asarray(rng.normal(size=(24, 1)) / np.sqrt(24)),
        "b2": jnp.zeros(1),
    }

    def loss(p: PyTree) -> Any:
        hidden = jnp.tanh(x @ p["w1"] + p["b1"])
        return 0.5 * jnp.mean((hidden @ p["w2"] + p["b2"] - y) ** 2)

    return loss, theta0


def tanh_net() -> tuple[Callable[[PyTree], Any], PyTree]:
    """A 2-4-1 tanh network on 16 points with a nearly silent output layer (W2 ~ 1e-3): the
    hidden-layer gradients start near zero (|g| ~ 1e-4) and grow by O(0.1) per unit time as
    W2 moves, so lr·|ġ|/|g| is of order one in the first steps."""
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 2))
    y = jnp.sin(x[:, 0]) * jnp.cos(x[:, 1])

    def loss(p: PyTree) -> Any:
        hidden = jnp.tanh(x @ p["W1"] + p["b1"])
        return 0.5 * jnp.mean((hidden @ p["W2"] + p["b2"] - y) ** 2)

    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    theta0 = {
        "W1": 0.5 * jax.random.normal(k1, (2, 4)),
        "b1": jnp.zeros(4),
        "W2": 1e-3 * jax.random.normal(k2, (4,)),
        "b2": jnp.zeros(()),
    }
    return loss, theta0


def digits_mlp(
    n_samples: int = 256,
    hidden: int = 8,
    seed: int = 0,
    activation: str = "tanh",
    drop_blank_pixels: bool = True,
) -> tuple[Callable[[PyTree], Any], PyTree]:
    """The digits MLP of `adamflow.problems.mlp_digits` (cross-entropy, its He-normal
    initialization from ``seed``) as a full-batch loss on the first ``n_samples`` images.

    Two changes, both because the corrected fields are nan wherever a gradient coordinate
    is exactly 0 (there v̂ = 0 and the jets differentiate :math:`\\sqrt{\\hat v}` at 0: a JVP
    of ``sqrt(max(v, 0))`` at v = 0 is inf·0 = nan), which would make every corrected row
    that failure instead of a measurement of the validity:

    - ``activation="tanh"`` instead of ``"relu"``: with ReLU a hidden unit that is off on
      every image where a pixel is lit gives that weight an exact-0 gradient (77 of the
      432 ``w1`` weights at 256 images, hidden 8, seed 0);
    - ``drop_blank_pixels``: the pixels that are 0 in all those images (10 of 64) are left
      out with their rows of ``w1`` (their gradients are 0 for ever, any activation).
    """
    pixels, classes = problems.load_digits()
    images = pixels[:n_samples] / 16.0
    keep = np.any(images != 0, axis=0) if drop_blank_pixels else np.ones(images.shape[1], bool)
    images = jnp.asarray(images[:, keep])
    labels = jnp.asarray(classes[:n_samples].astype(np.int32))
    theta0 = {
        k: jnp.asarray(v) for k, v in problems.mlp_digits(hidden=hidden, seed=seed).theta0.items()
    }
    theta0["w1"] = theta0["w1"][keep]
    act = {"tanh": jnp.tanh, "relu": jax.nn.relu}[activation]

    def loss(p: PyTree) -> Any:
        logits = act(images @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        log_probs = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))

    return loss, theta0


def far_quadratic_problem() -> tuple[Callable[[PyTree], Any], PyTree]:
    """`adamflow.experiments.convergence.far_quadratic` from θ = 0 (5 coordinates)."""
    return far_quadratic, jnp.zeros(5)


MODELS: dict[str, Callable[[], tuple[Callable[[PyTree], Any], PyTree]]] = {
    "tanh_mlp": tanh_mlp,
    "tanh_net": tanh_net,
    "digits_mlp": digits_mlp,
    "far_quadratic": far_quadratic_problem,
}


# ------------------------------------------------------------------ the table


def flow_error(
    opt: KAdam, order: str, loss: Callable[[PyTree], Any], theta0: PyTree, disc: Trajectory
) -> dict[str, Any]:
    """One flow's largest error along the path against the discrete steps ``disc`` (every
    step of ``opt`` from θ₀; the leading flow from θ₀, a corrected one from the discrete
    state after step 1, refusal lifted), with its `adamflow.StartValidity` (corrected
    orders)."""
    steps = int(disc.steps[-1])
    start = None if order == "leading" else disc.state_at(1)
    began = time.perf_counter()
    with warnings.catch_warnings():  # the refusal is lifted on purpose: its warnings are noise
        warnings.simplefilter("ignore", ValidityWarning)
        flow = integrate(
            opt,
            loss,
            theta0 if start is None else None,
            steps=steps,
            order=order,
            start=start,
            allow_invalid_start=True,
            throw=False,
            rtol=RTOL,
            atol=ATOL,
            max_steps=MAX_STEPS[order],
        )
    seconds = time.perf_counter() - began
    first = int(flow.steps[0])
    error = np.linalg.norm(flow.theta_flat() - disc.theta_flat()[first:], axis=1)
    report = flow.start_validity
    return {
        "ok": bool(flow.success and np.all(np.isfinite(error))),
        "max_error": float(np.max(error)) if flow.success else math.nan,
        "message": flow.message,
        "solver_steps": flow.stats.get("num_steps"),
        "seconds": seconds,
        "start_validity": None if report is None else report._asdict(),
    }


def calibration_row(name: str, lr: float) -> dict[str, Any]:
    """The errors of every order in `ORDERS` for one model of `MODELS` and one lr, the
    start's indicator and the gains leading/corrected (``gain1``) and
    leading/corrected2 (``gain2``; ``nan`` where that flow failed)."""
    loss, theta0 = MODELS[name]()
    opt = Adam(lr, b1=B1, b2=B2)
    disc = run_discrete(opt, loss, theta0, round(T1 / lr))  # one discrete run for every order
    errors = {order: flow_error(opt, order, loss, theta0, disc) for order in ORDERS}
    lead = errors["leading"]["max_error"]
    gains = {}
    for order, key in (("corrected", "gain1"), ("corrected2", "gain2")):
        e = errors[order]["max_error"]
        gains[key] = float(lead / e) if errors[order]["ok"] and e > 0 else math.nan
    start = errors["corrected2"]["start_validity"]
    return {
        "model": name,
        "lr": lr,
        "steps": round(T1 / lr),
        "D": int(ravel_pytree(theta0)[0].size),
        "rms": start["rms"],
        "max": start["max"],
        "fraction_above_one": start["fraction_above_one"],
        "series_ratio": start["series_ratio"],
        "limiting_leaves": start["limiting_leaves"],
        **gains,
        "errors": errors,
    }


def fit_gain(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    r"""The least-squares fit :math:`\log_{10} \mathrm{gain1} = \log_{10} C - p
    \log_{10}\mathrm{rms}` over the rows where the corrected flow ran: ``C``, ``p``, the
    limit :math:`C^{1/p}` where the predicted gain is 1, R² and the residuals' RMS in
    decades."""
    kept = [r for r in rows if np.isfinite(r["gain1"]) and r["gain1"] > 0]
    x = np.log10([r["rms"] for r in kept])
    y = np.log10([r["gain1"] for r in kept])
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    return {
        "C": float(10**intercept),
        "p": float(-slope),
        "rms_limit": float(10 ** (intercept / -slope)),
        "r2": float(1 - np.sum(residual**2) / np.sum((y - y.mean()) ** 2)),
        "rms_decades": float(np.sqrt(np.mean(residual**2))),
        "rows": len(kept),
    }


def rule_errors(rows: Sequence[dict[str, Any]], scale: float, power: float) -> dict[str, list[str]]:
    """The rows each refusal rule misjudges: ``corrected`` -- predicted gain
    ``scale·rms^-power`` ≥ 1 (run) against measured gain1 > 1 (a failed flow counts as
    losing); ``corrected2`` -- ``series_ratio`` < 1 (run) against corrected2 having run."""
    wrong: dict[str, list[str]] = {"corrected": [], "corrected2": []}
    for r in rows:
        label = f"{r['model']} lr={r['lr']:g}"
        runs = scale * r["rms"] ** -power >= 1.0
        if runs != (np.isfinite(r["gain1"]) and r["gain1"] > 1.0):
            wrong["corrected"].append(label)
        ratio = r["series_ratio"]
        runs2 = ratio is not None and math.isfinite(ratio) and ratio < 1.0
        if runs2 != bool(r["errors"]["corrected2"]["ok"]):
            wrong["corrected2"].append(label)
    return wrong


def calibration_table(
    models: Sequence[str] | None = None,
    lrs: Sequence[float] = LRS,
    *,
    path: str | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """`calibration_row` for every model (``models``, default all of `MODELS`) and lr, with
    `fit_gain` and `rule_errors` under that fit. With ``path`` the table is rewritten as
    JSON after each row (an interrupted run keeps its rows)."""
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    for name in models or list(MODELS):
        for lr in lrs:
            rows.append(calibration_row(name, lr))
            r = rows[-1]
            if log is not None:
                log(
                    f"{name:14s} lr={lr:<7g} rms={r['rms']:<9.3g} max={r['max']:<9.3g} "
                    f"series={r['series_ratio']:<9.3g} gain1={r['gain1']:<9.3g} "
                    f"gain2={r['gain2']:.3g}"
                )
            fit = fit_gain(rows) if sum(np.isfinite(x["gain1"]) for x in rows) >= 2 else None
            result = {
                "setup": {"b1": B1, "b2": B2, "T1": T1, "rtol": RTOL, "atol": ATOL},
                "rows": rows,
                "fit": fit,
                "misjudged": None if fit is None else rule_errors(rows, fit["C"], fit["p"]),
            }
            if path is not None:
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(result, f, indent=1, default=float)
    return result


def _number(x: Any, not_finite: str = "fails") -> str:
    """A table cell: 3 significant digits, ``not_finite`` for nan or inf, ``-`` for None."""
    if x is None:
        return "-"
    return not_finite if not math.isfinite(x) else f"{x:.3g}"


def calibration_markdown(result: dict[str, Any]) -> str:
    """The table of `calibration_table`'s ``result`` as Markdown (theory/corrected_validity.md
    §2 shows it): per model and lr the indicator at step 1, the gain the fit predicts, the
    measured gains of both corrected orders (``fails``: the flow did not finish), and
    corrected2's series ratio; then the fit and the rows the refusal rules misjudge."""
    fit = result["fit"]
    lines = [
        "| model | D | lr | rms | largest | above 1 | predicted gain | corrected's gain "
        "| series ratio | corrected2's gain |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        predicted = fit["C"] * r["rms"] ** -fit["p"]
        lines.append(
            f"| {r['model']} | {r['D']} | {r['lr']:g} | {_number(r['rms'])} | "
            f"{_number(r['max'])} | {r['fraction_above_one']:.0%} | {_number(predicted)} | "
            f"{_number(r['gain1'])} | {_number(r['series_ratio'], 'not finite')} | "
            f"{_number(r['gain2'])} |"
        )
    wrong = result["misjudged"]
    judged = "; ".join(
        f"{order}: {', '.join(rows) if rows else 'none'}" for order, rows in wrong.items()
    )
    lines += [
        "",
        f"Fit over the {fit['rows']} rows where the corrected flow finished: "
        f"gain ≈ {fit['C']:.3g}·rms^-{fit['p']:.3g} (R² {fit['r2']:.3f}, residuals "
        f"{fit['rms_decades']:.2f} decades RMS); predicted gain 1 at rms = "
        f"{fit['rms_limit']:.3g}. Rows the refusal rules misjudge: {judged}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m adamflow.experiments.validity_calibration [--out PATH] [--models ...]``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="the JSON table to write")
    parser.add_argument("--models", nargs="*", choices=list(MODELS), help="default: all")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    result = calibration_table(args.models, path=args.out)
    print(json.dumps({"fit": result["fit"], "misjudged": result["misjudged"]}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
