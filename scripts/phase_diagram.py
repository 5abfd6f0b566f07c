"""Map where Adam's (β₁, β₂) are stable: run the grid, write the figure, data and sidecar.

    python scripts/phase_diagram.py                      # default sparse problem, 40 x 40
    python scripts/phase_diagram.py --problem switch_off --grid 30
    python scripts/phase_diagram.py --b1-range 0.5 0.999 --b2-range 0.1 0.9999 \\
        --spacing log --steps 4000 --out /tmp/maps --resume

Runs ``adamflow.phase_diagram`` on the grid ``adamflow.phase.grid`` makes, draws it with
``adamflow.plotting.phase.draw_phase_diagram_figure`` and writes ``<out>/phase_diagram.png``,
``phase_diagram.npz`` (arrays indexed [b1, b2]; read back with
``adamflow.load_phase_diagram``) and ``phase_diagram.json`` (every parameter, the seed, the
package version, the summary; no run time, so a rerun leaves it unchanged), then prints a
short summary with the timings. Finished chunks are checkpointed in
``<out>/.phase_diagram_checkpoint/``: after an interruption, ``--resume`` continues where
the run stopped (the checkpoint is removed once the outputs are written).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from adamflow import phase, problems

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problem", choices=sorted(problems.PROBLEMS), default="sparse")
    parser.add_argument("--grid", type=int, default=phase.DEFAULT_GRID, help="N: an N x N grid")
    parser.add_argument(
        "--b1-range",
        nargs=2,
        type=float,
        default=phase.DEFAULT_B1_RANGE,
        metavar=("LOW", "HIGH"),
        help="first and last β₁ (momentum), in [0, 1)",
    )
    parser.add_argument(
        "--b2-range",
        nargs=2,
        type=float,
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
    parser.add_argument("--steps", type=int, default=None, help="steps per cell")
    parser.add_argument("--lr", type=float, default=None, help="learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eps", type=float, default=1e-8)
    parser.add_argument("--dynamics", choices=phase.DYNAMICS, default="discrete")
    parser.add_argument("--out", type=Path, default=ROOT / "figures", help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    start = time.perf_counter()
    import adamflow as af
    from adamflow import phase
    from adamflow.experiments.phase_figures import write_phase_diagram
    from adamflow.plotting.phase import draw_phase_diagram_figure

    run = phase.DEFAULT_RUNS.get(args.problem, {"steps": 2000, "lr": 1e-2})
    steps = args.steps if args.steps is not None else run["steps"]
    lr = args.lr if args.lr is not None else run["lr"]
    # Bad input fails here, before anything is compiled.
    (b1_low, b1_high), (b2_low, b2_high) = args.b1_range, args.b2_range
    b1s = phase.grid(b1_low, b1_high, args.grid, spacing=args.spacing)
    b2s = phase.grid(b2_low, b2_high, args.grid, spacing=args.spacing)
    checkpoint = args.out / ".phase_diagram_checkpoint"
    if not args.resume:
        phase.clear_checkpoint(checkpoint)
    diagram = af.phase_diagram(
        af.problems.get(args.problem),
        b1s,
        b2s,
        steps=steps,
        lr=lr,
        seed=args.seed,
        eps=args.eps,
        dynamics=args.dynamics,
        checkpoint=checkpoint,
        progress=not args.no_progress,
    )
    write_phase_diagram(diagram, draw_phase_diagram_figure(diagram), args.out)
    phase.clear_checkpoint(checkpoint)
    summary: dict[str, object] = dict(diagram.summary())
    total = time.perf_counter() - start
    print(
        f"{summary['cells']} cells ({args.grid} x {args.grid}), problem '{args.problem}', "
        f"{steps} steps, {args.dynamics}\n"
        f"agreement with β₂ > β₁²: {100 * diagram.agreement:.2f}% of "
        f"{summary['decided_cells']} decided cells ({summary['disagreements']} disagree)\n"
        f"ε-cap band: {summary['band_cells']} cells; diverged: {summary['diverged_cells']}\n"
        f"time: {diagram.elapsed:.1f} s sweep, {total:.1f} s total (not written)\n"
        f"wrote {args.out / 'phase_diagram.png'} (+ .npz, .json)"
    )
    return {**summary, "elapsed_s": diagram.elapsed, "total_s": round(total, 1)}


if __name__ == "__main__":
    main()
