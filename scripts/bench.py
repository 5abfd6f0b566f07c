"""Measure adamflow's performance claims as ratios in one run.

python scripts/bench.py [--quick] [--json FILE] [--only NAME ...]
"""

from __future__ import annotations

import argparse

import jax

jax.config.update("jax_enable_x64", True)

from adamflow._bench import BENCHMARKS, format_table, run_benchmarks  # noqa: E402
from adamflow._io import atomic_write_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller problems (< 5 min)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    args = parser.parse_args()
    results = run_benchmarks(args.only, args.quick)
    print(format_table(results))
    if args.json:
        atomic_write_json(args.json, results)


if __name__ == "__main__":
    main()
