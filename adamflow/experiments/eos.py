"""Adam through the edge of stability (figure ``eos``): discrete Adam, the leading flow and
the eos flow (``order="eos"`` of `adamflow.integrate`, theory/eos.md §5) on two full-batch
tanh networks.

Measured per run: the preconditioned sharpness against the threshold along the way, the
distance of each flow to the discrete iterate in function space (the network's outputs on
its training inputs) and in parameters, the losses (the discrete one averaged over the
last 1/(1-β₁) steps, where it oscillates) and the cost (field evaluations, gradients per
discrete step). `eos_experiment` is the figure's experiment (``scripts/make_figures.py``;
float64, a few minutes per network on two CPU cores).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import adamflow as af

from .figures import FigureData


class Network(NamedTuple):
    """A full-batch regression network: its loss, its outputs on the training inputs and
    its initial parameters."""

    name: str
    loss: Callable[[Any], Any]
    outputs: Callable[[Any], Any]
    theta0: Any


def tanh_mlp(hidden: tuple[int, ...] = (24,), points: int = 64, seed: int = 0) -> Network:
    """A tanh MLP on 2-d Gaussian inputs fitting sin(2x₁)cos(x₂), half-MSE; with the
    defaults it is the 97-parameter network of tests/test_eos.py (same numbers)."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(points, 2)))
    y = jnp.sin(2 * x[:, :1]) * jnp.cos(x[:, 1:])
    theta0: dict[str, Any] = {}
    width = 2
    for i, units in enumerate(hidden):
        scale = 1.0 if i == 0 else 1.0 / np.sqrt(width)
        theta0[f"w{i + 1}"] = jnp.asarray(rng.normal(size=(width, units)) * scale)
        theta0[f"b{i + 1}"] = jnp.zeros(units)
        width = units
    last = len(hidden) + 1
    theta0[f"w{last}"] = jnp.asarray(rng.normal(size=(width, 1)) / np.sqrt(width))
    theta0[f"b{last}"] = jnp.zeros(1)

    def outputs(p: dict[str, Any]) -> Any:
        h = x
        for i in range(1, last):
            h = jnp.tanh(h @ p[f"w{i}"] + p[f"b{i}"])
        return h @ p[f"w{last}"] + p[f"b{last}"]

    def loss(p: dict[str, Any]) -> Any:
        return 0.5 * jnp.mean((outputs(p) - y) ** 2)

    size = sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(theta0))
    return Network(f"tanh_mlp_{size}", loss, outputs, theta0)


#: The networks of the study: the test's 97-parameter MLP and a deeper 337-parameter one.
NETWORKS: dict[str, Callable[[], Network]] = {
    "tanh_mlp_97": tanh_mlp,
    "tanh_mlp_337": functools.partial(tanh_mlp, hidden=(16, 16), seed=1),
}


def _at(tree: Any, index: Any) -> Any:
    """The saved points ``index`` (an int or an index array) of a saved PyTree."""
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x[index]), tree)


def _rms(differences: np.ndarray) -> list[float]:
    """RMS over the outputs of each saved point, (S, points, 1) -> S values."""
    return np.sqrt(np.mean(differences**2, axis=(1, 2))).tolist()


def study_network(
    network: Network,
    lr: float = 0.02,
    steps: int = 3000,
    every: int = 10,
    rtol: float | None = None,
) -> dict[str, Any]:
    """Discrete Adam (β₁ 0.9, β₂ 0.999), the leading flow and the eos flow on ``network``.

    Returns ``{"network", "params", "threshold", "steps" (the measured steps, every
    ``every``), "onset" (the first measured step where the discrete ratio reaches 0.9),
    "pre_onset" (the last measured step before its ratio first reaches 0.5), and per run
    ("discrete", "leading", "eos"): "ratio" (λ_max(P⁻¹H)/threshold at the measured steps),
    "loss", and for the flows "output_distance" / "param_distance" (RMS over outputs,
    Euclidean in parameters, to the discrete iterate at each measured step),
    "output_distance_centre" / "param_distance_centre" (the same to the discrete run
    averaged over the 1/(1-β₁) steps around it, n-4..n+5: the oscillation averaged out),
    "onset_output_distance" / "onset_param_distance" (at the end, for the flow started from
    the discrete state at the onset instead of step 0), "field_evals", "grads_per_eval",
    "grads_per_step", "seconds"; "discrete" has "loss_window" (its loss averaged over the
    last 1/(1-β₁) steps) and "oscillation" (RMS of θ_n - (θ_{n-1} + θ_{n+1})/2 over the
    last 100 steps, in parameter norm)}``.
    """
    opt = af.Adam(lr)
    threshold = af.eos_threshold(opt)
    measured = np.arange(every, steps + 1, every)
    loss, theta0 = network.loss, network.theta0
    size = sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(theta0))
    batch_loss = jax.jit(jax.vmap(loss))
    batch_outputs = jax.jit(jax.vmap(network.outputs))

    window = int(round(1 / (1 - opt.b1)))
    clock = time.perf_counter()
    run = af.run_discrete(opt, loss, theta0, steps + window // 2, sharpness_every=every)
    seconds = time.perf_counter() - clock
    losses = np.asarray(batch_loss(run.theta))[: steps + 1]
    flat = run.theta_flat()
    around = measured[:, None] + np.arange(1 - window // 2, window // 2 + 1)[None, :]
    centre_params = flat[around].mean(axis=1)
    all_outputs = np.asarray(batch_outputs(run.theta))
    centre_outputs = all_outputs[around].mean(axis=1)
    flat = flat[: steps + 1]
    wiggle = flat[1:-1] - 0.5 * (flat[:-2] + flat[2:])
    assert run.sharpness is not None
    ratio = run.sharpness[measured] / threshold
    result: dict[str, Any] = {
        "network": network.name,
        "params": size,
        "threshold": threshold,
        "steps": measured.tolist(),
        "onset": int(measured[np.argmax(ratio >= 0.9)]),
        "pre_onset": int(measured[max(int(np.argmax(ratio >= 0.5)) - 1, 0)]),
        "discrete": {
            "ratio": ratio.tolist(),
            "loss": losses[measured].tolist(),
            "loss_window": float(losses[-window:].mean()),
            "oscillation": float(np.sqrt(np.mean(np.sum(wiggle[-100:] ** 2, axis=1)))),
            "seconds": seconds,
        },
    }
    reference_outputs = all_outputs[measured]
    onset_state = run.state_at(result["onset"])
    for order in ("leading", "eos"):
        clock = time.perf_counter()
        flow = af.integrate(
            opt,
            loss,
            theta0,
            steps=steps,
            order=order,
            save_steps=np.concatenate([[0], measured]),
            sharpness_every=every,
            rtol=rtol,
        )
        seconds = time.perf_counter() - clock
        assert flow.sharpness is not None
        points = _at(flow.theta, np.arange(1, len(measured) + 1))
        flow_flat = flow.theta_flat()[1:]
        outputs = np.asarray(batch_outputs(points))
        evals, grads = int(flow.stats["field_evals"]), int(flow.stats["grad_evals"])
        onset_flow = af.integrate(
            opt,
            loss,
            None,
            steps=steps,
            order=order,
            start=onset_state,
            rtol=rtol,
            save_steps=[result["onset"], steps],
        )
        from_onset = onset_flow.final
        result[order] = {
            "ratio": (flow.sharpness[1:] / threshold).tolist(),
            "loss": np.asarray(batch_loss(points)).tolist(),
            "output_distance": _rms(outputs - reference_outputs),
            "param_distance": np.linalg.norm(flow_flat - flat[measured], axis=1).tolist(),
            "output_distance_centre": _rms(outputs - centre_outputs),
            "param_distance_centre": np.linalg.norm(flow_flat - centre_params, axis=1).tolist(),
            "onset_output_distance": float(
                _rms(np.asarray(network.outputs(from_onset))[None] - reference_outputs[-1:])[0]
            ),
            "onset_param_distance": float(np.linalg.norm(onset_flow.theta_flat()[-1] - flat[-1])),
            "field_evals": evals,
            "grads_per_eval": grads // evals,
            "grads_per_step": grads / steps,
            "seconds": seconds,
        }
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The targets' numbers from a `study_network` result: the eos flow's ratio range
    after the onset, the end distances and losses, the cost, and the distances before the
    onset (at ``pre_onset``)."""
    steps = np.asarray(result["steps"])
    after = steps >= result["onset"]
    before = int(np.flatnonzero(steps == result["pre_onset"])[0])
    out: dict[str, Any] = {
        "network": result["network"],
        "onset": result["onset"],
        "pre_onset": result["pre_onset"],
        "discrete_ratio_after": [
            float(np.min(np.asarray(result["discrete"]["ratio"])[after])),
            float(np.max(np.asarray(result["discrete"]["ratio"])[after])),
        ],
        "discrete_loss_window": result["discrete"]["loss_window"],
        "discrete_oscillation": result["discrete"]["oscillation"],
    }
    for order in ("leading", "eos"):
        run = result[order]
        ratio = np.asarray(run["ratio"])[after]
        out[order] = {
            "ratio_after": [float(ratio.min()), float(ratio.max())],
            "ratio_end": float(run["ratio"][-1]),
            "output_distance_end": run["output_distance"][-1],
            "param_distance_end": run["param_distance"][-1],
            "output_distance_centre_end": run["output_distance_centre"][-1],
            "param_distance_centre_end": run["param_distance_centre"][-1],
            "output_distance_centre_last10pct": float(
                np.mean(run["output_distance_centre"][-max(len(steps) // 10, 1) :])
            ),
            "onset_output_distance": run["onset_output_distance"],
            "onset_param_distance": run["onset_param_distance"],
            "output_distance_pre_onset": run["output_distance"][before],
            "param_distance_pre_onset": run["param_distance"][before],
            "loss_end": run["loss"][-1],
            "field_evals": run["field_evals"],
            "grads_per_step": run["grads_per_step"],
        }
    return out


#: Full mode: both networks, 3000 steps (the 97-parameter one reaches the edge near step
#: 80); quick: the 97-parameter network for 600 steps.
FULL = {"networks": tuple(NETWORKS), "steps": 3000}
QUICK = {"networks": ("tanh_mlp_97",), "steps": 600}


def _without_times(tree: Any) -> Any:
    """``tree`` without its ``seconds`` entries (committed sidecars hold no run times)."""
    if isinstance(tree, dict):
        return {k: _without_times(v) for k, v in tree.items() if k != "seconds"}
    return tree


def eos_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    """The ``eos`` figure's data: `study_network` on each network of `FULL` (or `QUICK`) at
    lr 0.02, β₁ 0.9, β₂ 0.999, and the `summary` of each as the sidecar's results. The
    networks are seeded by `NETWORKS` (``seed`` is recorded; the runs are deterministic)."""
    config = QUICK if quick else FULL
    runs = {
        name: _without_times(study_network(NETWORKS[name](), steps=config["steps"]))
        for name in config["networks"]
    }
    parameters = {
        "lr": 0.02,
        "b1": 0.9,
        "b2": 0.999,
        "steps": config["steps"],
        "networks": list(config["networks"]),
        "quick": quick,
        "dtype": str(jnp.zeros(()).dtype),
    }
    return FigureData(runs, parameters, {name: summary(run) for name, run in runs.items()})


def fig1_sharpness(steps: int = 4000, every: int = 250, seed: int = 0) -> dict[str, dict[str, Any]]:
    """The preconditioned sharpness over the threshold along the discrete Adam and AdamW
    runs of the paper's Fig. 1 (`adamflow.experiments.paper_fig1`, full size: the 19 168-
    parameter character transformer on its fixed batch), every ``every`` steps: where
    AdamW's flows jump away from the iterates near step 2500 (theory/eos.md §4). ``seed``
    draws the initial parameters and the batch (0: Fig. 1's own)."""
    from jax.flatten_util import ravel_pytree

    from . import paper_fig1
    from .shakespeare import char_data, fixed_batch, load_shakespeare

    config = paper_fig1.FULL
    data = char_data(load_shakespeare(), test_fraction=config.test_fraction)
    model = paper_fig1.char_transformer(
        data.vocab_size,
        config.seq_len,
        width=config.width,
        layers=config.layers,
        heads=config.heads,
    )
    x, y = fixed_batch(data.train, config.batch_size, config.seq_len, seed=seed)
    theta0, unravel = ravel_pytree(model.init(jax.random.PRNGKey(seed)))
    tree_loss = paper_fig1.next_char_loss(model, x, y)

    def loss(flat: Any) -> Any:
        return tree_loss(unravel(flat))

    out = {}
    for name, opt in config.optimizers().items():
        run = af.run_discrete(opt, loss, theta0, steps, save_every=every, sharpness_every=every)
        assert run.sharpness is not None
        out[name] = {
            "steps": run.steps[1:].tolist(),
            "ratio": (run.sharpness[1:] / af.eos_threshold(opt)).tolist(),
        }
    return out


def fig1_sharpness_summary(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per optimizer: the largest ratio and its step, whether it reached the edge (ratio ≥
    1), the smallest ratio after the peak, its step and the collapse factor (peak over
    it); and ``what_it_was``, a sentence saying what Fig. 1's AdamW jump was."""
    out: dict[str, Any] = {}
    for name, run in runs.items():
        steps, ratio = np.asarray(run["steps"]), np.asarray(run["ratio"])
        peak = int(np.argmax(ratio))
        after = peak + int(np.argmin(ratio[peak:]))
        out[name] = {
            "peak_ratio": float(ratio[peak]),
            "peak_step": int(steps[peak]),
            "reached_edge": bool(ratio[peak] >= 1.0),
            "min_after_peak": float(ratio[after]),
            "min_after_peak_step": int(steps[after]),
            "collapse_factor": float(ratio[peak] / ratio[after]),
        }
    lines = []
    for name, found in out.items():
        if found["reached_edge"] and found["collapse_factor"] >= 10:
            lines.append(
                f"{name} reaches the edge of stability (λ_max(P⁻¹H) at "
                f"{found['peak_ratio']:.2f}× the threshold at step {found['peak_step']}) and "
                f"its sharpness then collapses {found['collapse_factor']:.0f}-fold by step "
                f"{found['min_after_peak_step']} (a catapult), where the flows of Fig. 1 "
                "leave the iterates."
            )
        else:
            lines.append(
                f"{name} stays below the edge (largest ratio {found['peak_ratio']:.2f} at "
                f"step {found['peak_step']}): no catapult."
            )
    out["what_it_was"] = " ".join(lines)
    return out


def paper_fig1_sharpness_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    """The figure ``paper_fig1_sharpness``: `fig1_sharpness` over 4000 steps every 250
    (quick: 1000 steps every 125) and `fig1_sharpness_summary`; a few minutes on two CPU
    cores, float64."""
    steps, every = (1000, 125) if quick else (4000, 250)
    with jax.enable_x64(True):
        runs = fig1_sharpness(steps, every, seed)
    parameters = {"steps": steps, "every": every, "quick": quick, "model": "paper_fig1.FULL"}
    return FigureData(runs, parameters, fig1_sharpness_summary(runs))


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    print(json.dumps(fig1_sharpness(), indent=1))
