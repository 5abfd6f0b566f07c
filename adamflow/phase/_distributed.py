"""`phase_diagram` across processes with JAX's multi-process runtime (``jax.distributed``).

Once ``jax.distributed`` is initialized (`initialize_distributed`), `adamflow.phase_diagram` runs in
every process of the job on that process's own devices: the chunks still to compute are
dealt round-robin (the ``j``-th unfinished chunk on process ``j % P``; on a fresh run chunk
``i`` on process ``i % P``), in rounds of ``P`` chunks. After each round the finished chunks
are gathered with ``jax.experimental.multihost_utils.process_allgather`` (CPU collectives:
gloo, JAX's default on CPU), so every process returns the whole `PhaseDiagram`; process 0
alone opens, checks and writes the checkpoint folder (its own chunk as soon as it is done,
the others' as they arrive) and is the one that writes the outputs.

Why collectives rather than chunk files written by every process: the checkpoint folder
then lives on process 0's disk only (no shared file system is needed), there is one writer
of every file, and the gather is a plain copy of the bytes of each chunk (``np.savez`` of
its arrays, exchanged as ``uint8``), so a chunk computed in process 1 is bit for bit the
chunk process 0 would have computed. The checkpoint's files are per chunk and its
``meta.json`` does not depend on the number of processes, so a run with ``P`` processes
resumes one made with any other number.

A process that fails must leave with `os._exit` (`exit_hard_on_error`): a normal exit
runs ``jax.distributed.shutdown``, which waits at a barrier for every process (for minutes)
while the others wait in the gather for it. `launch_local` kills the other processes once
one fails (``SIGKILL``: JAX's preemption notifier catches ``SIGTERM``); on a cluster the
launcher does the same (``srun --kill-on-bad-exit=1``).
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from ..validation import check_int

#: The environment `initialize_distributed` reads (and `launch_local` sets for each process).
COORDINATOR = "JAX_COORDINATOR_ADDRESS"
NUM_PROCESSES = "JAX_NUM_PROCESSES"
PROCESS_ID = "JAX_PROCESS_ID"


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Join a multi-process run: ``jax.distributed.initialize`` with the coordinator, the
    number of processes and this process's index given here or in the environment
    (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``); without them
    JAX detects the cluster itself (SLURM, Open MPI, ...). On CPU the collectives are gloo.
    Call it before anything else uses JAX; a second call does nothing.

    Parameters
    ----------
    coordinator_address : str | None, optional
        ``"host:port"`` of process 0's coordinator (default: ``JAX_COORDINATOR_ADDRESS``,
        else detected by JAX).
    num_processes : int | None, optional
        Number of processes of the job (default: ``JAX_NUM_PROCESSES``, else detected).
    process_id : int | None, optional
        This process's index, from 0 (default: ``JAX_PROCESS_ID``, else detected).

    Returns
    -------
    None
        Nothing; afterwards ``jax.process_count()`` is the job's number of processes.

    Raises
    ------
    ValueError
        ``JAX_NUM_PROCESSES`` or ``JAX_PROCESS_ID`` is set but not an integer; or (from
        ``jax.distributed.initialize``) the coordinator, the number of processes or this
        process's index is neither given nor detected, or the index is not in
        ``[0, num_processes)``.
    TypeError
        ``num_processes`` or ``process_id`` not an integer (from JAX).
    RuntimeError
        JAX has already initialized its backends in this process (from JAX).

    Examples
    --------
    Two local processes (`launch_local` sets the environment) join one job:

    >>> import sys
    >>> from adamflow.phase import launch_local
    >>> code = ("import jax; from adamflow.phase import initialize_distributed; "
    ...         "initialize_distributed(); assert jax.process_count() == 2")
    >>> launch_local([sys.executable, "-c", code], 2)  # 0: both processes succeeded
    0
    """
    if jax.distributed.is_initialized():
        return
    env = os.environ
    address = coordinator_address or env.get(COORDINATOR) or None
    count = num_processes if num_processes is not None else _env_int(NUM_PROCESSES)
    index = process_id if process_id is not None else _env_int(PROCESS_ID)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # Whatever is None here JAX detects from the cluster's environment.
    jax.distributed.initialize(address, count, index)


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    return int(text) if text not in (None, "") else None


def processes() -> tuple[int, int]:
    """``(number of processes, this process's index)`` (``(1, 0)`` without distribution)."""
    return jax.process_count(), jax.process_index()


# ----------------------------------------------------------------------------- exchange


def _encode(piece: dict[str, np.ndarray] | None) -> np.ndarray:
    if piece is None:
        return np.zeros(0, np.uint8)
    buffer = io.BytesIO()
    savez: Any = np.savez
    savez(buffer, **{k: np.asarray(v) for k, v in piece.items()})
    return np.frombuffer(buffer.getvalue(), np.uint8)


def _decode(data: np.ndarray) -> dict[str, np.ndarray] | None:
    if data.size == 0:
        return None
    with np.load(io.BytesIO(data.tobytes()), allow_pickle=False) as arrays:
        return {key: np.asarray(arrays[key]) for key in arrays.files}


def allgather_bytes(data: np.ndarray) -> list[np.ndarray]:
    """Every process's ``uint8`` array (lengths may differ), in process order."""
    from jax.experimental import multihost_utils

    lengths = np.asarray(multihost_utils.process_allgather(np.int32(data.size))).ravel()
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[: data.size] = data
    stacked = np.asarray(multihost_utils.process_allgather(padded))
    return [stacked[i, : int(n)] for i, n in enumerate(lengths)]


def gather_pieces(piece: dict[str, np.ndarray] | None) -> list[dict[str, np.ndarray] | None]:
    """Every process's chunk (``None`` where a process had none this round), bit for bit."""
    return [_decode(data) for data in allgather_bytes(_encode(piece))]


def broadcast_json(value: Any) -> Any:
    """Process 0's ``value`` (JSON-able) on every process."""
    mine = value if jax.process_index() == 0 else None
    data = np.frombuffer(json.dumps(mine).encode(), np.uint8)
    return json.loads(allgather_bytes(data)[0].tobytes().decode())


def broadcast_piece(piece: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """Process 0's chunk on every process."""
    data = _encode(piece) if jax.process_index() == 0 else np.zeros(0, np.uint8)
    return _decode(allgather_bytes(data)[0])


def run_chunks(
    n_chunks: int,
    saved: Sequence[int],
    *,
    load: Callable[[int], dict[str, np.ndarray]],
    compute: Callable[[int], dict[str, np.ndarray]],
    save: Callable[[int, dict[str, np.ndarray]], None] | None,
    done: Callable[[int], None],
) -> list[dict[str, np.ndarray]]:
    """Every chunk on every process: the ``saved`` ones loaded by process 0 (``load``) and
    sent to the others, the rest computed round-robin (``compute``), gathered after each
    round, and written by process 0 (``save``; ``None``: no checkpoint). ``done(index)`` is
    called for each chunk that arrives from another process or from the checkpoint."""
    count, me = processes()
    pieces: dict[int, dict[str, np.ndarray]] = {}
    for index in saved:
        piece = broadcast_piece(load(index) if me == 0 else None)
        assert piece is not None
        pieces[index] = piece
        done(index)
    todo = [index for index in range(n_chunks) if index not in pieces]
    for start in range(0, len(todo), count):
        batch = todo[start : start + count]
        mine = batch[me] if me < len(batch) else None
        piece = compute(mine) if mine is not None else None
        if mine is not None and piece is not None:
            if me == 0 and save is not None:
                save(mine, piece)
            pieces[mine] = piece
        for index, got in zip(batch, gather_pieces(piece), strict=False):
            if index == mine:
                continue
            assert got is not None, f"chunk {index} missing from its process"
            if me == 0 and save is not None:
                save(index, got)
            pieces[index] = got
            done(index)
    return [pieces[index] for index in range(n_chunks)]


# ----------------------------------------------------------------------------- processes


def exit_hard_on_error(main: Callable[[], Any]) -> Any:
    """Run ``main()`` in a process of a multi-process run; if it raises, print the
    traceback and leave at once with `os._exit` (status 130 for ``KeyboardInterrupt``, the
    code of ``SystemExit``, else 1), skipping ``jax.distributed``'s shutdown barrier, at
    which a failed process would otherwise wait for the others for minutes.

    Parameters
    ----------
    main : Callable[[], Any]
        The process's work, called with no argument.

    Returns
    -------
    Any
        What ``main()`` returns (when it raises, the process ends instead).

    Raises
    ------
    SystemExit
        Only one with code 0 or ``None`` (a clean exit), raised again as it was; any other
        exception ends the process with `os._exit`.

    Examples
    --------
    >>> import sys
    >>> from adamflow.phase import exit_hard_on_error
    >>> exit_hard_on_error(lambda: 42)
    42
    >>> exit_hard_on_error(lambda: sys.exit(0))
    Traceback (most recent call last):
    ...
    SystemExit: 0
    """
    try:
        return main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if code:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise
    except BaseException as error:
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130 if isinstance(error, KeyboardInterrupt) else 1)


def free_port() -> int:
    """A TCP port free on localhost now (for the coordinator of a local run)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_local(
    command: Sequence[str],
    count: int,
    *,
    env: dict[str, str] | None = None,
    poll_s: float = 0.1,
) -> int:
    """Run ``count`` copies of ``command`` on this machine as one ``jax.distributed`` job
    (coordinator on 127.0.0.1 at a free port; ``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID`` set for each) and wait for them. When one
    fails the others are killed; returns the first non-zero exit status (0 if all succeed).
    Each process sees the CPU only unless ``JAX_PLATFORMS`` says otherwise.

    Parameters
    ----------
    command : Sequence[str]
        The program and its arguments, run once per process (e.g. ``[sys.executable,
        "sweep.py"]``).
    count : int
        Number of processes, at least 1.
    env : dict[str, str] | None, optional
        The processes' environment (default: this process's), to which the three
        variables above and ``JAX_PLATFORMS=cpu`` (unless set) are added.
    poll_s : float, optional
        Seconds between two checks of the processes (default 0.1).

    Returns
    -------
    int
        0 if every process succeeded, else the first non-zero exit status seen (negative:
        killed by that signal); 130 if this process is interrupted (Ctrl-C).

    Raises
    ------
    ValueError
        If ``count`` is not an integer ≥ 1.
    OSError
        A process cannot be started (e.g. ``FileNotFoundError`` for an unknown program);
        the processes already started are killed first.

    Examples
    --------
    >>> import sys
    >>> from adamflow.phase import launch_local
    >>> code = "import os, sys; sys.exit(3 * int(os.environ['JAX_PROCESS_ID']))"
    >>> launch_local([sys.executable, "-c", code], 2)  # process 1 exits with status 3
    3
    """
    count = check_int("count", count, 1)
    base = dict(os.environ if env is None else env)
    base[COORDINATOR] = f"127.0.0.1:{free_port()}"
    base[NUM_PROCESSES] = str(count)
    base.setdefault("JAX_PLATFORMS", "cpu")
    children: list[subprocess.Popen[bytes]] = []
    status = 0
    try:
        for index in range(count):  # inside the try: a failed start kills those started
            children.append(subprocess.Popen(list(command), env={**base, PROCESS_ID: str(index)}))
        while None in [child.poll() for child in children]:  # poll every child
            failed = [c.returncode for c in children if c.returncode not in (None, 0)]
            if failed:
                status = failed[0]
                break
            time.sleep(poll_s)
        else:
            status = next((c.returncode for c in children if c.returncode), 0)
    except KeyboardInterrupt:
        status = 130
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)  # JAX catches SIGTERM (preemption notice)
        for child in children:
            child.wait()
    return status
