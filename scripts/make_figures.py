"""Regenerate every figure in figures/ from the library.

    python scripts/make_figures.py [--quick] [--out DIR] [--only NAME ...] [--seed N]

Each figure is written atomically with a JSON sidecar (parameters, seed, version).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

from tqdm.auto import tqdm  # noqa: E402

from adamflow.plotting import FIGURES, make_figure  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="reduced sizes (a few minutes)")
    parser.add_argument("--out", type=Path, default=ROOT / "figures", help="output folder")
    parser.add_argument("--only", nargs="+", choices=list(FIGURES), help="only these figures")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same numbers)")
    args = parser.parse_args()
    names = args.only or list(FIGURES)
    summaries = {}
    for name in (bar := tqdm(names, desc="figures", unit="fig")):
        bar.set_postfix_str(name)
        start = time.perf_counter()
        summary = make_figure(name, args.out, quick=args.quick, seed=args.seed)
        summaries[name] = {"seconds": round(time.perf_counter() - start, 1), **(summary or {})}
    print(json.dumps(summaries, indent=2, default=str))


if __name__ == "__main__":
    main()
