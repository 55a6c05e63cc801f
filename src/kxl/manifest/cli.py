"""`kxl build-manifest`: kept/dropped manifest of the selected posts (docs/formats.md 3)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    p = sub.add_parser("build-manifest", help="keep or drop every selected post (stage 3)")
    p.add_argument("--selected", required=True, help="posts/selected.parquet")
    p.add_argument("--posts", required=True, help="metadata/posts.parquet")
    p.add_argument("--tags", required=True, help="metadata/tags.parquet")
    p.add_argument("--post-tags", required=True, help="metadata/post_tags.parquet")
    p.add_argument("--config-json", required=True, help="the manifest: config section as JSON")
    p.add_argument("--out-kept", required=True, help="manifest/kept.parquet")
    p.add_argument("--out-dropped", required=True, help="manifest/dropped.parquet")
    p.add_argument("--summary", required=True, help="manifest/summary.json")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from kxl.atomic import write_json
    from kxl.config import section_from_json, to_dict
    from kxl.manifest.build import build_manifest_from_files
    from kxl.manifest.config import ManifestConfig
    from kxl.manifest.schemas import DROPPED_SCHEMA, KEPT_SCHEMA
    from kxl.provenance import record
    from kxl.tables import write_table

    cfg = section_from_json(ManifestConfig, args.config_json, "manifest")
    m = build_manifest_from_files(
        args.selected, args.posts, args.tags, args.post_tags, list(cfg.image_exts)
    )
    write_table(m.kept, args.out_kept, KEPT_SCHEMA, "manifest/kept.parquet")
    write_table(m.dropped, args.out_dropped, DROPPED_SCHEMA, "manifest/dropped.parquet")
    write_json(args.summary, m.summary)
    inputs = [args.selected, args.posts, args.tags, args.post_tags]
    record("manifest", [args.out_kept, args.out_dropped, args.summary], inputs, to_dict(cfg))
    print(f"kept {m.summary['kept']} of {m.summary['selected']} selected; "
          f"dropped {m.summary['dropped']}")
    return 0
