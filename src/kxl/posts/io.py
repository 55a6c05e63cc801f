"""Checks on upstream tables beyond their columns (which kxl.tables.read_columns checks)."""

from __future__ import annotations

import polars as pl

from kxl.errors import KxlError


def require_no_nulls(df: pl.DataFrame, columns: list[str], name: str) -> None:
    """Raise naming the first null of each column that must be complete."""
    for col in columns:
        nulls = df[col].is_null()
        if nulls.any():
            row = int(nulls.arg_max() or 0)
            raise KxlError(f"{name}: column {col!r} has {int(nulls.sum())} null(s), first at row "
                           f"{row}; the upstream stage must fill it (docs/formats.md)")
