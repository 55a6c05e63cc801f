"""Keep or drop each selected row with exactly one reason (first match in REASONS wins)."""

from __future__ import annotations

import polars as pl

from kxl.errors import KxlError
from kxl.manifest.schemas import REASONS


def _rules(image_exts: list[str]) -> list[tuple[str, pl.Expr, pl.Expr]]:
    """(reason, condition, detail) in REASONS order; conditions see selected + posts columns."""
    md5_null, url_null = pl.col("md5").is_null(), pl.col("file_url").is_null()
    ext = pl.col("file_ext")
    gold_detail = (
        pl.when(md5_null & url_null).then(pl.lit("md5 and file_url are null"))
        .when(md5_null).then(pl.lit("md5 is null"))
        .otherwise(pl.lit("file_url is null"))
    )
    rules = [
        ("duplicate", pl.col("position") != pl.col("_first"),
         pl.format("same id as position {}", pl.col("_first"))),
        ("not_in_db", pl.col("_in_db").is_null(), pl.lit("id not in metadata/posts.parquet")),
        ("deleted", pl.col("is_deleted"), pl.lit("is_deleted")),
        ("banned", pl.col("is_banned"), pl.lit("is_banned")),
        ("gold_only", md5_null | url_null, gold_detail),
        ("not_image", ext.is_null() | ~ext.is_in(pl.Series(image_exts, dtype=pl.String).implode()),
         pl.concat_str(pl.lit("file_ext="), ext.fill_null("null"))),
    ]
    assert tuple(r for r, _, _ in rules) == REASONS
    return rules


def check_posts(posts: pl.DataFrame, name: str) -> None:
    """The posts rows the manifest reads: unique ids, no null flags."""
    dup = posts["id"].is_duplicated()
    if dup.any():
        raise KxlError(f"{name}: id {posts['id'].filter(dup)[0]} appears more than once; "
                       "ids must be unique (rebuild the metadata stage)")
    for col in ("is_deleted", "is_banned"):
        nulls = posts[col].is_null()
        if nulls.any():
            raise KxlError(f"{name}: column {col!r} is null for id {posts['id'].filter(nulls)[0]}; "
                           "it must be true or false (rebuild the metadata stage)")


def classify(selected: pl.DataFrame, posts: pl.DataFrame, image_exts: list[str]) -> pl.DataFrame:
    """Selected rows sorted by (id, position) with their posts columns, `reason` and `detail`.

    `reason` is null for kept rows. A duplicate is any draw of an id after its first one.
    Id order makes the first draw of an id the first row of its run (no group_by needed) and
    leaves the kept rows already in the order kept.parquet wants.
    """
    first = pl.col("id").is_first_distinct()
    df = (
        selected.sort("id", "position")
        .with_columns(_first=pl.when(first).then(pl.col("position")).forward_fill())
        .join(posts.with_columns(_in_db=pl.lit(True)), on="id", how="left", maintain_order="left")
    )
    rules = _rules(image_exts)
    # coalesce takes the first non-null: a null condition (flags of a post not in the db) or a
    # false one yields null, so the first matching rule wins.
    reason = pl.coalesce([pl.when(c).then(pl.lit(name)) for name, c, _ in rules])
    detail = pl.coalesce([pl.when(c).then(text) for _, c, text in rules])
    return df.with_columns(reason=reason, detail=detail)
