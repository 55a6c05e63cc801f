"""The year of a post's `created_at`, exactly as HakuBooru's `dateutil.parser.parse(...).year`.

HakuBooru 0.0.2's `year_tag` runs `dateutil.parser.parse(post.created_at)` on every post and
uses `.year`, with year 0 whenever parsing raises. Parsing 5.2M strings one by one with dateutil
takes minutes, so the common case is done vectorised:

- A strict ISO-8601 shape (danbooru's `2005-05-24T03:35:31.000-04:00`, also with a space
  instead of `T`, `Z`, `+hhmm`, or a bare date) is matched by one regex. dateutil keeps the
  written local date (it never converts to UTC), so the year is simply the first four digits.
- Calendar validity is checked vectorised too: dateutil raises on 2005-02-29 or month 13, and
  then HakuBooru uses year 0, so an impossible date in the strict shape yields 0.
- Everything else (other layouts, out-of-range times, years below 1000, odd whitespace) goes
  to dateutil itself, one row at a time, only for those rows.

A string without a year (`12:30`) makes dateutil fill in *today's* year, so the reference
caption would depend on the day it ran. kxl refuses such a value rather than bake the clock
into an artifact: parsing it with two default dates that differ in the year gives two years.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from kxl.errors import KxlError

# Strict shape only; anything this does not match goes to dateutil. Ranges are limited to what
# dateutil certainly accepts (hours 00-23, seconds 00-59, 1-6 fraction digits, offsets < 24 h).
_ISO = (
    r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])?)?$"
)
# Two defaults with different years (the first a leap year): a string whose parse depends on
# the default has no year of its own.
_DEFAULTS = (dt.datetime(2000, 1, 1), dt.datetime(2001, 1, 1))


def dateutil_year(text: str | None) -> int:
    """dateutil's year for one string, 0 where it raises (HakuBooru's bare `except`)."""
    import dateutil.parser

    years = []
    for default in _DEFAULTS:
        try:
            years.append(dateutil.parser.parse(text, default=default).year)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - the reference swallows every error
            years.append(0)
    if years[0] != years[1]:
        raise KxlError(
            f"created_at {text!r} has no year: HakuBooru would use today's year; "
            "fix the value in the metadata DB (danbooru writes ISO-8601)"
        )
    return years[0]


def created_years(created_at: pl.Series, ids: pl.Series | None = None) -> pl.Series:
    """Int32 year per value as HakuBooru computes it (0 where dateutil fails; null -> 0).

    `ids` (same length) only serves to name the post in an error message.
    """
    s = created_at.cast(pl.String)
    col = pl.col("s")
    strict = col.str.contains(_ISO).fill_null(False)
    # A strict-shape string whose date does not exist: dateutil raises, HakuBooru uses 0.
    valid = col.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False).is_not_null()
    fast = pl.when(strict & valid).then(col.str.slice(0, 4).cast(pl.Int32)).otherwise(0)
    frame = pl.DataFrame({"s": s}).select(fast.cast(pl.Int32).alias("year"), strict.alias("ok"))
    years = frame["year"]
    slow = (~frame["ok"] & s.is_not_null()).arg_true()
    if len(slow):
        # Only the rows in an unusual layout pay for dateutil.
        labels = [f"post {i}" for i in ids.gather(slow)] if ids is not None else [
            f"row {i}" for i in slow
        ]
        texts = s.gather(slow).to_list()
        values = [_year_of(v, label) for v, label in zip(texts, labels, strict=True)]
        years = years.scatter(slow, pl.Series(values, dtype=pl.Int32))
    return years.alias("year")


def _year_of(text: str, label: str) -> int:
    try:
        return dateutil_year(text)
    except KxlError as exc:
        raise KxlError(f"{label}: {exc}") from None
