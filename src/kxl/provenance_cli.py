"""`kxl verify`: re-hash results/ against the provenance records."""

from __future__ import annotations

import argparse
import sys

from kxl.provenance import verify


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="re-hash artifacts and report any changed since made")
    p.add_argument("root", nargs="?", default="results")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    n, findings = verify(args.root)
    for f in findings:
        print(f, file=sys.stderr)
    print(f"verified {n} artifact record(s) under {args.root}: {len(findings)} problem(s)")
    return 1 if findings else 0
