"""`kxl explain-step`: what one optimizer step saw, caption exactly as the text encoder got it.

A stage-train command: the plan fixes which posts a step saw and their sample seeds, but the
caption augmentation is the training run's (train.caption_shuffle, train.caption_tag_dropout),
so the settings come from the run: the provenance record of its LoKr, or a train section given
by hand. A plan derived from the run's plan (`kxl emulate-resume`) is explained with the same."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from kxl.errors import KxlError
from kxl.train.config import CaptionAug

Augment = Callable[[str, int, bool, float], str]


def step_table(rows: pl.DataFrame, buckets: pl.DataFrame, captions: pl.DataFrame,
               augment: Augment, caption: CaptionAug) -> pl.DataFrame:
    """Plan rows of one step joined to their bucket geometry and augmented caption."""
    geo = buckets.select(pl.col("id").alias("post_id"), "bucket_w", "bucket_h", "orig_w",
                         "orig_h", "cond_crop_top", "cond_crop_left")
    caps = captions.select(pl.col("id").alias("post_id"), "caption")
    df = rows.join(geo, on="post_id", how="left").join(caps, on="post_id", how="left")
    for col, name in (("bucket_w", "buckets.parquet"), ("caption", "captions.parquet")):
        missing = df.filter(pl.col(col).is_null())
        if missing.height:
            raise KxlError(f"{name}: no row for post {missing['post_id'][0]} of the plan; "
                           "re-run the stages that make it from the same dataset")
    # A handful of rows (one step), so a Python loop over them is fine.
    seen = [augment(c, int(s), caption.shuffle, caption.tag_dropout)
            for c, s in zip(df["caption"], df["sample_seed"], strict=True)]
    return df.with_columns(pl.Series("seen_caption", seen, dtype=pl.String))


def format_step(step: int, df: pl.DataFrame) -> str:
    """Human-readable lines: one header, one line per sample."""
    epochs = sorted(set(df["epoch"].to_list()))
    ranks = df["rank"].n_unique()
    micro = df.select("rank", "micro").unique().height
    lines = [f"step {step} (epoch {', '.join(map(str, epochs))}): {ranks} rank(s), "
             f"{micro} micro-batch(es), {df.height} sample(s)"]
    for r in df.iter_rows(named=True):
        lines.append(
            f"rank {r['rank']} micro {r['micro']} slot {r['slot']} post {r['post_id']} "
            f"bucket {r['bucket_w']}x{r['bucket_h']} orig {r['orig_w']}x{r['orig_h']} "
            f"crop_top_left ({r['cond_crop_top']},{r['cond_crop_left']}) "
            f"seed {r['sample_seed']}\n    caption: {r['seen_caption']}"
        )
    return "\n".join(lines)


def caption_of(train: dict[str, Any], where: str) -> CaptionAug:
    """The caption settings of a train section (a config or a training run's record)."""
    missing = [k for k in ("caption_shuffle", "caption_tag_dropout") if k not in train]
    if missing:
        raise KxlError(f"{where}: no train.{missing[0]} (a run made before the caption settings "
                       "moved to train:?); pass --config-json with the train section")
    shuffle, dropout = train["caption_shuffle"], train["caption_tag_dropout"]
    number = isinstance(dropout, int | float) and not isinstance(dropout, bool)
    if not (isinstance(shuffle, bool) and number):
        raise KxlError(f"{where}: caption_shuffle must be true/false and caption_tag_dropout a "
                       f"number, got {shuffle!r} and {dropout!r}")
    return CaptionAug(shuffle, float(dropout))


def trained_caption(lokr: str | Path) -> CaptionAug:
    """The caption settings a training run used: the train section in its LoKr's provenance
    record (written by `kxl train` beside results/epsilon-lokr.safetensors)."""
    from kxl.provenance import record_path

    rec = record_path(lokr)
    if not rec.is_file():
        raise KxlError(f"{rec}: no provenance record of the training run (has {lokr} been "
                       "trained?); pass --lokr with a trained run's LoKr, or --config-json with "
                       "the train section, e.g. '{\"caption_shuffle\": true, "
                       "\"caption_tag_dropout\": 0.15}'")
    data = json.loads(rec.read_text())
    return caption_of(data.get("config") or {}, str(rec))
