"""CLI of stage plan: `kxl make-plan` (`kxl explain-step` is stage train's: kxl.train.explain)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    p = sub.add_parser("make-plan", help="the data-order plan (step, rank, micro, slot -> post)")
    p.add_argument("--buckets", required=True, help="buckets/buckets.parquet")
    p.add_argument("--config-json", required=True, help="the plan: config section as JSON")
    p.add_argument("--seed", required=True, type=int, help="the run seed")
    p.add_argument("--out", required=True, help="plan.parquet")
    p.add_argument("--summary", required=True, help="summary.json")
    p.set_defaults(func=_make)


def _make(args: argparse.Namespace) -> int:
    from kxl.atomic import write_json
    from kxl.buckets.schema import BUCKETS_SCHEMA
    from kxl.config import section_from_json, to_dict
    from kxl.plan.build import PLAN_SCHEMA, build_plan
    from kxl.plan.config import PlanConfig
    from kxl.provenance import record
    from kxl.tables import read_table, write_table

    cfg = section_from_json(PlanConfig, args.config_json, "plan")
    bk = read_table(args.buckets, BUCKETS_SCHEMA)
    plan, summary = build_plan(bk["id"].to_numpy(), bk["bucket"].to_numpy(), cfg, args.seed)
    write_table(plan, args.out, PLAN_SCHEMA)
    write_json(args.summary, summary)
    record("plan", [args.out, args.summary], [args.buckets], {**to_dict(cfg), "seed": args.seed})
    print(f"plan: {summary['steps']} step(s), {summary['samples']} sample(s)")
    return 0

