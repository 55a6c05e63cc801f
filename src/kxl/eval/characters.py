"""The character set: deepghs `character_index` style selection from the dataset itself.

Characters are ranked by how many dataset posts (kept and with a valid image) carry their tag;
those with at least `min_posts` qualify. References are the character's *solo-character* posts
(exactly one character tag: CCIP compares single characters, and the synthetic renderer draws
only a post's first character tag), best first by fav_count then id, at most `max_refs`. A
qualifying character with fewer than `min_refs` references is left out and named in the summary.
The top `top_n` by (post_count desc, name asc) are kept. Series = the most frequent co-occurring
copyright tag; gender = the most frequent of 1girl/1boy/1other (ties in that order; none -> null).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from kxl.errors import KxlError
from kxl.eval.config import CharactersConfig
from kxl.tables import require_columns

CHARACTERS_SCHEMA = {
    "rank": pl.Int32, "tag_id": pl.Int64, "character": pl.String, "series": pl.String,
    "gender": pl.String, "post_count": pl.Int64, "n_refs": pl.Int32,
}
REFS_SCHEMA = {
    "rank": pl.Int32, "tag_id": pl.Int64, "ref_index": pl.Int32, "post_id": pl.Int64,
    "file": pl.String,
}
GENDERS = ("1girl", "1boy", "1other")
CHARACTER_TYPE, COPYRIGHT_TYPE, GENERAL_TYPE = 2, 3, 0
_KEPT = {"id": pl.Int64, "fav_count": pl.Int32, "tags_general": pl.List(pl.Int64),
         "tags_character": pl.List(pl.Int64), "tags_copyright": pl.List(pl.Int64)}
_TAGS = {"id": pl.Int64, "name": pl.String, "type": pl.Int8}
_DATASET = {"id": pl.Int64, "file": pl.String}


def select_characters(
    kept: pl.DataFrame, tags: pl.DataFrame, dataset: pl.DataFrame, cfg: CharactersConfig
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """(characters, refs, summary) for the dataset; see the module doc for every rule."""
    if cfg.max_refs < cfg.min_refs:
        raise KxlError(f"config eval.characters: max_refs {cfg.max_refs} < min_refs "
                       f"{cfg.min_refs}; no character could qualify")
    kept = require_columns(kept, _KEPT, "kept.parquet")
    tags = require_columns(tags, _TAGS, "tags.parquet")
    posts = kept.join(require_columns(dataset, _DATASET, "dataset.parquet"), on="id", how="inner")
    char_posts = _character_posts(posts, tags)
    counts = char_posts.group_by("tag_id").agg(pl.len().cast(pl.Int64).alias("post_count"))
    eligible = counts.filter(pl.col("post_count") >= cfg.min_posts)
    refs = _references(char_posts.join(eligible, on="tag_id", how="semi"), cfg.max_refs)
    n_refs = refs.group_by("tag_id").agg(pl.len().cast(pl.Int32).alias("n_refs"))
    ranked = (
        eligible.join(n_refs, on="tag_id", how="left")
        .with_columns(pl.col("n_refs").fill_null(0))
        .join(tags.select(pl.col("id").alias("tag_id"), pl.col("name").alias("character")),
              on="tag_id", how="left")
        .sort(["post_count", "character"], descending=[True, False])
    )
    few = ranked.filter(pl.col("n_refs") < cfg.min_refs)
    enough = ranked.filter(pl.col("n_refs") >= cfg.min_refs)
    if enough.height < cfg.top_n and not cfg.allow_fewer:
        raise KxlError(
            f"eval.characters: {enough.height} character(s) qualify (>= {cfg.min_posts} posts "
            f"in the dataset and >= {cfg.min_refs} references; {few.height} more with too few "
            f"references), top_n asks for exactly {cfg.top_n}; lower top_n or set "
            "allow_fewer: true")
    chosen = enough.head(cfg.top_n).with_row_index(
        "rank").with_columns(pl.col("rank").cast(pl.Int32))
    chosen = chosen.join(_series(posts, char_posts, tags), on="tag_id", how="left").join(
        _gender(posts, char_posts, tags), on="tag_id", how="left").sort("rank")
    refs = refs.join(chosen.select("tag_id", "rank"), on="tag_id", how="inner").sort(
        ["rank", "ref_index"])
    summary = {
        "dataset_posts": posts.height, "qualifying": eligible.height, "selected": chosen.height,
        "too_few_refs": few["character"].to_list(), "config": dict(cfg.__dict__),
    }
    return chosen.select(list(CHARACTERS_SCHEMA)), refs.select(list(REFS_SCHEMA)), summary


def _character_posts(posts: pl.DataFrame, tags: pl.DataFrame) -> pl.DataFrame:
    """One row per (post, character tag): id, tag_id, n_chars, fav_count, file."""
    rows = posts.select(
        "id", "fav_count", "file", pl.col("tags_character").list.len().alias("n_chars"),
        pl.col("tags_character").alias("tag_id"),
    ).explode("tag_id").drop_nulls("tag_id")
    known = rows.join(tags.filter(pl.col("type") == CHARACTER_TYPE).select(
        pl.col("id").alias("tag_id")), on="tag_id", how="anti")
    if known.height:
        r = known.row(0, named=True)
        raise KxlError(f"kept.parquet: post {r['id']} has character tag {r['tag_id']} that is not "
                       "a character in tags.parquet; rebuild manifest and metadata from one DB")
    return rows


def _references(char_posts: pl.DataFrame, max_refs: int) -> pl.DataFrame:
    """Solo-character posts per character, best first (fav_count desc, id asc), <= max_refs."""
    solo = char_posts.filter(pl.col("n_chars") == 1).sort(
        ["tag_id", "fav_count", "id"], descending=[False, True, False])
    ranked = solo.with_columns(pl.int_range(pl.len()).over("tag_id").cast(pl.Int32)
                               .alias("ref_index"))
    return ranked.filter(pl.col("ref_index") < max_refs).select(
        "tag_id", "ref_index", pl.col("id").alias("post_id"), "file")


def _most_frequent(pairs: pl.DataFrame, order: str) -> pl.DataFrame:
    """Per tag_id the `value` with the highest count, ties broken by ascending `order`."""
    counts = pairs.group_by("tag_id", "value", order).agg(pl.len().alias("n"))
    return counts.sort(["tag_id", "n", order], descending=[False, True, False]).group_by(
        "tag_id", maintain_order=True).first().select("tag_id", "value")


def _series(posts: pl.DataFrame, char_posts: pl.DataFrame, tags: pl.DataFrame) -> pl.DataFrame:
    cp = posts.select("id", pl.col("tags_copyright").alias("cid")).explode("cid").drop_nulls()
    pairs = char_posts.select("id", "tag_id").join(cp, on="id").join(
        tags.select(pl.col("id").alias("cid"), pl.col("name").alias("value")), on="cid")
    return _most_frequent(pairs.with_columns(pl.col("value").alias("key")), "key").rename(
        {"value": "series"})


def _gender(posts: pl.DataFrame, char_posts: pl.DataFrame, tags: pl.DataFrame) -> pl.DataFrame:
    ids = tags.filter((pl.col("type") == GENERAL_TYPE) & pl.col("name").is_in(list(GENDERS)))
    order = pl.DataFrame({"value": list(GENDERS), "key": list(range(len(GENDERS)))})
    gid = ids.select(pl.col("id").alias("gid"), pl.col("name").alias("value")).join(order, "value")
    gp = posts.select("id", pl.col("tags_general").alias("gid")).explode("gid").join(gid, "gid")
    pairs = char_posts.select("id", "tag_id").join(gp, on="id")
    return _most_frequent(pairs, "key").rename({"value": "gender"})
