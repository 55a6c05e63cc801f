"""CLI of stage buckets: `kxl assign-buckets` and `kxl cache-buckets`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    p = sub.add_parser("assign-buckets", help="bucket set, per-image bucket/resize/crop, histogram")
    p.add_argument("--dataset", required=True, help="images/dataset.parquet")
    p.add_argument("--config-json", required=True, help="the buckets: config section as JSON")
    p.add_argument("--out", required=True, help="buckets.parquet")
    p.add_argument("--bucket-set", required=True, help="bucket_set.parquet")
    p.add_argument("--histogram", required=True, help="histogram.csv")
    p.set_defaults(func=_assign)
    c = sub.add_parser("cache-buckets", help="write the bucket cache (buckets.cache)")
    c.add_argument("--dataset", required=True, help="images/dataset.parquet")
    c.add_argument("--buckets", required=True, help="buckets/buckets.parquet")
    c.add_argument("--images-root", required=True, help="folder that dataset 'file' is under")
    c.add_argument("--config-json", required=True, help="the buckets: config section as JSON")
    c.add_argument("--index", required=True, help="cache/index.json (files go beside it)")
    c.set_defaults(func=_cache)


def _assign(args: argparse.Namespace) -> int:
    from kxl.atomic import write_text
    from kxl.buckets.assign import assign
    from kxl.buckets.config import BucketsConfig
    from kxl.buckets.schema import (
        BUCKET_SET_SCHEMA,
        BUCKETS_SCHEMA,
        DATASET_SCHEMA,
        bucket_set_frame,
        buckets_frame,
        histogram_csv,
    )
    from kxl.config import section_from_json, to_dict
    from kxl.provenance import record
    from kxl.tables import read_table, write_table

    cfg = section_from_json(BucketsConfig, args.config_json, "buckets")
    ds = read_table(args.dataset, DATASET_SCHEMA)
    ids, w, h = (ds[c].to_numpy() for c in ("id", "width", "height"))
    a = assign(ids, w, h, resolution=cfg.resolution, min_size=cfg.min_size,
               max_size=cfg.max_size, step=cfg.step, no_upscale=cfg.no_upscale,
               crop_convention=cfg.crop_convention)
    write_table(bucket_set_frame(a.bucket_set), args.bucket_set, BUCKET_SET_SCHEMA)
    write_table(buckets_frame(ids, w, h, a), args.out, BUCKETS_SCHEMA)
    write_text(args.histogram, histogram_csv(a.bucket_set, a.bucket))
    outs = [args.bucket_set, args.out, args.histogram]
    record("buckets", outs, [args.dataset], to_dict(cfg))
    print(f"assigned {len(ids)} image(s) to {len(a.bucket_set)} bucket(s)")
    return 0


def _cache(args: argparse.Namespace) -> int:
    from kxl.atomic import write_json
    from kxl.buckets.cache import remove_stale, write_pixel_cache
    from kxl.buckets.config import BucketsConfig
    from kxl.buckets.schema import BUCKETS_SCHEMA, DATASET_SCHEMA
    from kxl.config import section_from_json, to_dict
    from kxl.provenance import record
    from kxl.tables import read_table

    cfg = section_from_json(BucketsConfig, args.config_json, "buckets")
    out_dir = Path(args.index).parent
    entries = []
    if cfg.cache == "pixels":
        files = read_table(args.dataset, DATASET_SCHEMA)
        entries = write_pixel_cache(Path(args.images_root), files,
                                    read_table(args.buckets, BUCKETS_SCHEMA), out_dir, cfg.resample)
    remove_stale(out_dir, {e["file"] for e in entries})
    write_json(args.index, {"storage": cfg.cache, "resample": cfg.resample, "files": entries})
    record("buckets", [args.index], [args.dataset, args.buckets], to_dict(cfg))
    print(f"bucket cache: storage={cfg.cache}, {len(entries)} file(s)")
    return 0
