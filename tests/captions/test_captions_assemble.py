"""The flat-array caption assembly equals a plain per-row reference."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from kxl.captions.assemble import (
    KeepFlexJoiner,
    interleave,
    join_tokens,
    list_part,
    scalar_part,
)

VOCAB = pa.array(["a", "bb", "", "d d", "é"], type=pa.large_string())


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 6).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.lists(st.lists(st.integers(0, 4), max_size=4), min_size=n, max_size=n),
             min_size=1, max_size=4),
)))
def test_interleave_and_join_equal_per_row_concatenation(case) -> None:  # noqa: ANN001
    n_rows, parts_lists = case
    parts = []
    for part in parts_lists:
        rows = np.array([r for r, toks in enumerate(part) for _ in toks], dtype=np.int64)
        tokens = np.array([t for toks in part for t in toks], dtype=np.int64)
        parts.append((rows, tokens))
    offsets, tokens = interleave(parts, n_rows)
    expected = [[t for part in parts_lists for t in part[r]] for r in range(n_rows)]
    got = [tokens[offsets[r]:offsets[r + 1]].tolist() for r in range(n_rows)]
    assert got == expected
    words = VOCAB.to_pylist()
    joined = join_tokens(VOCAB, offsets, tokens, ", ").to_pylist()
    assert joined == [", ".join(words[t] for t in row) for row in expected]


def test_list_part_skips_null_and_empty_lists_and_keeps_order() -> None:
    s = pl.Series([[3, 1], None, [], [2, 2, 5]], dtype=pl.List(pl.Int64))
    rows, values = list_part(s)
    assert rows.tolist() == [0, 0, 3, 3, 3] and values.to_list() == [3, 1, 2, 2, 5]
    rows, values = list_part(s.slice(1, 3))  # a slice keeps its own row numbers
    assert rows.tolist() == [2, 2, 2] and values.to_list() == [2, 2, 5]


def test_scalar_part_drops_nulls() -> None:
    rows, tokens = scalar_part(pl.Series([4, None, 0], dtype=pl.Int64))
    assert rows.tolist() == [0, 2] and tokens.tolist() == [4, 0]


def _parts(lists: list[list[list[int]]]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.array([r for r, toks in enumerate(part) for _ in toks], dtype=np.int64),
             np.array([t for toks in part for t in toks], dtype=np.int64)) for part in lists]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 6).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.lists(st.lists(st.integers(0, 4), max_size=3), min_size=n, max_size=n),
             max_size=3),
    st.lists(st.lists(st.lists(st.integers(0, 4), max_size=3), min_size=n, max_size=n),
             max_size=3),
    st.sampled_from([", ", " ", ""]), st.sampled_from(["|||", "", "é"]),
)))
def test_keep_flex_join_equals_two_joins_and_a_separator(case) -> None:  # noqa: ANN001
    """join(keep) + sep + keep_sep + join(flex) per row, empty parts included."""
    n_rows, keep, flex, sep, keep_sep = case
    joiner = KeepFlexJoiner(VOCAB, sep, keep_sep)
    got = joiner.join(_parts(keep), _parts(flex), n_rows)
    assert got.type == pa.large_string() and len(got) == n_rows
    words = VOCAB.to_pylist()

    def joined(lists: list[list[list[int]]], r: int) -> str:
        return sep.join(words[t] for part in lists for t in part[r])

    assert got.to_pylist() == [joined(keep, r) + sep + keep_sep + joined(flex, r)
                               for r in range(n_rows)]
