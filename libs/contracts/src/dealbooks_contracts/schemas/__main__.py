"""``python -m dealbooks_contracts.schemas write|check``: regenerate or verify the snapshots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import (
    SNAPSHOT_DIR,
    BreakingChangeError,
    check_snapshots,
    write_snapshots,
)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m dealbooks_contracts.schemas")
    parser.add_argument("command", choices=["write", "check"])
    parser.add_argument("--dir", type=Path, default=SNAPSHOT_DIR, help="snapshot directory")
    parser.add_argument(
        "--allow-breaking",
        action="store_true",
        help="write even if a change breaks a topic (only before anyone consumes it)",
    )
    args = parser.parse_args(argv)
    if args.command == "check":
        drifts = check_snapshots(args.dir)
        for drift in drifts:
            print(drift, file=sys.stderr)
        if drifts:
            print("schemas: out of date; run `make schemas`", file=sys.stderr)
            return 1
        print("schemas: all snapshots match the models")
        return 0
    try:
        drifts = write_snapshots(args.dir, allow_breaking=args.allow_breaking)
    except BreakingChangeError as exc:
        print(exc, file=sys.stderr)
        print(
            "schemas: refusing a breaking change inside a major version; register the payload "
            "under the next version instead (or pass --allow-breaking)",
            file=sys.stderr,
        )
        return 2
    for drift in drifts:
        print(f"updated {drift}")
    print(f"schemas: {len(drifts)} snapshot(s) updated in {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
