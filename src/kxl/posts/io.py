"""Read just the needed columns of an upstream table, checking them against the contract."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from kxl.errors import KxlError
from kxl.tables import Schema


def checked_scan(path: str | os.PathLike[str], schema: Schema) -> pl.LazyFrame:
    """A lazy scan of `schema`'s columns of `path`; raises one line on a missing/mistyped column.

    Upstream tables may carry more columns than a stage needs; only the needed ones are read
    (posts.parquet and post_tags.parquet are GBs at full scale).
    """
    path = Path(path)
    if not path.is_file():
        raise KxlError(f"{path}: table not found (run the stage that makes it first)")
    try:
        have = pl.scan_parquet(path).collect_schema()
    except Exception as exc:  # polars raises several types for a bad file
        raise KxlError(f"{path}: not a readable parquet table ({exc.__class__.__name__})") from exc
    for col, dtype in schema.items():
        if col not in have:
            raise KxlError(f"{path}: missing column {col!r} (docs/formats.md); have {list(have)}")
        if have[col] != dtype:
            raise KxlError(f"{path}: column {col!r} has dtype {have[col]}, expected {dtype} "
                           "(docs/formats.md)")
    return pl.scan_parquet(path).select(list(schema))


def read_columns(path: str | os.PathLike[str], schema: Schema) -> pl.DataFrame:
    """`checked_scan(path, schema)`, collected."""
    return checked_scan(path, schema).collect()


def require_no_nulls(df: pl.DataFrame, columns: list[str], name: str) -> None:
    """Raise naming the first null of each column that must be complete."""
    for col in columns:
        nulls = df[col].is_null()
        if nulls.any():
            row = int(nulls.arg_max() or 0)
            raise KxlError(f"{name}: column {col!r} has {int(nulls.sum())} null(s), first at row "
                           f"{row}; the upstream stage must fill it (docs/formats.md)")
