"""Schema-checked, byte-deterministic parquet tables shared by every stage.

Every table a stage writes goes through `write_table`, which checks the columns and dtypes
against the stage's declared schema first, then writes with fixed settings so that the same
rows give the same bytes on any machine (same library versions). A stage reading an upstream
table reads it through `read_table` (the whole table, exact schema) or `read_columns` /
`checked_scan` (only the columns it needs, each checked by name and dtype); every column
problem is reported in one format, naming the file and the column.
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


def _check_columns(have: Mapping[str, pl.DataType], schema: Schema, name: str) -> None:
    """Raise one line naming `name` and the first of `schema`'s columns missing or mistyped."""
    for col, dtype in schema.items():
        if col not in have:
            raise KxlError(f"{name}: missing column {col!r} (docs/formats.md); have {list(have)}")
        if have[col] != dtype:
            raise KxlError(f"{name}: column {col!r} has dtype {have[col]}, expected {dtype} "
                           "(docs/formats.md)")


def check_schema(df: pl.DataFrame, schema: Schema, name: str) -> pl.DataFrame:
    """Return `df` with exactly `schema`'s columns in order, or raise naming the mismatch."""
    _check_columns(df.schema, schema, name)
    extra = [c for c in df.columns if c not in schema]
    if extra:
        raise KxlError(f"{name}: unexpected column(s) {extra}; schema is {list(schema)}")
    return df.select(list(schema))


def require_columns(df: pl.DataFrame, schema: Schema, name: str) -> pl.DataFrame:
    """`df` restricted to `schema`'s columns (others may exist), or one line naming the bad one."""
    _check_columns(df.schema, schema, name)
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
    path = _existing(path)
    try:
        df = pl.read_parquet(path)
    except Exception as exc:  # polars raises several types for a bad file
        raise KxlError(f"{path}: not a readable parquet table ({exc.__class__.__name__})") from exc
    return check_schema(df, schema, str(path)) if schema is not None else df


def _existing(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.is_file():
        raise KxlError(f"{path}: table not found (run the stage that makes it first)")
    return path


def checked_scan(path: str | os.PathLike[str], schema: Schema) -> pl.LazyFrame:
    """A lazy scan of `schema`'s columns of `path`; raises one line on a missing/mistyped column.

    Upstream tables may carry more columns than a stage needs; only the needed ones are read
    (posts.parquet and post_tags.parquet are GBs at full scale).
    """
    path = _existing(path)
    try:
        have = pl.scan_parquet(path).collect_schema()
    except Exception as exc:  # polars raises several types for a bad file
        raise KxlError(f"{path}: not a readable parquet table ({exc.__class__.__name__})") from exc
    _check_columns(have, schema, str(path))
    return pl.scan_parquet(path).select(list(schema))


def read_columns(path: str | os.PathLike[str], schema: Schema) -> pl.DataFrame:
    """`checked_scan(path, schema)`, collected."""
    return checked_scan(path, schema).collect()
