#!/usr/bin/env python3
"""Check or extend migrations/LOCK. `--check` exits 1 listing problems; `--record` adds new migrations."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as a plain script, before the package is installed

from services.core.db.migration_lock import check, record  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="report changed, deleted or unrecorded migrations")
    mode.add_argument("--record", action="store_true", help="add LOCK lines for new migrations (never rewrites)")
    parser.add_argument("--migrations", type=Path, default=ROOT / "migrations", help="the migrations folder")
    args = parser.parse_args(argv)

    if args.record:
        for line in record(args.migrations):
            print(f"recorded {line}")
    problems = check(args.migrations)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems and args.check:
        print("migrations/LOCK: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
