"""CLI of stage images: synth-images, fetch-images, extract-images (adapters only)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kxl.config import section_from_json, to_dict
from kxl.images.config import HuggingfaceImages, ImagesConfig, SyntheticImages


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    p = sub.add_parser("synth-images", help="write deterministic synthetic data-XXXX.tar shards")
    p.add_argument("--kept", required=True)
    p.add_argument("--tags", required=True)
    p.add_argument("--config-json", required=True, help="the images.synthetic section as JSON")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_synth)

    p = sub.add_parser("fetch-images", help="link the needed HF dataset shards (via HF cache)")
    p.add_argument("--kept", required=True)
    p.add_argument("--config-json", required=True, help="the images.huggingface section as JSON")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=_fetch)

    p = sub.add_parser("extract-images", help="validate and extract the manifest's images")
    p.add_argument("--kept", required=True)
    p.add_argument("--shards-dir", required=True)
    p.add_argument("--config-json", required=True, help="the images section as JSON")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--dropped", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_extract)


def _synth(args: argparse.Namespace) -> int:
    from kxl.atomic import atomic_dir
    from kxl.images.synth import synth_shards
    from kxl.provenance import record
    from kxl.tables import read_table

    cfg = section_from_json(SyntheticImages, args.config_json, "images.synthetic")
    kept, tags = read_table(args.kept), read_table(args.tags)
    with atomic_dir(args.out_dir) as tmp:
        n = synth_shards(kept, tags, cfg, tmp, args.threads)
    print(f"synth-images: {n} members for {kept.height} kept posts in {args.out_dir}")
    record("images", [args.out_dir], [args.kept, args.tags], to_dict(cfg))
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from kxl.atomic import atomic_dir
    from kxl.images.fetch import fetch_shards, pin_hint
    from kxl.images.synth import KEPT_ID
    from kxl.provenance import record
    from kxl.tables import read_columns

    cfg = section_from_json(HuggingfaceImages, args.config_json, "images.huggingface")
    ids = read_columns(args.kept, KEPT_ID)["id"].to_numpy()
    with atomic_dir(args.out_dir) as tmp:
        links, commit = fetch_shards(ids, cfg, tmp)
    print(f"fetch-images: {len(links)} shard files from {cfg.repo_id}@{cfg.revision} "
          f"(commit {commit})")
    hint = pin_hint(cfg, commit, f"{args.out_dir}/families.json")
    if hint:
        print(f"fetch-images: {hint}")
    record("images", [args.out_dir], [args.kept], {**to_dict(cfg), "commit": commit})
    return 0


def _extract(args: argparse.Namespace) -> int:
    from kxl.atomic import atomic_dir
    from kxl.images.extract import DATASET_SCHEMA, DROPPED_SCHEMA, Limits, extract_images
    from kxl.images.synth import KEPT_ID
    from kxl.provenance import record
    from kxl.tables import read_columns, write_table

    cfg = section_from_json(ImagesConfig, args.config_json, "images")
    ids = read_columns(args.kept, KEPT_ID)["id"].to_numpy()
    # `file` is relative to the dataset table's folder (results/images/).
    prefix = Path(os.path.relpath(args.out_dir, Path(args.dataset).parent)).as_posix()
    with atomic_dir(args.out_dir) as tmp:
        dataset, dropped, rejected = extract_images(
            ids, Path(args.shards_dir), tmp, prefix,
            Limits(cfg.max_pixels, cfg.max_file_bytes), cfg.on_bad_shard, args.threads,
        )
    for note in rejected:
        print(f"extract-images: rejected member {note}", file=sys.stderr)
    write_table(dataset, args.dataset, DATASET_SCHEMA)
    write_table(dropped, args.dropped, DROPPED_SCHEMA)
    counts = dict(dropped["reason"].value_counts(sort=True).iter_rows())
    print(f"extract-images: kept {dataset.height} of {len(ids)}; dropped {counts}")
    outs = [args.out_dir, args.dataset, args.dropped]
    record("images", outs, [args.kept, args.shards_dir], to_dict(cfg))
    return 0
