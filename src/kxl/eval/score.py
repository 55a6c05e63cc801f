"""The CCIP score formula (pure numpy/polars; imgutils only supplies the differences).

For a generated image g of character c with references R_c:
    score(g) = |{r in R_c : diff(r, g) <= threshold}| / |R_c|,   mean_difference(g) = mean diff
(`<=` as imgutils' own `ccip_same` / `ccip_batch_same` decide "same character"). A character's
score is the mean over its generated images, which equals the fraction of its (reference,
generated) pairs judged the same, since every image has the same references. 0..1, higher is
better.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from kxl.errors import KxlError

IMAGE_SCORES_SCHEMA = {
    "model": pl.String, "rank": pl.Int32, "tag_id": pl.Int64, "image": pl.Int32,
    "score": pl.Float64, "mean_difference": pl.Float64, "n_refs": pl.Int32,
}
SCORES_SCHEMA = {
    "model": pl.String, "rank": pl.Int32, "tag_id": pl.Int64, "character": pl.String,
    "series": pl.String, "score": pl.Float64, "mean_difference": pl.Float64,
    "n_images": pl.Int32, "n_refs": pl.Int32,
}


def pair_scores(
    diff: np.ndarray, ref_group: np.ndarray, gen_group: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(score, mean_difference, n_refs) per generated image (columns of `diff` [R, G]).

    Only pairs whose reference and generated image share a group (character) count.
    """
    if diff.shape != (len(ref_group), len(gen_group)):
        raise KxlError(f"difference matrix is {diff.shape}, expected "
                       f"({len(ref_group)}, {len(gen_group)}) (references x generated)")
    mask = ref_group[:, None] == gen_group[None, :]
    n = mask.sum(axis=0)
    if (n == 0).any():
        g = int(gen_group[np.argmax(n == 0)])
        raise KxlError(f"generated image of character {g} has no reference image; rebuild "
                       "characters.parquet and refs.parquet together")
    same = (diff <= threshold) & mask
    return same.sum(axis=0) / n, np.where(mask, diff, 0.0).sum(axis=0) / n, n


def character_scores(images: pl.DataFrame, characters: pl.DataFrame) -> pl.DataFrame:
    """Per (model, character): mean of its images' scores and differences."""
    agg = images.group_by("model", "rank", "tag_id").agg(
        pl.col("score").mean(), pl.col("mean_difference").mean(),
        pl.len().cast(pl.Int32).alias("n_images"), pl.col("n_refs").first(),
    )
    return agg.join(characters.select("tag_id", "character", "series"), on="tag_id",
                    how="left").sort("model", "rank").select(list(SCORES_SCHEMA))


def model_summary(scores: pl.DataFrame) -> pl.DataFrame:
    """Headline per model: mean character score and mean difference, character count."""
    return scores.group_by("model").agg(
        pl.col("score").mean().alias("mean_score"),
        pl.col("mean_difference").mean().alias("mean_difference"),
        pl.len().alias("characters"),
    ).sort("model")
