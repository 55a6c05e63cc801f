"""CLI of stage checks: `kxl check-counts`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-counts", help="count gate: the data and plan stages' counts "
                       "against config `counts` (fails before training starts)")
    p.add_argument("--posts-summary", required=True, help="posts/summary.json")
    p.add_argument("--dataset", required=True, help="images/dataset.parquet")
    p.add_argument("--buckets", required=True, help="buckets/buckets.parquet")
    p.add_argument("--plan-summary", required=True, help="plan/summary.json")
    p.add_argument("--config-json", required=True, help="the counts config section")
    p.add_argument("--out", required=True, help="checks/counts.json (written only if it passes)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from kxl.atomic import write_json
    from kxl.checks.counts import CountsConfig, measure, problems
    from kxl.config import section_from_json, to_dict
    from kxl.errors import KxlError
    from kxl.provenance import record
    from kxl.tables import read_table

    cfg = section_from_json(CountsConfig, args.config_json, "counts")
    inputs = [args.posts_summary, args.dataset, args.buckets, args.plan_summary]
    try:
        posts, plan = (json.loads(Path(p).read_text()) for p in (args.posts_summary,
                                                                  args.plan_summary))
    except (OSError, ValueError) as exc:
        raise KxlError(f"cannot read a stage summary ({exc}); re-run its stage") from exc
    actual = measure(posts, read_table(args.dataset), read_table(args.buckets), plan)
    found = problems(actual, cfg)
    for line in found:
        print(f"count gate: {line}", file=sys.stderr)
    if found and cfg.enforce:
        raise KxlError(f"count gate: {found[0]}" + (f" (and {len(found) - 1} more, above)"
                       if len(found) > 1 else "") + "; fix the data or config `counts` "
                       "(expected values, tolerance, or enforce: false)")
    write_json(args.out, {"actual": actual, "config": to_dict(cfg), "problems": found})
    record("checks", [args.out], inputs, to_dict(cfg))
    print(f"count gate: {len(found)} count(s) off" if found else "count gate: all counts "
          "as expected")
    return 0
