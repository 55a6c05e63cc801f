"""Column contracts of the manifest stage's inputs and outputs (docs/formats.md)."""

from __future__ import annotations

import polars as pl

# Reasons in the order they are tested: the first that matches is the recorded one.
REASONS = ("duplicate", "not_in_db", "deleted", "banned", "gold_only", "not_image")
TAG_TYPES = ("general", "artist", "character", "copyright", "meta")  # HakuBooru types 0..4

POSTS_COLUMNS = {
    "id": pl.Int64, "created_at": pl.String, "md5": pl.String, "file_ext": pl.String,
    "image_width": pl.Int32, "image_height": pl.Int32, "rating": pl.Int8, "fav_count": pl.Int32,
    "is_deleted": pl.Boolean, "is_banned": pl.Boolean, "file_url": pl.String,
}
TAGS_COLUMNS = {"id": pl.Int64, "type": pl.Int8}
# metadata/post_tags.parquet: the relation rows in rowid order (the file order is the order)
POST_TAGS_COLUMNS = {"post_id": pl.Int32, "tag_id": pl.Int32}

KEPT_SCHEMA = {
    "id": pl.Int64, "position": pl.Int64, "range_index": pl.Int16, "md5": pl.String,
    "file_ext": pl.String, "width": pl.Int32, "height": pl.Int32, "rating": pl.Int8,
    "fav_count": pl.Int32, "created_at": pl.String,
    **{f"tags_{t}": pl.List(pl.Int64) for t in TAG_TYPES},
}
DROPPED_SCHEMA = {"position": pl.Int64, "id": pl.Int64, "reason": pl.String, "detail": pl.String}
