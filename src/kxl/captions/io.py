"""Column contracts of the captions stage (docs/formats.md sections 1, 3 and 4)."""

from __future__ import annotations

import polars as pl

from kxl.tables import Schema

TAG_LIST = pl.List(pl.Int64)
KEPT_COLUMNS: Schema = {  # the part of manifest/kept.parquet that captions read
    "id": pl.Int64, "rating": pl.Int8, "fav_count": pl.Int32, "created_at": pl.String,
    "tags_general": TAG_LIST, "tags_artist": TAG_LIST, "tags_character": TAG_LIST,
    "tags_copyright": TAG_LIST, "tags_meta": TAG_LIST,
}
TAGS_COLUMNS: Schema = {"id": pl.Int64, "name": pl.String, "type": pl.Int8}
CAPTIONS_SCHEMA: Schema = {"id": pl.Int64, "caption": pl.String}
