"""Regenerate the figures of figures/ from their experiments (adamflow.experiments.FIGURES).

    python scripts/make_figures.py [--quick] [--out DIR] [--only NAME ...] [--seed N]

Each figure is written atomically with a JSON sidecar (parameters, seed, version, results);
the same seed gives the same numbers. Prints each figure's scalar results.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

from adamflow.experiments import FIGURES, make_figure  # noqa: E402
from adamflow.experiments.cli import checked, writable_folder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _scalars(results: Any) -> Any:
    """``results`` without its arrays and lists (the sidecar holds them)."""
    if isinstance(results, dict):
        kept = {key: _scalars(value) for key, value in results.items()}
        return {key: value for key, value in kept.items() if value is not None}
    if isinstance(results, (list, tuple)) or hasattr(results, "shape"):
        return None
    return results


def build_parser() -> argparse.ArgumentParser:
    """The command line (a bad value exits with status 2 and a message naming its flag)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="reduced sizes (a few minutes)")
    parser.add_argument(
        "--out", type=writable_folder, default=ROOT / "figures", help="output folder"
    )
    parser.add_argument("--only", nargs="+", choices=list(FIGURES), help="only these figures")
    parser.add_argument(
        "--seed",
        type=checked(int, lambda n: n >= 0, "an integer >= 0"),
        default=0,
        help="random seed (same seed, same numbers)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (default: the command line), make the figures, print their results."""
    args = build_parser().parse_args(argv)
    from tqdm.auto import tqdm

    names = args.only or list(FIGURES)
    summaries = {}
    for name in (bar := tqdm(names, desc="figures", unit="fig")):
        bar.set_postfix_str(name)
        summaries[name] = _scalars(make_figure(name, args.out, quick=args.quick, seed=args.seed))
    print(json.dumps(summaries, indent=2, default=str))


if __name__ == "__main__":
    main()
