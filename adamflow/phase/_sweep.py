r"""`phase_diagram`: the sweep over a (β₁, β₂) grid -- validation, chunks, devices,
checkpoints and progress; the cells are computed by `adamflow.phase._kernel` and analysed
by `adamflow.phase._result`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .._validate import check_choice, check_grid, check_int, check_positive
from ..problems import Problem
from ._checkpoint import (
    checkpoint_meta,
    chunk_path,
    open_checkpoint,
    read_chunk,
    write_chunk,
)
from ._kernel import (
    DYNAMICS,
    GROWTH_BLOCK,
    CellResult,
    Config,
    compile_chunk_fn,
    compute_chunk,
)
from ._result import PhaseDiagram, analyse

#: Default number of cells per chunk (one compiled call, one checkpoint file).
DEFAULT_CHUNK = 512


def _resolve_devices(devices: Any) -> list[Any]:
    """``None``: every JAX device; an integer ``d``: the first ``d``; else the devices given."""
    if devices is None:
        return list(jax.devices())
    if isinstance(devices, bool):
        raise TypeError(f"devices must be None, a number of devices or devices, got {devices!r}")
    if isinstance(devices, (int, np.integer)):
        available = jax.devices()
        if not 1 <= devices <= len(available):
            raise ValueError(f"devices must be between 1 and {len(available)}, got {devices}")
        return list(available[: int(devices)])
    device_list = list(devices)
    if not device_list:
        raise ValueError("devices must not be empty")
    return device_list


def phase_diagram(
    problem: Problem,
    b1s: Sequence[float] | np.ndarray,
    b2s: Sequence[float] | np.ndarray,
    *,
    steps: int,
    lr: float,
    seed: int = 0,
    eps: float = 1e-8,
    dynamics: str = "discrete",
    devices: Any = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    threshold: float = 1e2,
    substeps: int = 4,
    chunk_size: int | None = None,
    record_trace: bool = False,
) -> PhaseDiagram:
    r"""Run Adam on ``problem`` for every (β₁, β₂) of the grid and map where it stays bounded.

    Each cell runs ``steps`` steps of Adam (``dynamics="discrete"``, theory/adam.md §3:
    :math:`m_n = \beta_1 m_{n-1} + (1-\beta_1)g_n`,
    :math:`v_n = \beta_2 v_{n-1} + (1-\beta_2)g_n^2`,
    :math:`u_n = \hat m_n/(\sqrt{\hat v_n}+\varepsilon)`,
    :math:`\theta_n = \theta_{n-1} - \eta u_n`) or its leading-order flow
    (``"continuous"``, theory/adam.md §4: :math:`\dot m = a(g - m)`,
    :math:`\dot v = b(g^2 - v)`, :math:`\dot\theta = -u`, :math:`a = \ln(1/\beta_1)/\eta`,
    :math:`b = \ln(1/\beta_2)/\eta`, RK4 with ``substeps`` steps per η, the gradient of step
    n held over :math:`[(n-1)\eta, n\eta)`), in float64, and is compared with the theory
    :math:`\beta_2 > \beta_1^2` (theory/stability.md; `adamflow.phase` defines every
    measured array, the band and the agreement).

    Parameters
    ----------
    problem : an `adamflow.problems.Problem`.
    b1s, b2s : strictly monotone, non-empty grids in [0, 1) of β₁ (momentum) and β₂ (second
        moment), optax's ``b1`` and ``b2``.
    steps : optimizer steps per cell (>= 1); lr : learning rate η (> 0).
    seed : seed of the gradient randomness, shared by every cell (the key of step ``n`` is
        ``fold_in(PRNGKey(seed), n)``).
    eps : ε >= 0. threshold : a cell is measured stable when max|u| <= threshold.
    devices : JAX devices to shard the cells over (default: all), or how many to use.
    checkpoint : a folder; each finished chunk is saved there and reused by a rerun with the
        same parameters (a checkpoint made with other parameters is refused).
    progress : show a tqdm bar over chunks. chunk_size : cells per chunk (default 512).
    record_trace : also keep log10 max_i|u_i| every `GROWTH_BLOCK` steps in ``.trace``.
    """
    from tqdm.auto import tqdm  # here: ``import adamflow`` does not load tqdm

    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be an adamflow.problems.Problem, got {problem!r}")
    b1_grid = check_grid("b1s", b1s)
    b2_grid = check_grid("b2s", b2s)
    steps = check_int("steps", steps, 1)
    lr = check_positive("lr", lr)
    seed = check_int("seed", seed, 0)
    eps = check_positive("eps", eps, allow_zero=True)
    threshold = check_positive("threshold", threshold)
    substeps = check_int("substeps", substeps, 1)
    dynamics = check_choice("dynamics", dynamics, DYNAMICS)
    device_list = _resolve_devices(devices)
    n_cells = b1_grid.size * b2_grid.size
    largest = check_int("chunk_size", chunk_size if chunk_size is not None else DEFAULT_CHUNK, 1)
    n_chunks = -(-n_cells // largest)
    chunk = -(-n_cells // n_chunks)  # equal chunks, the last one possibly shorter
    n_chunks = -(-n_cells // chunk)
    padded = -(-chunk // len(device_list)) * len(device_list)
    parameters: dict[str, Any] = {
        "problem": problem.fingerprint(),
        "b1s": b1_grid.tolist(),
        "b2s": b2_grid.tolist(),
        "steps": steps,
        "lr": lr,
        "seed": seed,
        "eps": eps,
        "dynamics": dynamics,
        "substeps": substeps if dynamics == "continuous" else None,
        "threshold": threshold,
        "record_trace": bool(record_trace),
    }
    folder = Path(checkpoint) if checkpoint is not None else None
    if folder is not None:
        open_checkpoint(folder, checkpoint_meta(parameters, chunk))

    b1_flat, b2_flat = (a.ravel() for a in np.meshgrid(b1_grid, b2_grid, indexing="ij"))
    config = Config(problem, steps, lr, eps, seed, dynamics, substeps, bool(record_trace))
    start = time.perf_counter()
    pieces: list[dict[str, np.ndarray]] = []
    chunk_fn = None
    with jax.enable_x64(True):
        for index in tqdm(
            range(n_chunks), desc="phase diagram", unit="chunk", disable=not progress
        ):
            path = chunk_path(folder, index) if folder is not None else None
            if path is not None and path.exists():
                pieces.append(read_chunk(path))
                continue
            if chunk_fn is None:
                chunk_fn = compile_chunk_fn(config, tuple(device_list))
            cells = slice(index * chunk, min((index + 1) * chunk, n_cells))
            piece = compute_chunk(chunk_fn, config, b1_flat[cells], b2_flat[cells], padded)
            if path is not None:
                write_chunk(path, piece)
            pieces.append(piece)
    elapsed = time.perf_counter() - start
    raw = {key: np.concatenate([p[key] for p in pieces]) for key in CellResult._fields}
    n_trace = steps // GROWTH_BLOCK
    trace_steps = GROWTH_BLOCK * (1 + np.arange(n_trace)) if record_trace else None
    parameters["devices"] = len(device_list)
    parameters["chunk_size"] = chunk
    return analyse(
        b1_grid,
        b2_grid,
        raw,
        eps=eps,
        threshold=threshold,
        parameters=parameters,
        elapsed=elapsed,
        trace_steps=trace_steps,
    )
