"""Measure adamflow's performance claims as ratios in one run (adamflow.experiments.bench).

python scripts/bench.py [--quick] [--json FILE] [--only NAME ...]
python scripts/bench.py --only gpu_scale [--gpu-grid 256 --gpu-steps 10000 --gpu-dim 1000]
python scripts/bench.py --only distributed   # 1 vs 2 local processes, transformer projection

Prints a table (goals first, with whether each is met) and optionally writes the results
as JSON. ``gpu_scale`` and ``distributed`` run only when named; small ``--gpu-*`` sizes
smoke-test ``gpu_scale`` on a CPU.
"""

from __future__ import annotations

import argparse

import jax

jax.config.update("jax_enable_x64", True)

from adamflow.experiments.bench import (  # noqa: E402
    BENCHMARKS,
    DEFAULT_BENCHMARKS,
    BenchOptions,
    format_table,
    run_benchmarks,
    save_results,
)
from adamflow.experiments.cli import checked, writable_file  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line (a bad value exits with status 2 and a message naming its flag)."""
    defaults = BenchOptions()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller problems (< 5 min)")
    parser.add_argument(
        "--json", metavar="FILE", type=writable_file, help="also write the results as JSON"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(BENCHMARKS),
        help=f"run only these (default: {' '.join(DEFAULT_BENCHMARKS)})",
    )
    size = checked(int, lambda n: n >= 1, "an integer >= 1")
    parser.add_argument(
        "--gpu-grid", type=size, default=defaults.gpu_grid, help="gpu_scale: grid side"
    )
    parser.add_argument(
        "--gpu-steps", type=size, default=defaults.gpu_steps, help="gpu_scale: steps"
    )
    parser.add_argument(
        "--gpu-dim", type=size, default=defaults.gpu_dim, help="gpu_scale: dimensions"
    )
    parser.add_argument(
        "--gpu-chunk", type=size, default=defaults.gpu_chunk, help="gpu_scale: cells per chunk"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (default: the command line), run the benchmarks, print the table."""
    parser = build_parser()
    args = parser.parse_args(argv)
    options = BenchOptions(
        quick=args.quick,
        gpu_grid=args.gpu_grid,
        gpu_steps=args.gpu_steps,
        gpu_dim=args.gpu_dim,
        gpu_chunk=args.gpu_chunk,
    )
    results = run_benchmarks(args.only, options)
    print(format_table(results))
    if args.json:
        save_results(args.json, results)


if __name__ == "__main__":
    main()
