"""Table schemas of stage 6 (docs/formats.md section 6) and the frames built from an Assignment."""

from __future__ import annotations

import numpy as np
import polars as pl

from kxl.buckets.assign import Assignment

DATASET_SCHEMA = {
    "id": pl.Int64, "file": pl.String, "width": pl.Int32, "height": pl.Int32, "sha256": pl.String,
}
BUCKET_SET_SCHEMA = {"bucket": pl.Int32, "width": pl.Int32, "height": pl.Int32}
_I32 = (
    "bucket", "bucket_w", "bucket_h", "orig_w", "orig_h", "resized_w", "resized_h",
    "crop_left", "crop_top", "cond_crop_top", "cond_crop_left", "target_w", "target_h",
)
BUCKETS_SCHEMA = {"id": pl.Int64, **{c: pl.Int32 for c in _I32}}


def bucket_set_frame(bucket_set: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame(
        {"bucket": np.arange(len(bucket_set)), "width": bucket_set[:, 0],
         "height": bucket_set[:, 1]}
    ).cast(BUCKET_SET_SCHEMA)


def buckets_frame(
    ids: np.ndarray, width: np.ndarray, height: np.ndarray, a: Assignment
) -> pl.DataFrame:
    """One row per image, sorted by id; the target size is the bucket (what the UNet sees)."""
    bw, bh = a.bucket_set[a.bucket, 0], a.bucket_set[a.bucket, 1]
    cols = {
        "id": ids, "bucket": a.bucket, "bucket_w": bw, "bucket_h": bh, "orig_w": width,
        "orig_h": height, "resized_w": a.resized_w, "resized_h": a.resized_h,
        "crop_left": a.crop_left, "crop_top": a.crop_top, "cond_crop_top": a.cond_crop_top,
        "cond_crop_left": a.cond_crop_left, "target_w": bw, "target_h": bh,
    }
    return pl.DataFrame(cols).cast(BUCKETS_SCHEMA).sort("id")


def histogram_csv(bucket_set: np.ndarray, bucket: np.ndarray) -> str:
    """`bucket,width,height,count` for every bucket of the set (zero counts included)."""
    counts = np.bincount(bucket, minlength=len(bucket_set))
    lines = ["bucket,width,height,count"]
    lines += [f"{i},{w},{h},{c}" for i, ((w, h), c) in enumerate(zip(bucket_set, counts,
                                                                      strict=True))]
    return "\n".join(lines) + "\n"
