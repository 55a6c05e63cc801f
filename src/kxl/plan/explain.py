"""`kxl explain-step`: what one optimizer step saw, caption exactly as the text encoder got it."""

from __future__ import annotations

import json
from collections.abc import Callable

import polars as pl

from kxl.errors import KxlError

Augment = Callable[[str, int, bool, float], str]


def step_table(rows: pl.DataFrame, buckets: pl.DataFrame, captions: pl.DataFrame,
               augment: Augment, shuffle: bool, tag_dropout: float) -> pl.DataFrame:
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
    seen = [augment(c, int(s), shuffle, tag_dropout)
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


def plan_section_of(plan: str) -> dict:
    """The plan section a plan file was made with, from provenance records: the plan's own
    (stage plan), or for a plan derived from another (`kxl emulate-resume` writes the data order
    of a crashed run's resume) the record of the plan it was derived from, followed back."""
    from kxl.provenance import record_path

    path, seen = plan, set()
    while path not in seen:
        seen.add(path)
        rec = record_path(path)
        if not rec.is_file():
            raise KxlError(f"{rec}: no provenance record beside the plan; pass --config-json")
        data = json.loads(rec.read_text())
        if data.get("stage") == "plan":
            return dict(data["config"])
        plans = [p for p in data.get("inputs", {}) if p.endswith(".parquet")]
        if len(plans) != 1:
            break
        path = plans[0]
    raise KxlError(f"{plan}: its provenance records lead to no plan section (stage plan); "
                   "pass --config-json")
