"""Per-post tag-id lists by tag type, in post_tags file (= rowid) order, for the kept posts only.

At full scale post_tags has ~234M rows, so the work is: one streaming pass that filters to kept
posts (a semi-join by `is_in`, order preserving; measured faster than a dense boolean lookup
table, even with a full-scale id set) and looks types up in a dense table; then, per tag type,
list offsets from a binary search over the post-sorted rows. No join, no group_by over the
relations, ids held as Int32 (as the file stores them) until the lists are built.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from kxl.errors import KxlError
from kxl.manifest.schemas import TAG_TYPES

LIST_COLUMNS = [f"tags_{t}" for t in TAG_TYPES]
_UNKNOWN = -1  # type of a tag id that is not in tags.parquet


def check_tag_types(tags: pl.DataFrame, name: str) -> None:
    """Tag ids unique and non-negative, types 0..4 (general/artist/character/copyright/meta)."""
    dup = tags["id"].is_duplicated()
    if dup.any():
        raise KxlError(f"{name}: tag id {tags['id'].filter(dup)[0]} appears more than once")
    bad = tags["id"].is_null() | (tags["id"] < 0) | (tags["id"] > np.iinfo(np.int32).max)
    if bad.any():
        raise KxlError(f"{name}: tag id {tags['id'].filter(bad)[0]} is null or outside "
                       "0..2^31-1; rebuild the metadata stage")
    bad = tags["type"].is_null() | ~tags["type"].is_between(0, len(TAG_TYPES) - 1)
    if bad.any():
        row = tags.filter(bad).row(0, named=True)
        raise KxlError(f"{name}: tag id {row['id']} has type {row['type']}; types are 0..4 "
                       f"({', '.join(TAG_TYPES)})")


def type_table(tags: pl.DataFrame) -> pl.Series:
    """Dense tag id -> type lookup (-1 = no such tag); tag ids are < ~2M on danbooru."""
    size = int(tags["id"].max() or 0) + 1
    lut = np.full(size, _UNKNOWN, dtype=np.int8)
    lut[tags["id"].to_numpy()] = tags["type"].to_numpy()
    return pl.Series("type_of", lut)


def kept_relations(
    relations: pl.LazyFrame, tags: pl.DataFrame, kept_ids: pl.Series, name: str
) -> pl.DataFrame:
    """(post_id Int32, tag_id Int32, type Int8) of the kept posts, sorted by post_id and, within
    a post, in file order."""
    lut = type_table(tags)
    tid, top = pl.col("tag_id"), lut.len() - 1
    # a kept id beyond Int32 has no relation (export-metadata refuses those): drop it
    wanted = kept_ids.cast(pl.Int32, strict=False).drop_nulls()
    query = (
        relations.with_row_index("row")
        .filter(pl.col("post_id").is_in(wanted.implode()))
        .select(
            "row", "post_id", "tag_id",
            type=pl.when(tid.is_between(0, top))
            .then(pl.lit(lut).gather(tid.clip(0, top)))
            .otherwise(pl.lit(_UNKNOWN, dtype=pl.Int8)),
        )
    )
    rel = query.collect(engine="streaming")
    unknown = rel["type"] == _UNKNOWN
    if unknown.any():
        row = rel.filter(unknown).row(0, named=True)
        raise KxlError(f"{name}: row {row['row']} (post {row['post_id']}) names tag id "
                       f"{row['tag_id']}, which is not in tags.parquet; rebuild the metadata stage")
    # The file order is the tag order and the streaming engine keeps it; both are checked,
    # never assumed: the row index restores file order, a stable sort groups the posts.
    if not rel["row"].is_sorted():
        rel = rel.sort("row")
    if not rel["post_id"].is_sorted():
        rel = rel.sort("post_id", maintain_order=True)
    return rel.drop("row")


def tag_lists(rel: pl.DataFrame, kept_ids: np.ndarray) -> pl.DataFrame:
    """One List(Int64) column per tag type, row i = sorted `kept_ids[i]` (empty list if none).

    `rel` is sorted by post_id (file order within a post), so the rows of one type, taken in
    order, are sorted by post too and each post's run is a binary search away. One type at a
    time keeps the peak memory to one type's rows beyond `rel` itself.
    """
    ids = np.sort(np.asarray(kept_ids, dtype=np.int64))
    post, tag, typ = (rel[c].to_numpy() for c in ("post_id", "tag_id", "type"))
    cols = {"id": pl.Series("id", ids, dtype=pl.Int64)}
    for t, col in enumerate(LIST_COLUMNS):
        mask = typ == t
        offsets = np.append(np.searchsorted(post[mask], ids, side="left"), np.count_nonzero(mask))
        values = pa.array(tag[mask].astype(np.int64))
        cols[col] = pl.Series(col, pa.LargeListArray.from_arrays(pa.array(offsets), values))
    return pl.DataFrame(cols)
