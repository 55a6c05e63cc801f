"""`kxl select-posts`: the selected post list from posts.parquet and the `posts:` config."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    p = sub.add_parser("select-posts", help="draw the selected post list (stage 2)")
    p.add_argument("--posts", required=True, help="metadata/posts.parquet")
    p.add_argument("--config-json", required=True, help="the posts: config section as JSON")
    p.add_argument("--seed", required=True, type=int, help="run seed (posts.seed overrides it)")
    p.add_argument("--out", required=True, help="posts/selected.parquet")
    p.add_argument("--summary", required=True, help="posts/summary.json")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import polars as pl

    from kxl.atomic import write_json
    from kxl.config import section_from_json, to_dict
    from kxl.posts.config import PostsConfig
    from kxl.posts.io import require_no_nulls
    from kxl.posts.select import SELECTED_SCHEMA, select_posts
    from kxl.provenance import record
    from kxl.tables import read_columns, write_table

    cfg = section_from_json(PostsConfig, args.config_json, "posts")
    seed = args.seed if cfg.seed is None else cfg.seed
    posts = read_columns(args.posts, {"id": pl.Int64})
    require_no_nulls(posts, ["id"], args.posts)
    sel = select_posts(posts["id"].to_numpy(), cfg.ranges, cfg.mode, seed)
    write_table(sel.table, args.out, SELECTED_SCHEMA, "posts/selected.parquet")
    write_json(args.summary, sel.summary)
    record("posts", [args.out, args.summary], [args.posts], {**to_dict(cfg), "run_seed": args.seed})
    print(f"selected {sel.summary['selected']} posts ({sel.summary['unique']} unique) "
          f"in {cfg.mode} mode, seed {seed}")
    return 0
