"""Prompts and seeds of the generation jobs: one row per (character, image).

Prompts follow the model card's format `<1girl/1boy>, <character>, <series>, <quality tags>,
<year>, <rating>` with the captions' tag-text rule (underscores become `tag_word_sep` in names
longer than 3 characters; parentheses kept), so a model is asked in the words it was trained on.
A missing gender or series is left out rather than written as an empty field.
Seeds are m(m(m(run_seed ^ EVAL_STREAM) ^ tag_id) ^ image) >> 1 with m = splitmix64: fixed per
(character, image) and the same for every model compared, so models differ only in weights.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from kxl.eval.config import GenerateConfig
from kxl.plan.seeds import splitmix64

EVAL_STREAM = 0x6576616C  # ASCII "eval": separates these seeds from the plan's
JOBS_SCHEMA = {
    "rank": pl.Int32, "tag_id": pl.Int64, "image": pl.Int32, "seed": pl.Int64,
    "prompt": pl.String, "negative_prompt": pl.String,
}


def tag_text(name: pl.Expr, word_sep: str) -> pl.Expr:
    """The captioner's rule: names longer than 3 characters get their underscores replaced."""
    return pl.when(name.str.len_chars() > 3).then(
        name.str.replace_all("_", word_sep, literal=True)).otherwise(name)


def image_seeds(run_seed: int, tag_ids: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Int64 seed per (tag_id, image) pair (63 bits, so torch and parquet both take it)."""
    head = splitmix64(np.array([run_seed], dtype=np.uint64) ^ np.uint64(EVAL_STREAM))
    per_char = splitmix64(splitmix64(head) ^ tag_ids.astype(np.uint64))
    return (splitmix64(per_char ^ images.astype(np.uint64)) >> np.uint64(1)).astype(np.int64)


def generation_jobs(characters: pl.DataFrame, cfg: GenerateConfig, run_seed: int) -> pl.DataFrame:
    """Every (character, image) job with its prompt, negative prompt and seed, in rank order."""
    n = cfg.images_per_character
    jobs = characters.select("rank", "tag_id", "gender", "character", "series").join(
        pl.DataFrame({"image": pl.Series(range(n), dtype=pl.Int32)}), how="cross"
    ).sort(["rank", "image"])
    fields = [
        pl.col("gender"), tag_text(pl.col("character"), cfg.tag_word_sep),
        tag_text(pl.col("series"), cfg.tag_word_sep),
        *(pl.lit(t or None, pl.String) for t in (cfg.quality_tags, cfg.year_tag, cfg.rating_tag)),
    ]
    seeds = image_seeds(run_seed, jobs["tag_id"].to_numpy(), jobs["image"].to_numpy())
    return jobs.select(
        "rank", "tag_id", "image", pl.Series("seed", seeds, dtype=pl.Int64),
        pl.concat_str(fields, separator=", ", ignore_nulls=True).alias("prompt"),
        pl.lit(cfg.negative_prompt, pl.String).alias("negative_prompt"),
    )
