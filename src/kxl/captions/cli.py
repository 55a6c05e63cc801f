"""`kxl make-captions`: one HakuBooru Kohaku caption per kept post (stage 4)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    p = sub.add_parser("make-captions", help="caption every kept post (stage 4)")
    p.add_argument("--kept", required=True, help="manifest/kept.parquet")
    p.add_argument("--tags", required=True, help="metadata/tags.parquet")
    p.add_argument("--config-json", required=True, help="the captions: config section as JSON")
    p.add_argument("--out", required=True, help="captions/captions.parquet")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import time

    from kxl.captions.io import CAPTIONS_SCHEMA, KEPT_COLUMNS, TAGS_COLUMNS
    from kxl.captions.kohaku import CaptionsConfig, caption_chunks
    from kxl.config import section_from_json, to_dict
    from kxl.metadata.stream import TableStream
    from kxl.provenance import record
    from kxl.tables import read_columns

    cfg = section_from_json(CaptionsConfig, args.config_json, "captions")
    start = time.perf_counter()
    kept = read_columns(args.kept, KEPT_COLUMNS)
    tags = read_columns(args.tags, TAGS_COLUMNS)
    # Written chunk by chunk as the captions come (the bytes write_table gives for the whole
    # table in one piece, whatever CHUNK and THREADS), so all captions are never held at once.
    n = 0
    with TableStream(args.out, CAPTIONS_SCHEMA) as stream:
        for chunk in caption_chunks(kept, tags, cfg):
            stream.write(chunk)
            n += chunk.height
    record("captions", [args.out], [args.kept, args.tags], to_dict(cfg))
    print(f"captioned {n} posts in {time.perf_counter() - start:.1f} s")
    return 0
