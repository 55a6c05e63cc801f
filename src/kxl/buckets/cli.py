"""CLI of stage buckets: `kxl assign-buckets` and `kxl cache-buckets`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl


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
    c.add_argument("--base", help="SDXL single file whose VAE encodes (cache: latents)")
    c.add_argument("--config-dir", help="diffusers configs of --base (cache: latents)")
    c.add_argument("--batch-size", type=int, default=8, help="images per VAE call (latents)")
    c.add_argument("--threads", type=int, default=1, help="torch CPU threads (latents)")
    c.add_argument("--device", default="cpu", help="torch device of the VAE (latents)")
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
    entries: list[dict[str, Any]] = []
    index: dict[str, Any] = {"storage": cfg.cache, "resample": cfg.resample}
    inputs = [args.dataset, args.buckets]
    if cfg.cache != "none":
        files = read_table(args.dataset, DATASET_SCHEMA)
        buckets = read_table(args.buckets, BUCKETS_SCHEMA)
    if cfg.cache == "pixels":
        entries = write_pixel_cache(Path(args.images_root), files, buckets, out_dir, cfg.resample)
    elif cfg.cache == "latents":
        entries, latent_meta = _latents(args, files, buckets, out_dir, cfg.resample)
        index.update(latent_meta)
        inputs += [args.base, args.config_dir]
    remove_stale(out_dir, {e["file"] for e in entries})
    write_json(args.index, {**index, "files": entries})
    # the folder too: `kxl verify` then re-hashes the cache files training reads
    record("buckets", [args.index, out_dir], inputs, to_dict(cfg))
    print(f"bucket cache: storage={cfg.cache}, {len(entries)} file(s)")
    return 0


def _latents(
    args: argparse.Namespace, files: pl.DataFrame, buckets: pl.DataFrame, out_dir: Path,
    resample: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Encode the cache with --base's VAE; return the index entries and what index.json must
    say about the model (training refuses a cache of another base by its sha256)."""
    import torch

    from kxl.buckets.cache import write_latent_cache
    from kxl.determinism import deterministic_torch
    from kxl.errors import KxlError
    from kxl.hashing import sha256_file
    from kxl.model.load import load_sdxl

    if not args.base or not args.config_dir:
        raise KxlError(f"{args.index}: buckets.cache latents needs --base and --config-dir "
                       "(the SDXL file whose VAE encodes the images)")
    deterministic_torch(args.threads)  # bit-identical reruns, on CPU and on CUDA
    vae = load_sdxl(args.base, args.config_dir, device=args.device, dtype=torch.float32).vae
    entries = write_latent_cache(Path(args.images_root), files, buckets, out_dir, resample, vae,
                                 args.batch_size)
    meta = {
        "base_sha256": sha256_file(args.base),
        # recorded, not applied: the files hold the unscaled posterior, training scales samples
        "vae_scaling_factor": float(vae.config.scaling_factor),
        "scaled": False,
        "batch_size": args.batch_size,
    }
    return entries, meta
