"""The manifest: selected rows split into kept (with tag lists) and dropped (with a reason)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from kxl.errors import KxlError
from kxl.manifest import tags as tag_mod
from kxl.manifest.filter import check_posts, classify
from kxl.manifest.schemas import (
    DROPPED_SCHEMA,
    KEPT_SCHEMA,
    POST_TAGS_COLUMNS,
    POSTS_COLUMNS,
    REASONS,
    TAGS_COLUMNS,
)
from kxl.posts.select import SELECTED_SCHEMA
from kxl.tables import checked_scan, read_columns


@dataclass(frozen=True)
class Manifest:
    kept: pl.DataFrame  # KEPT_SCHEMA, sorted by id
    dropped: pl.DataFrame  # DROPPED_SCHEMA, sorted by position
    summary: dict[str, Any]


def check_selected(selected: pl.DataFrame, name: str) -> pl.DataFrame:
    """Positions must be exactly 0..N-1 (the posts stage writes them so); ids not null."""
    selected = selected.sort("position")
    pos = selected["position"]
    if selected["id"].null_count() or pos.null_count() or not (
        pos == pl.int_range(0, selected.height, dtype=pl.Int64, eager=True)
    ).all():
        raise KxlError(f"{name}: positions are not 0..{selected.height - 1} or an id is null; "
                       "rebuild it with `kxl select-posts`")
    return selected


def kept_table(classified: pl.DataFrame, lists: pl.DataFrame) -> pl.DataFrame:
    """Kept rows sorted by id, with the tag lists (`lists` has one row per kept id, by id)."""
    kept = (
        classified.filter(pl.col("reason").is_null())
        .rename({"image_width": "width", "image_height": "height"})
        .sort("id")
    )
    if not kept["id"].equals(lists["id"]):  # both sorted unique kept ids: a bug otherwise
        raise KxlError("manifest: tag lists are not aligned with the kept posts; this is a kxl bug")
    return pl.concat([kept, lists.drop("id")], how="horizontal").select(list(KEPT_SCHEMA))


def check_invariant(n_selected: int, kept: pl.DataFrame, dropped: pl.DataFrame) -> None:
    """Every selected position is in exactly one of kept / dropped; fail loudly otherwise."""
    positions = pl.concat([kept["position"], dropped["position"]]).sort()
    whole = pl.int_range(0, n_selected, dtype=pl.Int64, eager=True)
    if positions.len() != n_selected or not (positions == whole).all():
        raise KxlError(f"manifest invariant broken: selected {n_selected} != kept {kept.height} "
                       f"+ dropped {dropped.height} (or a position repeats); this is a kxl bug")


def build_manifest(
    selected: pl.DataFrame, posts: pl.DataFrame, tags: pl.DataFrame,
    relations: pl.LazyFrame, image_exts: list[str], names: dict[str, str],
) -> Manifest:
    """Classify every selected row, attach tag lists to the kept ones, check the invariant.

    `posts` needs only the rows of selected ids; `names` maps selected/posts/tags/post_tags to
    the file names used in error messages.
    """
    selected = check_selected(selected.select("position", "id", "range_index"), names["selected"])
    check_posts(posts, names["posts"])
    tag_mod.check_tag_types(tags, names["tags"])
    classified = classify(selected, posts, image_exts)
    dropped = (
        classified.filter(pl.col("reason").is_not_null()).select(list(DROPPED_SCHEMA))
        .sort("position")
    )
    kept_ids = classified.filter(pl.col("reason").is_null())["id"]
    # No name holds the ~1-2 GB relations frame, so it is freed as soon as the lists exist.
    lists = tag_mod.tag_lists(
        tag_mod.kept_relations(relations, tags, kept_ids, names["post_tags"]), kept_ids.to_numpy()
    )
    kept = kept_table(classified, lists)
    check_invariant(selected.height, kept, dropped)
    counts = dict(dropped["reason"].value_counts().iter_rows())
    summary = {
        "selected": selected.height, "kept": kept.height, "dropped_total": dropped.height,
        "dropped": {r: int(counts.get(r, 0)) for r in REASONS}, "image_exts": list(image_exts),
    }
    return Manifest(kept, dropped, summary)


def build_manifest_from_files(
    selected: str, posts: str, tags: str, post_tags: str, image_exts: list[str]
) -> Manifest:
    """Read only the needed columns (and only the selected ids' posts rows), then build."""
    sel = read_columns(selected, SELECTED_SCHEMA)
    wanted = sel.select(pl.col("id").unique()).lazy()
    post_rows = checked_scan(posts, POSTS_COLUMNS).join(wanted, on="id", how="semi").collect()
    relations = checked_scan(post_tags, POST_TAGS_COLUMNS)
    return build_manifest(
        sel, post_rows, read_columns(tags, TAGS_COLUMNS), relations, image_exts,
        {"selected": selected, "posts": posts, "tags": tags, "post_tags": post_tags},
    )
