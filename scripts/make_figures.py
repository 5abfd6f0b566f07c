"""Regenerate the figures of figures/ from their experiments (adamflow.experiments.FIGURES).

    python scripts/make_figures.py [--quick] [--out DIR] [--only NAME ...] [--seed N]

Full mode writes the committed figures/ (its documented purpose; the same seed gives the
same numbers, so a rerun leaves them unchanged). ``--quick`` runs reduced sizes and writes
a scratch folder, runs/figures-quick/ (ignored by git) unless --out says otherwise, and never
figures/: its sidecars say "quick": true, and scripts/update_results.py refuses them. Each
figure is written atomically with a JSON sidecar (parameters, seed, version, results).
Prints each figure's scalar results and the folder written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

from adamflow.experiments import FIGURES, make_figure  # noqa: E402
from adamflow.experiments.cli import checked, exit_with_error, unwritable_reason  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIGURES_DIR = ROOT / "figures"
#: Where --quick writes by default: a scratch folder that git ignores.
QUICK_OUT = ROOT / "runs" / "figures-quick"


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
        prog=Path(__file__).name,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="reduced sizes (a few minutes)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: figures/; with --quick, runs/figures-quick/)",
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
    parser = build_parser()
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else (QUICK_OUT if args.quick else FIGURES_DIR)
    if args.quick and out.resolve() == FIGURES_DIR.resolve():
        exit_with_error(
            parser.prog,
            f"--out {out}: quick figures never go into {FIGURES_DIR} (it holds the committed, "
            "full-size ones); leave --out out to write runs/figures-quick/",
        )
    reason = unwritable_reason(out)
    if reason:
        exit_with_error(parser.prog, f"--out {out}: cannot write there: {reason}")
    from tqdm.auto import tqdm

    names = args.only or list(FIGURES)
    summaries = {}
    for name in (bar := tqdm(names, desc="figures", unit="fig")):
        bar.set_postfix_str(name)
        summaries[name] = _scalars(make_figure(name, out, quick=args.quick, seed=args.seed))
    print(json.dumps(summaries, indent=2, default=str))
    kind = "quick (scratch) figures" if args.quick else "figures"
    print(f"wrote {len(names)} {kind} to {out}")


if __name__ == "__main__":
    main()
