"""Column contracts of the captions stage (docs/formats.md sections 1, 3 and 4)."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from kxl.errors import KxlError
from kxl.tables import Schema, check_schema

TAG_LIST = pl.List(pl.Int64)
KEPT_COLUMNS: Schema = {  # the part of manifest/kept.parquet that captions read
    "id": pl.Int64, "rating": pl.Int8, "fav_count": pl.Int32, "created_at": pl.String,
    "tags_general": TAG_LIST, "tags_artist": TAG_LIST, "tags_character": TAG_LIST,
    "tags_copyright": TAG_LIST, "tags_meta": TAG_LIST,
}
TAGS_COLUMNS: Schema = {"id": pl.Int64, "name": pl.String, "type": pl.Int8}
CAPTIONS_SCHEMA: Schema = {"id": pl.Int64, "caption": pl.String}


def read_columns(path: str | os.PathLike[str], schema: Schema) -> pl.DataFrame:
    """Read only `schema`'s columns of a parquet table, checking names and dtypes."""
    path = Path(path)
    if not path.is_file():
        raise KxlError(f"{path}: table not found (run the stage that makes it first)")
    try:
        have = pl.read_parquet_schema(path)
    except Exception as exc:  # polars raises several types for a bad file
        raise KxlError(f"{path}: not a readable parquet table ({exc.__class__.__name__})") from exc
    missing = [c for c in schema if c not in have]
    if missing:
        raise KxlError(f"{path}: missing column(s) {missing}; rebuild it with this kxl version")
    return check_schema(pl.read_parquet(path, columns=list(schema)), schema, str(path))
