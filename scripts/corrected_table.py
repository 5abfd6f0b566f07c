"""Leading, corrected and corrected2 flows against discrete Adam on a 1-D non-convex loss.

Prints |θ_K − θ(K·lr)| at t = 8 (and the largest error along the path) for lr from 5e-2
to 5e-4 with β₁ = 0.99, β₂ = 0.999, next to the vector-field evaluations each used and the
corrected flows' validity; then the cost of the corrected flow at the tolerance that
matches the discrete run to 1e-4.

    python scripts/corrected_table.py [--json out.json]

The numbers come from adamflow.experiments.corrected (accuracy_table,
bench_corrected_vs_discrete).
"""

from __future__ import annotations

import argparse

import jax

jax.config.update("jax_enable_x64", True)

from adamflow.experiments import corrected  # noqa: E402
from adamflow.experiments.cli import writable_file  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line (a bad value exits with status 2 and a message naming its flag)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        type=writable_file,
        help="also write the rows and the benchmark to this file",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (default: the command line), print the table and the benchmark."""
    args = build_parser().parse_args(argv)

    rows = corrected.accuracy_table()
    print(
        f"Adam(b1=0.99, b2=0.999) on nonconvex_1d from 0, t = {corrected.TABLE_T1}; "
        "errors |theta_K - theta(K lr)| (max over the path in brackets)"
    )
    orders = corrected.FLOW_ORDERS
    header = f"{'lr':>7} {'K':>6} | " + " | ".join(f"{o:>20} {'evals':>6}" for o in orders)
    header += f" | {'validity':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        cells = " | ".join(
            f"{r[f'{o}_final_error']:9.2e} [{r[f'{o}_max_error']:8.2e}] {r[f'{o}_grad_evals']:6d}"
            for o in orders
        )
        print(f"{r['lr']:7.0e} {r['steps']:6d} | {cells} | {r['corrected2_validity']:8.2g}")
    bench = corrected.bench_corrected_vs_discrete()
    print(
        f"\nCorrected flow at lr = {bench['lr']}, matching the discrete run to "
        f"{bench['target_relative_error']:g} relative: rtol = {bench.get('rtol')}, "
        f"{bench.get('flow_grad_evals')} field evaluations vs {bench['steps']} gradient "
        f"steps (ratio {bench.get('grad_evals_ratio', float('nan')):.3f}); time "
        f"{bench.get('flow_time_s', float('nan')):.4f} s vs {bench['discrete_time_s']:.4f} s "
        f"(ratio {bench.get('time_ratio', float('nan')):.2f})"
    )
    if args.json:
        corrected.save_results(args.json, rows, bench)


if __name__ == "__main__":
    main()
