"""Write the ``theory/`` documents from `adamflow.symbolic` (or check they are current).

python scripts/make_theory.py            # (re)write theory/*.md
python scripts/make_theory.py --check    # exit 1 if a committed document differs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adamflow.symbolic import theory_documents, write_theory  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    parser.add_argument("--out", type=Path, default=ROOT / "theory", help="output folder")
    args = parser.parse_args(argv)
    stale = write_theory(args.out, check=args.check)
    if args.check:
        for name in stale:
            print(f"stale: {args.out / name} (run python scripts/make_theory.py)")
        return 1 if stale else 0
    for name in stale:
        print(f"wrote {args.out / name}")
    print(f"{len(theory_documents())} documents, {len(stale)} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
