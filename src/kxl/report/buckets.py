"""Buckets: how the images fall into bucket shapes, how many were upscaled or cropped, and how
many of the plan's micro-batches (and so steps) each bucket gets.

An image is *upscaled* when its resized size exceeds its decoded size on either side, and
*cropped* when the resized size exceeds the bucket on either side (the centre crop removes
pixels), both read from buckets.parquet (docs/formats.md section 6).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from kxl.report.inputs import Missing, RunPaths, collect, read_json, scan

_SIZE_COLUMNS = ["bucket", "orig_w", "orig_h", "resized_w", "resized_h", "bucket_w", "bucket_h"]


@dataclass(frozen=True)
class Buckets:
    # bucket, width, height, aspect, images[, upscaled, cropped][, micro_batches, steps]
    table: pl.DataFrame
    images: int
    upscaled: int | None
    cropped: int | None
    micros_per_step: int | None  # W * A of the plan
    missing: list[Missing] = field(default_factory=list)


def read_histogram(path: Path) -> pl.DataFrame | Missing:
    try:
        df = pl.read_csv(path, schema_overrides={"bucket": pl.Int64, "width": pl.Int64,
                                                 "height": pl.Int64, "count": pl.Int64})
    except FileNotFoundError:
        return Missing(str(path), "missing")
    except Exception as exc:  # polars raises several types for a malformed CSV
        return Missing(str(path), f"not a readable bucket histogram ({exc.__class__.__name__})")
    absent = {"bucket", "width", "height", "count"} - set(df.columns)
    if absent:
        return Missing(str(path), f"has no column(s) {sorted(absent)}")
    return df.select("bucket", "width", "height", pl.col("count").alias("images"))


def resize_shares(sizes: pl.LazyFrame) -> pl.LazyFrame:
    """Per bucket: images upscaled (resized > decoded) and cropped (resized > bucket)."""
    up = (pl.col("resized_w") > pl.col("orig_w")) | (pl.col("resized_h") > pl.col("orig_h"))
    crop = (pl.col("resized_w") > pl.col("bucket_w")) | (pl.col("resized_h") > pl.col("bucket_h"))
    return sizes.group_by("bucket").agg(
        up.sum().cast(pl.Int64).alias("upscaled"), crop.sum().cast(pl.Int64).alias("cropped"))


def plan_per_bucket(plan: pl.LazyFrame) -> pl.LazyFrame:
    """Per bucket: the plan's micro-batches (each is one bucket; slot 0 counts it once)."""
    return (plan.filter(pl.col("slot") == 0).group_by("bucket")
            .agg(pl.len().cast(pl.Int64).alias("micro_batches")))


def bucket_table(hist: pl.DataFrame, shares: pl.DataFrame | None, plan: pl.DataFrame | None,
                 micros_per_step: int | None) -> pl.DataFrame:
    """One row per bucket in aspect-ratio order (tall to wide)."""
    df = hist.with_columns((pl.col("width") / pl.col("height")).alias("aspect"))
    for extra in (shares, plan):
        if extra is not None:
            df = df.join(extra.with_columns(pl.col("bucket").cast(pl.Int64)), on="bucket",
                         how="left")
    if plan is not None:
        df = df.with_columns(pl.col("micro_batches").fill_null(0))
        if micros_per_step:
            df = df.with_columns((pl.col("micro_batches") / micros_per_step).alias("steps"))
    return df.sort("aspect", "width")


def read_buckets(paths: RunPaths) -> Buckets | Missing:
    hist = read_histogram(paths.histogram)
    if isinstance(hist, Missing):
        return hist
    missing: list[Missing] = []
    shares = _collect(scan(paths.buckets, _SIZE_COLUMNS), resize_shares, paths.buckets, missing)
    plan = _collect(scan(paths.plan, ["slot", "bucket"]), plan_per_bucket, paths.plan, missing)
    summary = read_json(paths.plan_summary)
    mps = None
    if isinstance(summary, dict):
        mps = int(summary["world_size"]) * int(summary["grad_accum"])
    table = bucket_table(hist, shares, plan, mps)
    return Buckets(
        table, int(hist["images"].sum()),
        None if shares is None else int(shares["upscaled"].sum()),
        None if shares is None else int(shares["cropped"].sum()),
        mps, missing)


def _collect(lf: pl.LazyFrame | Missing, agg: Callable[[pl.LazyFrame], pl.LazyFrame],
             path: Path, missing: list[Missing]) -> pl.DataFrame | None:
    if isinstance(lf, Missing):
        missing.append(lf)
        return None
    df = collect(agg(lf), path)
    if isinstance(df, Missing):
        missing.append(df)
        return None
    return df
