"""Refresh the README's Results numbers from the committed figure sidecars (or check them).

python scripts/update_readme.py            # rewrite README.md between the results markers
python scripts/update_readme.py --check    # exit 1 if the README's numbers are stale

Every number of the Results section is formatted from ``figures/*.json`` by
`adamflow.experiments.readme.results_markdown`; run this after ``scripts/make_figures.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adamflow.experiments.readme import QuickSidecars, update_readme  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help="the README")
    parser.add_argument(
        "--figures", type=Path, default=ROOT / "figures", help="folder of the figure sidecars"
    )
    args = parser.parse_args(argv)
    try:
        current = update_readme(args.readme, args.figures, check=args.check)
    except (QuickSidecars, FileNotFoundError) as error:
        print(f"update_readme.py: refused: {error}", file=sys.stderr)
        return 2
    if current:
        print(f"{args.readme}: Results up to date")
        return 0
    if args.check:
        print(f"stale: {args.readme} Results (run python scripts/update_readme.py)")
        return 1
    print(f"wrote {args.readme} Results from {args.figures}/*.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
