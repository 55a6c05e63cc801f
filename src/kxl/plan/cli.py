"""CLI of stage plan: `kxl make-plan` and `kxl explain-step`."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    p = sub.add_parser("make-plan", help="the data-order plan (step, rank, micro, slot -> post)")
    p.add_argument("--buckets", required=True, help="buckets/buckets.parquet")
    p.add_argument("--config-json", required=True, help="the plan: config section as JSON")
    p.add_argument("--seed", required=True, type=int, help="the run seed")
    p.add_argument("--out", required=True, help="plan.parquet")
    p.add_argument("--summary", required=True, help="summary.json")
    p.set_defaults(func=_make)
    e = sub.add_parser("explain-step", help="print what optimizer step N saw")
    e.add_argument("step", type=int)
    e.add_argument("--rank", type=int, default=None)
    e.add_argument("--plan", default="results/plan/plan.parquet")
    e.add_argument("--captions", default="results/captions/captions.parquet")
    e.add_argument("--buckets", default="results/buckets/buckets.parquet")
    e.add_argument("--config-json", default=None,
                   help="plan: section as JSON (default: the one the plan was made with)")
    e.set_defaults(func=_explain)


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


def _explain(args: argparse.Namespace) -> int:
    import polars as pl

    from kxl.buckets.schema import BUCKETS_SCHEMA
    from kxl.captions.augment import augment
    from kxl.config import section_from_json
    from kxl.errors import KxlError
    from kxl.plan.config import PlanConfig
    from kxl.plan.explain import format_step, plan_section_of, step_table
    from kxl.plan.read import read_plan_from
    from kxl.tables import read_table

    text = args.config_json
    if text is None:
        made_with = plan_section_of(args.plan)
        text = json.dumps({k: v for k, v in made_with.items() if k != "seed"})
    cfg = section_from_json(PlanConfig, text, "plan")
    rows = read_plan_from(args.plan, args.step, args.rank, until=args.step + 1)
    if rows.height == 0:
        raise KxlError(f"{args.plan}: no rows for step {args.step}"
                       + (f" rank {args.rank}" if args.rank is not None else "")
                       + "; see summary.json for the number of steps")
    captions = read_table(args.captions, {"id": pl.Int64, "caption": pl.String})
    df = step_table(rows, read_table(args.buckets, BUCKETS_SCHEMA), captions, augment,
                    cfg.caption_shuffle, cfg.caption_tag_dropout)
    print(format_step(args.step, df))
    return 0
