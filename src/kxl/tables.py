"""Schema-checked, byte-deterministic parquet tables shared by every stage.

Every table a stage writes goes through `write_table`, which checks the columns and dtypes
against the stage's declared schema first, then writes with fixed settings so that the same
rows give the same bytes on any machine (same library versions).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from kxl.atomic import atomic_path
from kxl.errors import KxlError

Schema = Mapping[str, pl.DataType | type[pl.DataType]]

# Fixed writer settings: changing any of them changes every artifact's bytes.
_ROW_GROUP = 1 << 20
_COMPRESSION = "zstd"
_LEVEL = 3


def check_schema(df: pl.DataFrame, schema: Schema, name: str) -> pl.DataFrame:
    """Return `df` with exactly `schema`'s columns in order, or raise naming the mismatch."""
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise KxlError(f"{name}: missing column(s) {missing}; have {df.columns}")
    extra = [c for c in df.columns if c not in schema]
    if extra:
        raise KxlError(f"{name}: unexpected column(s) {extra}; schema is {list(schema)}")
    for col, dtype in schema.items():
        if df.schema[col] != dtype:
            raise KxlError(f"{name}: column {col!r} has dtype {df.schema[col]}, expected {dtype}")
    return df.select(list(schema))


def write_table(
    df: pl.DataFrame, path: str | os.PathLike[str], schema: Schema, name: str | None = None
) -> None:
    """Check `df` against `schema` and write it atomically as deterministic parquet."""
    with atomic_path(path) as tmp:
        write_table_at(df, tmp, schema, name or Path(path).name)


def write_table_at(df: pl.DataFrame, tmp: str | os.PathLike[str], schema: Schema,
                   name: str) -> None:
    """`write_table`'s check and bytes, written straight to `tmp` (the caller renames it)."""
    table = check_schema(df, schema, name).to_arrow()
    pq.write_table(
        table,
        tmp,
        row_group_size=_ROW_GROUP,
        compression=_COMPRESSION,
        compression_level=_LEVEL,
        write_statistics=True,
        use_dictionary=True,
    )


def read_table(path: str | os.PathLike[str], schema: Schema | None = None) -> pl.DataFrame:
    """Read a parquet table written by `write_table`, checking `schema` when given."""
    path = Path(path)
    if not path.is_file():
        raise KxlError(f"{path}: table not found (run the stage that makes it first)")
    try:
        df = pl.read_parquet(path)
    except Exception as exc:  # polars raises several types for a bad file
        raise KxlError(f"{path}: not a readable parquet table ({exc.__class__.__name__})") from exc
    return check_schema(df, schema, str(path)) if schema is not None else df
