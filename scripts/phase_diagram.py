r"""Map where Adam's (β₁, β₂) are stable: run the grid, write the figure, data and sidecar.

    python scripts/phase_diagram.py                      # default sparse problem, 40 x 40
    python scripts/phase_diagram.py --problem switch_off --grid 30 --n0 2000
    python scripts/phase_diagram.py --p 0.05 --dim 64 --steps 6000 --threshold 50
    python scripts/phase_diagram.py --b1-range 0.5 0.999 --b2-range 0.1 0.9999 \
        --spacing log --steps 4000 --out /tmp/maps --resume

Runs ``adamflow.phase_diagram`` (a constant learning rate; see its docstring) on the grid
``adamflow.phase.grid`` makes, draws it with
``adamflow.plotting.phase.draw_phase_diagram_figure`` and writes ``<out>/phase_diagram.png``,
``phase_diagram.npz`` (arrays indexed [b1, b2]; read back with
``adamflow.load_phase_diagram``) and ``phase_diagram.json`` (every parameter, the seed, the
package version, the summary; no run time, so a rerun leaves every file unchanged), then
prints a short summary with the timings.

Where it writes: ``--out`` if given. Without it, the default configuration (no flag that
changes the result) writes the committed ``figures/`` (its documented purpose: a rerun
leaves them unchanged); any other configuration writes ``runs/phase_diagram/<flags>/``
(ignored by git), named in its output, and never a committed file. An ``--out`` that cannot
be written is a one-line error (exit 2) before anything is computed.

Before the sweep it prints the cells × steps, the memory the results need and an estimate
of the time; a sweep whose results cannot fit in the available memory is refused (exit 2).

The problem's own parameters are flags too (--dim, --p, --condition, --n0, --scale,
--n-samples, --batch, --l2, --hidden, and --problem-seed for its ``seed``); each applies to
the problems of ``adamflow.problems`` that take it, and the problem's default is used when
it is not given.

Checkpoints: finished chunks are saved in ``<out>/.phase_diagram_checkpoint/`` and removed
once the outputs are written. On Ctrl-C the script prints how many chunks are saved and the
command that resumes (the same flags with --resume), and exits with status 130. A rerun
without --resume refuses to start while that folder holds finished chunks (it never deletes
them): add --resume to reuse them, or remove the folder to start over.

Several processes (``jax.distributed``; see ``adamflow.phase``): each computes its
share of the chunks on its own devices (the unfinished chunks round-robin), the finished
chunks are gathered after each round with JAX's collectives, and process 0 alone writes the
checkpoint and the outputs -- bit for bit those of one process. A checkpoint made with any
number of processes resumes with any other (--resume).

    # N local processes (coordinator on 127.0.0.1 at a free port), for tests and small
    # machines; on a CPU each process has one device:
    python scripts/phase_diagram.py --processes 2 --grid 64 --out /tmp/maps

    # a cluster: one process per task of the usual launcher, coordinator from the
    # environment (--distributed). Under SLURM JAX detects everything itself:
    srun -N 4 -n 4 --kill-on-bad-exit=1 python scripts/phase_diagram.py --distributed \
        --grid 256 --steps 10000 --out /shared/maps
    # any other launcher: set the coordinator, the count and the index of each process:
    JAX_COORDINATOR_ADDRESS=host0:12345 JAX_NUM_PROCESSES=4 JAX_PROCESS_ID=$RANK \
        python scripts/phase_diagram.py --distributed --grid 256 --out /shared/maps

If one process fails the others are stopped (--processes kills them; under srun use
--kill-on-bad-exit=1); rerun the same command with --resume to continue from the chunks
process 0 saved.
"""

from __future__ import annotations

import argparse
import inspect
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from adamflow.experiments.cli import exit_with_error, integer, number, unwritable_reason

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ".phase_diagram_checkpoint"
#: Where a run without --out writes: the committed figures for the default configuration,
#: a folder of its own under runs/ (ignored by git) for any other.
FIGURES = ROOT / "figures"
RUNS = ROOT / "runs" / "phase_diagram"
#: Flags that do not change the result (where it goes, how it runs, how it is shown).
NOT_RESULT_FLAGS = ("out", "resume", "no_progress", "processes", "distributed")
#: Throughput of the discrete sweep kernel on a 2-core CPU, in parameter-coordinate steps
#: per second (scripts/bench.py --quick measured 1.7e8; rounded down). Only for the
#: estimate printed before a sweep; the progress bar then shows the real rate.
CPU_COORDINATE_STEPS_PER_S = 1e8
#: Bytes of results per cell: 19 per-cell float64/int64 arrays of a PhaseDiagram, times 3
#: for the copies made while gathering, checkpointing and saving them.
RESULT_BYTES_PER_CELL = 19 * 8 * 3


def _flag(name: str) -> str:
    """The flag of a problem parameter (``seed`` would clash with the sweep's --seed)."""
    return "--problem-seed" if name == "seed" else "--" + name.replace("_", "-")


def problem_parameters() -> dict[str, dict[str, Any]]:
    """Every keyword argument of the built-in problems: ``{name: {problem: default}}``."""
    from adamflow import problems

    found: dict[str, dict[str, Any]] = {}
    for problem, make in sorted(problems.PROBLEMS.items()):
        for name, parameter in inspect.signature(make).parameters.items():
            found.setdefault(name, {})[problem] = parameter.default
    return found


def build_parser() -> argparse.ArgumentParser:
    """The command line (every value checked here, so a bad one exits with status 2 and a
    message naming its flag)."""
    from adamflow import phase, problems

    unit = number(0.0, high=1.0)
    parser = argparse.ArgumentParser(
        prog=Path(__file__).name,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--problem", choices=sorted(problems.PROBLEMS), default="sparse")
    parser.add_argument(
        "--grid", type=integer(1), default=phase.DEFAULT_GRID, help="N: an N x N grid"
    )
    parser.add_argument(
        "--b1-range",
        nargs=2,
        type=unit,
        default=phase.DEFAULT_B1_RANGE,
        metavar=("LOW", "HIGH"),
        help="first and last β₁ (momentum), in [0, 1)",
    )
    parser.add_argument(
        "--b2-range",
        nargs=2,
        type=unit,
        default=phase.DEFAULT_B2_RANGE,
        metavar=("LOW", "HIGH"),
        help="first and last β₂ (second moment), in [0, 1)",
    )
    parser.add_argument(
        "--spacing",
        choices=phase.SPACINGS,
        default="log",
        help="log: space 1-β₁ and 1-β₂ logarithmically (default); linear: β₁ and β₂ evenly",
    )
    parser.add_argument(
        "--steps", type=integer(1), default=None, help="steps per cell (default: per problem)"
    )
    parser.add_argument(
        "--lr",
        type=number(0.0, low_open=True),
        default=None,
        help="constant learning rate (default: per problem)",
    )
    parser.add_argument("--seed", type=integer(0), default=0, help="seed of the gradient noise")
    parser.add_argument("--eps", type=number(0.0), default=1e-8, help="Adam's ε (>= 0)")
    parser.add_argument(
        "--threshold",
        type=number(0.0, low_open=True),
        default=1e2,
        help="a cell is measured stable when max|u| <= THRESHOLD (default 100)",
    )
    parser.add_argument("--dynamics", choices=phase.DYNAMICS, default="discrete")
    parser.add_argument(
        "--substeps", type=integer(1), default=4, help="RK4 steps per lr (continuous only)"
    )
    parser.add_argument(
        "--chunk-size",
        type=integer(1),
        default=None,
        help=f"cells per compiled chunk and checkpoint file (default {phase.DEFAULT_CHUNK})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: figures/ for the default configuration, else "
        "runs/phase_diagram/<flags>/)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="reuse the finished chunks of an interrupted run"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--processes",
        type=integer(1),
        default=1,
        help="launch N local processes of one jax.distributed run (default 1: no launch)",
    )
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="join a jax.distributed run: coordinator from JAX_COORDINATOR_ADDRESS, "
        "JAX_NUM_PROCESSES, JAX_PROCESS_ID, or the cluster (SLURM, Open MPI, ...)",
    )
    group = parser.add_argument_group(
        "problem parameters", "keyword arguments of the chosen problem (default: its own)"
    )
    for name, defaults in problem_parameters().items():
        kind = type(next(iter(defaults.values())))
        shown = ", ".join(f"{problem} {value}" for problem, value in defaults.items())
        group.add_argument(
            _flag(name),
            dest=f"problem_{name}",
            type=integer(0) if kind is int else number(),
            default=None,
            metavar=name.upper(),
            help=f"default: {shown}",
        )
    return parser


def _grid_of(
    parser: argparse.ArgumentParser, flag: str, bounds: tuple[float, float], args: Any
) -> Any:
    from adamflow import phase

    low, high = bounds
    if args.grid > 1 and low == high:
        parser.error(f"argument {flag}: LOW and HIGH must differ for a grid of {args.grid}")
    return phase.grid(low, high, args.grid, spacing=args.spacing)


def make_problem(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    """The chosen problem made with the given problem flags (a flag the problem does not
    take, or a value it refuses, is a command-line error naming the flag)."""
    from adamflow import problems

    accepted = inspect.signature(problems.PROBLEMS[args.problem]).parameters
    given = {
        name: getattr(args, f"problem_{name}")
        for name in problem_parameters()
        if getattr(args, f"problem_{name}") is not None
    }
    for name in given:
        if name not in accepted:
            takes = " ".join(_flag(n) for n in accepted) or "none"
            parser.error(
                f"argument {_flag(name)}: problem {args.problem!r} has no parameter {name!r} "
                f"(it takes: {takes})"
            )
    try:
        return problems.get(args.problem, **given)
    except (TypeError, ValueError) as error:
        name = str(error).split(" ", 1)[0]
        flags = _flag(name) if name in given else "/".join(_flag(n) for n in given)
        parser.error(f"argument {flags}: {error}")


def changed_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The flags that change the result and differ from their defaults: ``{dest: value}``
    (empty for the default configuration)."""
    defaults = vars(parser.parse_args([]))
    return {
        name: value
        for name, value in vars(args).items()
        if name not in NOT_RESULT_FLAGS and value != defaults[name]
    }


def output_folder(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    """``--out``, or the committed figures/ for the default configuration, or a folder
    under runs/phase_diagram/ named after the changed flags."""
    if args.out is not None:
        return args.out
    changed = changed_flags(parser, args)
    if not changed:
        return FIGURES
    parts = []
    for name, value in sorted(changed.items()):
        shown = "-".join(
            f"{v:g}" if isinstance(v, float) else str(v)
            for v in (value if isinstance(value, (list, tuple)) else [value])
        )
        parts.append(f"{name.removeprefix('problem_').replace('_', '-')}-{shown}")
    slug = "_".join(parts)
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in slug)
    return RUNS / safe[:120]


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable on Linux)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def sweep_cost(cells: int, steps: int, dim: int, dynamics: str, substeps: int) -> dict[str, float]:
    """What a sweep costs before it runs: cell-steps, result bytes and estimated seconds on a
    2-core CPU (`CPU_COORDINATE_STEPS_PER_S`; the continuous flow makes 4 RK4 stages per
    substep)."""
    work = cells * steps * dim * (4 * substeps if dynamics == "continuous" else 1)
    return {
        "cell_steps": float(cells) * steps,
        "bytes": float(cells) * RESULT_BYTES_PER_CELL,
        "seconds": work / CPU_COORDINATE_STEPS_PER_S,
    }


def _size(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n_bytes < 1000 or unit == "TB":
            return f"{n_bytes:.3g} {unit}"
        n_bytes /= 1000
    return f"{n_bytes:.3g} TB"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def resume_command(argv: list[str]) -> str:
    """The command that resumes this run: the same flags, with --resume."""
    script = Path(__file__).resolve()
    try:
        shown = os.path.relpath(script)
    except ValueError:  # another drive
        shown = str(script)
    flags = [a for a in argv if a != "--resume"]
    return shlex.join(["python", shown, *flags, "--resume"])


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Parse ``argv`` (default: the command line), run the sweep, write the outputs and
    print the summary; returns the summary with the timings."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.out = output_folder(parser, args)
    reason = unwritable_reason(args.out)
    if reason:
        exit_with_error(parser.prog, f"--out {args.out}: cannot write there: {reason}")
    if args.processes > 1:
        if args.distributed:
            parser.error("argument --processes: not with --distributed (it launches them)")
        return launch(argv, args.processes)
    if args.distributed:
        from adamflow import phase

        phase.initialize_distributed()
        return phase.exit_hard_on_error(lambda: _main(parser, args, argv))
    return _main(parser, args, argv)


def launch(argv: list[str], processes: int) -> dict[str, object]:
    """Run this script with ``argv`` in ``processes`` local processes of one
    ``jax.distributed`` run (`adamflow.phase.launch_local`); exits with the first failing
    process's status."""
    from adamflow import phase

    flags: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            flags.append(arg)
    command = [sys.executable, str(Path(__file__).resolve()), *flags, "--distributed"]
    status = phase.launch_local(command, processes)
    if status:
        raise SystemExit(status)
    return {"processes": processes}


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]) -> Any:
    start = time.perf_counter()
    from adamflow import phase

    # Bad input fails here, before anything is compiled.
    b1s = _grid_of(parser, "--b1-range", args.b1_range, args)
    b2s = _grid_of(parser, "--b2-range", args.b2_range, args)
    problem = make_problem(parser, args)
    run = phase.DEFAULT_RUNS.get(args.problem, {"steps": 2000, "lr": 1e-2})
    steps = args.steps if args.steps is not None else run["steps"]
    lr = args.lr if args.lr is not None else run["lr"]
    checkpoint = args.out / CHECKPOINT
    announce(parser, args, problem, b1s.size * b2s.size, steps)
    try:
        return _run(parser, args, problem, b1s, b2s, steps, lr, checkpoint, start)
    except KeyboardInterrupt as interrupt:
        if args.distributed:
            raise
        total = getattr(interrupt, "total", None)
        saved = getattr(interrupt, "saved", None)
        if saved is None:
            saved = len(list(checkpoint.glob("chunk_*.npz"))) if checkpoint.is_dir() else 0
        of = f" of {total}" if total is not None else ""
        print(
            f"interrupted: {saved}{of} chunks saved in {checkpoint}; "
            f"resume with: {resume_command(argv)}",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(130) from None


def announce(
    parser: argparse.ArgumentParser, args: argparse.Namespace, problem: Any, cells: int, steps: int
) -> None:
    """Print what the sweep will cost (cells × steps, result memory, estimated time) and
    refuse, before anything is allocated, one whose results cannot fit in memory."""
    import jax
    import numpy as np

    dim = sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(problem.theta0))
    cost = sweep_cost(cells, steps, dim, args.dynamics, args.substeps)
    available = available_memory()
    if cost["bytes"] > available:
        exit_with_error(
            parser.prog,
            f"--grid {args.grid}: {cells:,} cells need about {_size(cost['bytes'])} for their "
            f"results, more than the {_size(available)} of memory available; use a smaller "
            "--grid (or split the ranges over several runs)",
        )
    if jax.process_index() == 0:
        print(
            f"sweep: {cells:,} cells × {steps:,} steps = {cost['cell_steps']:.3g} cell-steps "
            f"(dim {dim}); results about {_size(cost['bytes'])} of {_size(available)} "
            f"available; estimated {_duration(cost['seconds'])} on a 2-core CPU; "
            f"writing to {args.out}",
            flush=True,
        )


def _run(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    problem: Any,
    b1s: Any,
    b2s: Any,
    steps: int,
    lr: float,
    checkpoint: Path,
    start: float,
) -> dict[str, object]:
    import adamflow as af
    from adamflow import phase
    from adamflow.experiments.phase_figures import write_phase_diagram
    from adamflow.plotting.phase import draw_phase_diagram_figure

    try:
        diagram = af.phase_diagram(
            problem,
            b1s,
            b2s,
            steps=steps,
            lr=lr,
            seed=args.seed,
            eps=args.eps,
            dynamics=args.dynamics,
            substeps=args.substeps,
            threshold=args.threshold,
            chunk_size=args.chunk_size,
            checkpoint=checkpoint,
            resume=args.resume,
            progress=not args.no_progress,
        )
    except phase.CheckpointExists as error:
        parser.error(
            f"{error.folder} holds {error.saved} of {error.total} finished chunks of this run: "
            "add --resume to reuse them, or remove that folder to start over"
        )
    except phase.CheckpointMismatch as error:
        parser.error(
            f"{error.folder} holds the checkpoint of a run with other parameters (differing: "
            f"{', '.join(error.differing)}): rerun that run's command with --resume, or "
            "remove the folder"
        )
    import jax

    if jax.process_index() != 0:
        return dict(diagram.summary())  # process 0 writes the outputs
    write_phase_diagram(diagram, draw_phase_diagram_figure(diagram), args.out)
    phase.clear_checkpoint(checkpoint)
    summary: dict[str, object] = dict(diagram.summary())
    total = time.perf_counter() - start
    agreement = (
        f"{100 * diagram.agreement:.2f}% of {summary['decided_cells']} decided cells "
        f"({summary['disagreements']} disagree)"
        if summary["decided_cells"]
        else "no decided cell"
    )
    print(
        f"{summary['cells']} cells ({args.grid} x {args.grid}), problem '{args.problem}', "
        f"{steps} steps, lr {lr:g} (constant), {args.dynamics}\n"
        f"agreement with β₂ > β₁²: {agreement}\n"
        f"ε-cap band: {summary['band_cells']} cells; non-finite gradient: "
        f"{summary['nonfinite_cells']} cells (left out of the agreement); diverged: "
        f"{summary['diverged_cells']}\n"
        f"time: {diagram.elapsed:.1f} s sweep, {total:.1f} s total (not written)\n"
        f"wrote {args.out / 'phase_diagram.png'} (+ .npz, .json)"
    )
    return {**summary, "elapsed_s": diagram.elapsed, "total_s": round(total, 1)}


if __name__ == "__main__":
    main()
