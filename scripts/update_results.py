"""Refresh the documentation's Results numbers from the committed figure sidecars (or check).

python scripts/update_results.py            # rewrite docs/results.md between its markers
python scripts/update_results.py --check    # exit 1 if the page's numbers are stale

Every number of the Results section is formatted from ``figures/*.json`` by
`adamflow.experiments.results_page.results_markdown`; run this after
``scripts/make_figures.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adamflow.experiments.results_page import QuickSidecars, update_results  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    parser.add_argument(
        "--page", type=Path, default=ROOT / "docs" / "results.md", help="the Results page"
    )
    parser.add_argument(
        "--figures", type=Path, default=ROOT / "figures", help="folder of the figure sidecars"
    )
    args = parser.parse_args(argv)
    try:
        current = update_results(args.page, args.figures, check=args.check)
    except (QuickSidecars, FileNotFoundError) as error:
        print(f"update_results.py: refused: {error}", file=sys.stderr)
        return 2
    if current:
        print(f"{args.page}: Results up to date")
        return 0
    if args.check:
        print(f"stale: {args.page} Results (run python scripts/update_results.py)")
        return 1
    print(f"wrote {args.page} Results from {args.figures}/*.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
