"""The cost of `preconditioned_sharpness` (theory/eos.md §1): seconds and Hessian-vector
products per measurement on a ~100- and a ~10k-parameter tanh MLP, k = 1 and k = 3.

Each measurement is timed after one warm-up call (which compiles); the median of a few
repeats is reported, with the first call's seconds and, for scale, the seconds of one warm
jitted gradient of the same loss. Run ``python -m adamflow.experiments.sharpness_bench``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import Sharpness, preconditioned_sharpness
from ._timing import median_time, timed

#: name -> (inputs, hidden units, data points): 101 and 9 901 parameters.
MODELS: dict[str, tuple[int, int, int]] = {"mlp_101": (8, 10, 64), "mlp_9901": (64, 150, 256)}


def tanh_mlp(
    inputs: int, hidden: int, points: int, seed: int = 0
) -> tuple[Callable[..., Any], Any, Any]:
    """A random tanh MLP with one output, its full-batch MSE loss and a random positive
    (Adam-like, log-normal) preconditioner shaped like its parameters."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(points, inputs)))
    y = jnp.asarray(rng.normal(size=(points, 1)))
    theta = {
        "w1": jnp.asarray(rng.normal(size=(inputs, hidden)) / np.sqrt(inputs)),
        "b1": jnp.zeros(hidden),
        "w2": jnp.asarray(rng.normal(size=(hidden, 1)) / np.sqrt(hidden)),
        "b2": jnp.zeros(1),
    }

    def loss(p: dict[str, jax.Array]) -> jax.Array:
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        return 0.5 * jnp.mean((h @ p["w2"] + p["b2"] - y) ** 2)

    precond = {k: jnp.asarray(np.exp(rng.normal(size=v.shape))) for k, v in theta.items()}
    return loss, theta, precond


def bench_sharpness(repeats: int = 5) -> dict[str, dict[str, Any]]:
    """Time `preconditioned_sharpness` on each of `MODELS` for k = 1 and k = 3.

    Returns ``{"<model>_k<k>": {"params", "k", "iters", "hvps", "seconds",
    "seconds_per_hvp", "cold_seconds", "grad_seconds", "hvp_per_grad", "top"}}``:
    ``seconds`` is the median warm call, ``cold_seconds`` the first call (compilation
    included unless an earlier measurement compiled the same loop), ``grad_seconds`` one
    warm jitted gradient, ``hvp_per_grad`` = seconds_per_hvp / grad_seconds, ``top`` the
    eigenvalues found.
    """
    results: dict[str, dict[str, Any]] = {}
    for name, (inputs, hidden, points) in MODELS.items():
        loss, theta, precond = tanh_mlp(inputs, hidden, points)
        grad = jax.jit(jax.grad(loss))
        jax.block_until_ready(grad(theta))
        grad_seconds = median_time(lambda: grad(theta), repeats)
        params = sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(theta))
        for k in (1, 3):

            def call(k: int = k) -> Sharpness:
                return preconditioned_sharpness(loss, theta, precond, k=k)

            cold, result = timed(call)  # the warm-up call
            warm = median_time(call, repeats)
            results[f"{name}_k{k}"] = {
                "params": params,
                "k": k,
                "iters": result.hvps,
                "hvps": result.hvps,
                "seconds": warm,
                "seconds_per_hvp": warm / result.hvps,
                "cold_seconds": cold,
                "grad_seconds": grad_seconds,
                "hvp_per_grad": warm / result.hvps / grad_seconds,
                "top": [float(v) for v in result.values],
            }
    return results


def main() -> None:
    """Print `bench_sharpness` as JSON, with the device and dtype it ran on."""
    header = {"device": str(jax.devices()[0]), "dtype": str(jnp.result_type(float))}
    print(json.dumps({"setup": header, **bench_sharpness()}, indent=2))


if __name__ == "__main__":
    main()
