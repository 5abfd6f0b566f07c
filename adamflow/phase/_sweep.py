r"""`phase_diagram`: the sweep over a (β₁, β₂) grid -- validation, chunks, devices,
checkpoints (`adamflow.phase._checkpoint`) and progress; the cells are computed by
`adamflow.phase._kernel` and analysed by `adamflow.phase._result`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ..problems import Problem
from ..validation import check_bool, check_choice, check_grid, check_int, check_positive
from . import _distributed
from ._checkpoint import (
    SweepInterrupted,
    checkpoint_meta,
    chunk_path,
    open_checkpoint,
    read_chunk,
    saved_chunks,
    write_chunk,
)
from ._kernel import (
    CONVENTIONS,
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
    """``None``: every JAX device of this process; an integer ``d``: the first ``d``; else
    the devices given."""
    if devices is None:
        return list(jax.local_devices())
    if isinstance(devices, bool):
        raise TypeError(f"devices must be None, a number of devices or devices, got {devices!r}")
    if isinstance(devices, (int, np.integer)):
        available = jax.local_devices()
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
    resume: bool = False,
    progress: bool = True,
    threshold: float = 1e2,
    substeps: int = 4,
    chunk_size: int | None = None,
    record_trace: bool = False,
    weight_decay: float = 0.0,
    convention: str = "exact",
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
    measured array, the band, the non-finite cells and the agreement).

    The learning rate is one constant step η for every cell and every step: a schedule is
    not swept (``lr`` must be a number). It sets the step of θ, hence which gradients the
    problem returns, and the time scale of the continuous flow; the stability verdicts
    depend on (β₁, β₂) only (theory/stability.md §1).

    Parameters
    ----------
    problem : Problem
        An `adamflow.problems.Problem`; its functions are checked once up front
        (`adamflow.problems.Problem.validate`: a ``grad`` of the wrong signature or shape is
        refused before anything is compiled).
    b1s, b2s : Sequence[float] | numpy.ndarray
        Strictly monotone, non-empty grids in [0, 1) of β₁ (momentum) and β₂ (second
        moment), optax's ``b1`` and ``b2``.
    steps : int
        Optimizer steps per cell (>= 1).
    lr : float
        The constant learning rate η (> 0).
    seed : int, optional
        Seed of the gradient randomness, shared by every cell (the key of step ``n`` is
        ``fold_in(PRNGKey(seed), n)``).
    eps : float, optional
        ε >= 0 (default 1e-8).
    dynamics : str, optional
        ``"discrete"`` (default: Adam's step) or ``"continuous"`` (its leading-order flow).
    devices : Any, optional
        JAX devices to shard the cells over (default: all of this process's), or how
        many to use.
    checkpoint : str | pathlib.Path | None, optional
        A folder (created if needed); each finished chunk is saved there. A folder
        made with other parameters is refused; one holding finished chunks of this very
        sweep is reused only with ``resume=True`` (else `adamflow.phase.CheckpointExists`:
        nothing is ever deleted or mixed in silently). On ``KeyboardInterrupt`` the finished
        chunks are on disk and `adamflow.phase.SweepInterrupted` (a ``KeyboardInterrupt``)
        says how many.
    resume : bool, optional
        Reuse the finished chunks in ``checkpoint`` (nothing to reuse: start afresh).
    progress : bool, optional
        Show a tqdm bar over the cell-steps; it moves within a long chunk too (after
        each segment of its steps, `adamflow.phase._kernel.schedule`).
    threshold : float, optional
        A cell is measured stable when max|u| <= threshold (> 0; default 100).
    substeps : int, optional
        RK4 steps per η of the continuous flow (>= 1; default 4; unused by
        ``"discrete"``).
    chunk_size : int | None, optional
        Cells per chunk (default 512).
    record_trace : bool, optional
        Also keep log10 max_i|u_i| every `GROWTH_BLOCK` steps in ``.trace``.
    weight_decay : float, optional
        Decoupled weight decay λ >= 0: every cell runs
        ``adamflow.AdamW(lr, b1, b2, eps, weight_decay)`` (:math:`\theta_n = \theta_{n-1} -
        \eta(u_n + \lambda\theta_{n-1})`, flow :math:`\dot\theta = -(u + \lambda\theta)`)
        instead of ``adamflow.Adam`` (0, the default). The theory columns do not depend on it.
    convention : str, optional
        The moment rates of the continuous flow (``dynamics="continuous"`` only):
        ``"exact"`` (default, :math:`a = \ln(1/\beta_1)/\eta`), ``"euler"``
        (:math:`(1-\beta_1)/\eta`) or ``"paper"`` (:math:`(1-\beta_1)/(\beta_1\eta)`,
        reconstructed, theory §6), via `adamflow._flows.flow_params`; the theory columns
        ``theory_stable`` and ``theory_growth`` then use that convention
        (`adamflow.stability.is_stable`, `adamflow.stability.log_growth`). The discrete
        optimizer has no convention: anything but ``"exact"`` is refused with it.

    Returns
    -------
    PhaseDiagram
        The measured arrays, the theory's and the verdicts (`adamflow.phase` defines them),
        indexed ``[b1, b2]``, with ``parameters`` and ``elapsed``.

    Raises
    ------
    TypeError
        ``problem`` not a `Problem`, or its functions not callable as a sweep calls them;
        ``lr`` a schedule (callable) or not a number; ``eps``, ``threshold`` or
        ``weight_decay`` not a number; ``resume`` or ``record_trace`` not a bool;
        ``devices`` a bool; ``b1s`` or ``b2s`` not numbers.
    ValueError
        ``b1s`` or ``b2s`` empty, not 1-D, not strictly monotone or outside [0, 1);
        ``steps``, ``substeps`` or ``chunk_size`` < 1, or ``seed`` < 0, or one of them not
        an integer; ``lr`` or ``threshold`` <= 0, ``eps`` or ``weight_decay`` < 0;
        ``dynamics`` or ``convention`` unknown, or ``convention`` other than ``"exact"``
        with ``dynamics="discrete"``; ``devices`` a count outside [1, local devices] or
        empty; ``problem``'s functions returning the wrong shapes or types
        (`adamflow.problems.Problem.validate`); ``checkpoint`` a file, or a folder with an
        unreadable ``meta.json`` or with chunk files but no ``meta.json``.
    CheckpointMismatch
        ``checkpoint`` made with other parameters (a ``ValueError``).
    CheckpointExists
        ``checkpoint`` holds finished chunks of this sweep and ``resume`` is false.
    OSError
        ``checkpoint`` cannot be created or written.
    SweepInterrupted
        Interrupted (Ctrl-C) with a ``checkpoint``, in process 0; without one the
        ``KeyboardInterrupt`` itself.
    RuntimeError
        Across processes, in a process other than 0 when process 0 refused ``checkpoint``.

    Notes
    -----
    Across processes: once ``jax.distributed`` is initialized
    (`adamflow.phase.initialize_distributed`), call this in every process with the same
    arguments; the unfinished chunks are dealt round-robin over the processes (each on its
    own devices), gathered after each round, and every process returns the whole diagram,
    bit for bit the one process's. Process 0 alone opens and writes ``checkpoint``, which
    any number of processes can resume (`adamflow.phase._distributed`).

    Examples
    --------
    >>> import numpy as np
    >>> from adamflow import phase_diagram, problems
    >>> diagram = phase_diagram(problems.switch_off(n0=8), [0.5, 0.9], [0.5, 0.99],
    ...                         steps=64, lr=1e-2, progress=False)
    >>> diagram.theory_stable.tolist(), diagram.measured_stable.tolist()  # β₂ > β₁²?
    ([[True, True], [False, True]], [[True, True], [False, True]])
    >>> round(float(np.log10(diagram.max_update[1, 0])), 1)  # 0.9/√0.5 per step from n0
    5.1
    """
    from tqdm.auto import tqdm  # here: ``import adamflow`` does not load tqdm

    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be an adamflow.problems.Problem, got {problem!r}")
    b1_grid = check_grid("b1s", b1s)
    b2_grid = check_grid("b2s", b2s)
    steps = check_int("steps", steps, 1)
    if callable(lr):
        raise TypeError("lr must be a number: a phase diagram sweeps a constant step, no schedule")
    lr = check_positive("lr", lr)
    seed = check_int("seed", seed, 0)
    eps = check_positive("eps", eps, allow_zero=True)
    threshold = check_positive("threshold", threshold)
    substeps = check_int("substeps", substeps, 1)
    dynamics = check_choice("dynamics", dynamics, DYNAMICS)
    weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
    convention = check_choice("convention", convention, CONVENTIONS)
    if dynamics == "discrete" and convention != "exact":
        raise ValueError(
            f"convention={convention!r} applies to dynamics='continuous' only: the discrete "
            "optimizer has no moment-rate convention (leave convention='exact')"
        )
    resume = check_bool("resume", resume)
    record_trace = check_bool("record_trace", record_trace)
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
        "record_trace": record_trace,
        "weight_decay": weight_decay,
        "convention": convention,
    }
    with jax.enable_x64(True):
        problem.validate()
    folder = Path(checkpoint) if checkpoint is not None else None
    n_processes, process = _distributed.processes()
    saved: list[int] = []
    if n_processes == 1:
        if folder is not None:
            meta = checkpoint_meta(parameters, chunk)
            open_checkpoint(folder, meta, chunks=n_chunks, resume=resume)
    else:
        saved = _open_shared(folder, checkpoint_meta(parameters, chunk), n_chunks, resume)
        progress = progress and process == 0

    b1_flat, b2_flat = (a.ravel() for a in np.meshgrid(b1_grid, b2_grid, indexing="ij"))
    config = Config(
        problem, steps, lr, eps, seed, dynamics, substeps, record_trace, weight_decay, convention
    )
    start = time.perf_counter()
    pieces: list[dict[str, np.ndarray]] = []
    runner = None
    tables = None
    unsaved: tuple[Path, dict[str, np.ndarray]] | None = None
    bar = tqdm(
        total=n_cells * steps,
        desc="phase diagram",
        unit="cell-step",
        unit_scale=True,
        disable=not progress,
    )

    def compute(index: int) -> dict[str, np.ndarray]:
        nonlocal runner, tables
        cells = slice(index * chunk, min((index + 1) * chunk, n_cells))
        size = cells.stop - cells.start
        if runner is None:
            runner = compile_chunk_fn(config, tuple(device_list), padded)
            tables = runner.tables()
        assert tables is not None

        def advance(k: int) -> None:
            bar.update(size * k)

        return compute_chunk(
            runner, config, tables, b1_flat[cells], b2_flat[cells], padded, advance
        )

    def save(index: int, piece: dict[str, np.ndarray]) -> None:
        nonlocal unsaved
        assert folder is not None
        unsaved = (chunk_path(folder, index), piece)
        write_chunk(*unsaved)
        unsaved = None

    def load(index: int) -> dict[str, np.ndarray]:
        assert folder is not None
        return read_chunk(chunk_path(folder, index))

    def arrived(index: int) -> None:
        bar.update((min((index + 1) * chunk, n_cells) - index * chunk) * steps)

    try:
        with jax.enable_x64(True):
            if n_processes > 1:
                pieces = _distributed.run_chunks(
                    n_chunks,
                    saved,
                    load=load,
                    compute=compute,
                    save=save if folder is not None and process == 0 else None,
                    done=arrived,
                )
            for index in range(n_chunks if n_processes == 1 else 0):
                cells = slice(index * chunk, min((index + 1) * chunk, n_cells))
                size = cells.stop - cells.start
                path = chunk_path(folder, index) if folder is not None else None
                if path is not None and path.exists():
                    pieces.append(read_chunk(path))
                    bar.update(size * steps)
                    continue
                piece = compute(index)
                if path is not None:
                    save(index, piece)
                pieces.append(piece)
    except KeyboardInterrupt as interrupt:
        bar.close()
        if folder is None or process != 0:
            raise
        if unsaved is not None and not unsaved[0].exists():
            write_chunk(*unsaved)  # a finished chunk interrupted while being written
        raise SweepInterrupted(folder, saved_chunks(folder, n_chunks), n_chunks) from interrupt
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    raw = {key: np.concatenate([p[key] for p in pieces]) for key in CellResult._fields}
    n_trace = steps // GROWTH_BLOCK
    trace_steps = GROWTH_BLOCK * (1 + np.arange(n_trace)) if record_trace else None
    parameters["devices"] = len(device_list) * n_processes
    if n_processes > 1:
        parameters["processes"] = n_processes
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
        convention=convention,
    )


def _open_shared(folder: Path | None, meta: dict[str, Any], chunks: int, resume: bool) -> list[int]:
    """Process 0 opens the checkpoint (`open_checkpoint`) and tells every process which
    chunks are finished there; a refusal is raised in process 0 as itself and in the others
    as a ``RuntimeError`` quoting it (so that no process waits for the others forever)."""
    error: BaseException | None = None
    status: dict[str, Any] = {"saved": [], "error": None}
    if jax.process_index() == 0 and folder is not None:
        try:
            open_checkpoint(folder, meta, chunks=chunks, resume=resume)
            status["saved"] = [i for i in range(chunks) if chunk_path(folder, i).is_file()]
        except Exception as refused:
            error = refused
            status["error"] = f"{type(refused).__name__}: {refused}"
    status = _distributed.broadcast_json(status)
    if error is not None:
        raise error
    if status["error"] is not None:
        raise RuntimeError(f"process 0 refused the checkpoint: {status['error']}")
    return [int(i) for i in status["saved"]]
