"""Map where Adam's (β₁, β₂) are stable: run the grid, write the figure, data and sidecar.

    python scripts/phase_diagram.py                      # default sparse problem, 40 x 40
    python scripts/phase_diagram.py --problem switch_off --grid 30 --n0 2000
    python scripts/phase_diagram.py --p 0.05 --dim 64 --steps 6000 --threshold 50
    python scripts/phase_diagram.py --b1-range 0.5 0.999 --b2-range 0.1 0.9999 \\
        --spacing log --steps 4000 --out /tmp/maps --resume

Runs ``adamflow.phase_diagram`` (a constant learning rate; see its docstring) on the grid
``adamflow.phase.grid`` makes, draws it with
``adamflow.plotting.phase.draw_phase_diagram_figure`` and writes ``<out>/phase_diagram.png``,
``phase_diagram.npz`` (arrays indexed [b1, b2]; read back with
``adamflow.load_phase_diagram``) and ``phase_diagram.json`` (every parameter, the seed, the
package version, the summary; no run time, so a rerun leaves every file unchanged), then
prints a short summary with the timings.

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

from adamflow.experiments.cli import integer, number, writable_folder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ".phase_diagram_checkpoint"


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
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
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
        "--out", type=writable_folder, default=ROOT / "figures", help="output folder"
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
