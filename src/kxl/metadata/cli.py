"""CLI of stage metadata: synth-metadata, fetch-metadata, export-metadata."""

from __future__ import annotations

import argparse
from pathlib import Path

from kxl.config import section_from_json, to_dict
from kxl.metadata.config import HuggingFaceConfig, SyntheticConfig


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    p = sub.add_parser("synth-metadata", help="write a deterministic synthetic HakuBooru DB")
    p.add_argument("--out", required=True, help="SQLite file to write")
    p.add_argument("--config-json", required=True, help="the metadata.synthetic section")
    p.set_defaults(func=_synth)

    p = sub.add_parser("fetch-metadata", help="get the pinned HF metadata DB and link it")
    p.add_argument("--out", required=True, help="symlink to create")
    p.add_argument("--config-json", required=True, help="the metadata.huggingface section")
    p.set_defaults(func=_fetch)

    p = sub.add_parser("export-metadata", help="validate the DB and export parquet tables")
    p.add_argument("--db", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--threads", type=int, default=2, help="parallel SQLite readers")
    p.set_defaults(func=_export)


def _synth(args: argparse.Namespace) -> int:
    from kxl.metadata.synth import synthesize
    from kxl.provenance import record

    cfg = section_from_json(SyntheticConfig, args.config_json, "metadata.synthetic")
    synthesize(args.out, cfg)
    record("metadata", [args.out], [], to_dict(cfg))
    print(f"wrote {args.out}: synthetic DB, {cfg.n_posts} posts (seed {cfg.seed})")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from kxl.metadata.fetch import fetch_metadata
    from kxl.provenance import record

    cfg = section_from_json(HuggingFaceConfig, args.config_json, "metadata.huggingface")
    out = fetch_metadata(cfg, args.out)
    record("metadata", [out], [], to_dict(cfg))
    print(f"linked {out} -> {out.resolve()}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from kxl.metadata.export import export_metadata
    from kxl.provenance import record

    counts = export_metadata(args.db, args.out_dir, threads=args.threads)
    out = Path(args.out_dir)
    outputs = [out / "posts.parquet", out / "tags.parquet", out / "post_tags.parquet"]
    record("metadata", outputs, [args.db], {})
    print(f"exported {counts} from {args.db} to {out}")
    return 0
