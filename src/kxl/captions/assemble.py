"""Flat token arrays -> one joined string per post, vectorised with numpy and Arrow.

A "part" is one kind of tag of every post (say, all character tags) as two flat arrays:
`rows` (the post row of each token, non-decreasing) and `tokens` (vocabulary indices, in each
post's order). `interleave` lays several parts out post by post, part after part, without a
sort (O(total tokens)); `join_tokens` turns the result into one string per post. This avoids
per-row list expressions, which were ~5x slower at 5.2M posts x 30 tags.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

Part = tuple[np.ndarray, np.ndarray]  # (rows int64, tokens int64), rows non-decreasing


def list_part(lists: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """A List column as (row of each element, elements); null and empty lists add nothing."""
    arr = lists.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    rows = pc.list_parent_indices(arr).to_numpy().astype(np.int64)
    return rows, pl.Series(pc.list_flatten(arr))


def scalar_part(tokens: pl.Series) -> Part:
    """One optional token per row (null = none) as a part."""
    rows = tokens.is_not_null().arg_true().to_numpy().astype(np.int64)
    return rows, tokens.drop_nulls().to_numpy().astype(np.int64)


def interleave(parts: Sequence[Part], n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(offsets [n_rows + 1], tokens): row r holds its tokens of part 0, then part 1, ..."""
    counts = [np.bincount(rows, minlength=n_rows) for rows, _ in parts]
    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(sum(counts, np.zeros(n_rows, dtype=np.int64)), out=offsets[1:])
    out = np.empty(offsets[-1], dtype=np.int64)
    cursor = offsets[:-1].copy()  # where each row's next part starts
    for (rows, tokens), count in zip(parts, counts, strict=True):
        part_start = np.zeros(n_rows, dtype=np.int64)
        np.cumsum(count[:-1], out=part_start[1:])
        within = np.arange(len(rows), dtype=np.int64) - part_start[rows]
        out[cursor[rows] + within] = tokens
        cursor += count
    return offsets, out


def join_tokens(vocab: pa.Array, offsets: np.ndarray, tokens: np.ndarray, sep: str) -> pa.Array:
    """Per row: its tokens' vocabulary strings joined by `sep` ("" for no tokens)."""
    words = vocab.take(pa.array(tokens, type=pa.int64()))
    lists = pa.LargeListArray.from_arrays(pa.array(offsets, type=pa.int64()), words)
    return pc.binary_join(lists, pa.scalar(sep, type=words.type))
