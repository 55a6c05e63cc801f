"""kxl's vectorised created_at -> year equals `dateutil.parser.parse(...).year` (0 on error)."""

from __future__ import annotations

import datetime as dt

import dateutil.parser
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kxl.captions.dates import created_years
from kxl.errors import KxlError


def reference_year(text: str | None, default: dt.datetime | None = None) -> int:
    """HakuBooru's year_tag: parse, take .year, 0 on any error."""
    try:
        return dateutil.parser.parse(text, default=default).year  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - the reference has a bare except
        return 0


EDGE = [
    "2005-05-24T03:35:31.000-04:00", "2005-05-24T03:35:31-04:00", "2005-05-24T03:35:31Z",
    "2005-05-24 03:35:31", "2005-05-24", "2005-05-24T03:35:31.000-0400", "2024-02-29T00:00:00",
    "2023-02-29T00:00:00", "2005-04-31", "2005-13-01", "2005-00-10", "2005-05-00",
    "2005-05-24T24:00:00", "2005-05-24T23:60:00", "2005-05-24T23:59:60", "0000-01-01",
    "0099-01-01", "0999-12-31", "1000-01-01", "9999-12-31T23:59:59.999999+14:00",
    "2005-05-24T03:35:31.1234567", "2005-05-24T03:35:31+99:00", "2005-05-24T03:35:31+23:59",
    "2005-05-24T03:35:31.000-24:00", "2005-05-24t03:35:31z", " 2005-05-24", "2005-05-24 ",
    "2005/05/24", "20050524", "May 24 2005", "24 May 2005 03:35", "2005", "", "garbage",
    "2005-05-24T03:35", "2005-05-24T03:35:31,5", "2005-05-24T03:35:31.",
    "\u0662\u0660\u0660\u0665-05-24",  # Arabic-Indic digits
]


@pytest.mark.parametrize("text", EDGE)
def test_edge_cases_equal_dateutil(text: str) -> None:
    assert created_years(pl.Series([text]))[0] == reference_year(text)


def test_null_is_year_zero_like_the_reference_type_error() -> None:
    assert created_years(pl.Series([None], dtype=pl.String)).to_list() == [0]
    assert reference_year(None) == 0


def test_year_less_values_are_refused_not_dated_by_the_clock() -> None:
    for text in ("12:30", "May 24", "3"):
        with pytest.raises(KxlError, match=r"post 42: created_at .* has no year"):
            created_years(pl.Series([text]), pl.Series([42]))


def test_fast_path_does_not_call_dateutil(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("dateutil called on an ISO value")

    monkeypatch.setattr(dateutil.parser, "parse", boom)
    values = pl.Series(["2005-05-24T03:35:31.000-04:00", "2005-02-30T00:00:00.000-04:00"] * 1000)
    assert created_years(values).unique().sort().to_list() == [0, 2005]


def _around(*edges: int) -> st.SearchStrategy[int]:
    """Boundary values first: plain integer ranges rarely hit them."""
    return st.sampled_from(edges) | st.integers(min(edges), max(edges))


ISO = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, tz: (
        f"{y:04d}-{mo:02d}-{d:02d}" + (f"{sep}{h:02d}:{mi:02d}:{s:02d}{frac}{tz}" if sep else "")
    ),
    _around(0, 99, 999, 1000, 2004, 2005, 2010, 2011, 2014, 2015, 2020, 2024, 2025, 9999),
    _around(0, 1, 2, 12, 13), _around(0, 1, 28, 29, 30, 31, 32),
    st.sampled_from(["T", " ", "", "t"]),
    _around(0, 23, 24, 25), _around(0, 59, 60, 61), _around(0, 59, 60, 61),
    st.sampled_from(["", ".0", ".000", ".123456", ".1234567", ","]),
    st.sampled_from(["", "Z", "+09:00", "-04:00", "-0400", "+23:59", "+24:00", "+99:00", "z"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(ISO | st.text(alphabet="0123456789-:T Z+./May", max_size=24), max_size=20))
def test_vectorised_years_equal_dateutil(values: list[str]) -> None:
    # A fixed default date makes the comparison independent of the day the test runs; the
    # vectorised path only takes full dates, where dateutil never consults the default.
    fixed = dt.datetime(2000, 1, 1)
    try:
        got = created_years(pl.Series(values, dtype=pl.String)).to_list()
    except KxlError:
        assert any(
            reference_year(v, fixed) != reference_year(v, dt.datetime(2001, 1, 1)) for v in values
        )
        return
    assert got == [reference_year(v, fixed) for v in values]
