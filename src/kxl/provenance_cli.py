"""`kxl verify`: re-hash results/ against the provenance records."""

from __future__ import annotations

import argparse
import sys

from kxl.provenance import verify


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="re-hash artifacts and report any changed since made")
    p.add_argument("root", nargs="?", default="results")
    p.add_argument("--json", help="also write the result here (audit/verify.json, read by the "
                   "run report)")
    p.add_argument("--of", nargs="+", metavar="ARTIFACT",
                   help="only these artifacts' records and those of everything they were made "
                   "from (rule verify: a set that does not depend on which jobs ran first)")
    p.add_argument("--exit-zero", action="store_true",
                   help="exit 0 even when problems are found (the JSON says so)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    n, findings = verify(args.root, args.of)
    for f in findings:
        print(f, file=sys.stderr)
    print(f"verified {n} artifact record(s) under {args.root}: {len(findings)} problem(s)")
    if args.json:
        from kxl.atomic import write_json

        write_json(args.json, {
            "root": str(args.root), "checked": n, "passed": not findings,
            "problems": [{"artifact": f.artifact, "problem": f.problem} for f in findings],
        })
    return 1 if findings and not args.exit_zero else 0
