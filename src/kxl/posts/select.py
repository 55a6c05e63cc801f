"""Select posts from id ranges: pure, vectorised, seeded (docs/formats.md section 2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from kxl.errors import KxlError
from kxl.posts import rng
from kxl.posts.config import IdRange, Mode

SELECTED_SCHEMA = {
    "position": pl.Int64,
    "id": pl.Int64,
    "range_index": pl.Int16,
    "draw_index": pl.Int64,
}
RNG_DOC = {
    "sample": f"numpy PCG64(SeedSequence([seed, {rng.STAGE_TAG}, range_index]))"
    ".permutation(population)[:count]",
    "choices": "random.Random(seed).choices(population, k=count), one stream over the ranges "
    "in config order; count 'all' takes every post and consumes no randomness",
}


@dataclass(frozen=True)
class Selection:
    table: pl.DataFrame  # SELECTED_SCHEMA, in draw order
    summary: dict[str, Any]


def check_ranges(ranges: tuple[IdRange, ...] | list[IdRange]) -> None:
    """Reject ranges that are empty intervals, negative, or overlap (one line each)."""
    if not ranges:
        raise KxlError("config posts.ranges: empty; list at least one {start, stop, count}")
    if len(ranges) > np.iinfo(np.int16).max:
        raise KxlError(f"config posts.ranges: {len(ranges)} ranges; at most 32767 are allowed")
    for i, r in enumerate(ranges):
        if r.start < 0 or (r.stop is not None and r.stop <= r.start):
            raise KxlError(f"config posts.ranges[{i}]: [{r.start}, {r.stop}) is empty or negative; "
                           "need 0 <= start < stop (stop null = open)")
        if r.count != "all" and r.count < 0:
            raise KxlError(f"config posts.ranges[{i}]: count {r.count} < 0; use >= 0 or 'all'")
    order = sorted(range(len(ranges)), key=lambda i: ranges[i].start)
    for a, b in zip(order, order[1:], strict=False):
        stop = ranges[a].stop
        if stop is None or stop > ranges[b].start:
            raise KxlError(f"config posts.ranges[{a}] and ranges[{b}] overlap; ranges must be "
                           "disjoint so that no post can be drawn from two ranges")


def population_bounds(sorted_ids: np.ndarray, r: IdRange) -> tuple[int, int]:
    """[lo, hi) positions of the range's ids in the id-sorted post ids."""
    lo = int(np.searchsorted(sorted_ids, r.start, side="left"))
    hi = len(sorted_ids) if r.stop is None else int(np.searchsorted(sorted_ids, r.stop, "left"))
    return lo, hi


def range_draws(
    mode: Mode, seed: int, index: int, r: IdRange, n: int, stream: np.random.Generator
) -> np.ndarray:
    """Indices into one range's id-sorted population, in draw order."""
    if r.count == "all":
        return np.arange(n, dtype=np.int64)
    if mode == "sample":
        if r.count > n:
            raise KxlError(f"config posts.ranges[{index}] [{r.start}, {r.stop}): count {r.count} "
                           f"> population {n} (sample mode draws without replacement); "
                           "lower count or use 'all'")
        return rng.sample_draws(seed, index, n, r.count)
    if n == 0 and r.count > 0:
        raise KxlError(f"config posts.ranges[{index}] [{r.start}, {r.stop}): population is 0, "
                       f"cannot draw {r.count} with choices; set count 0 or widen the range")
    return rng.choices_draws(stream, n, r.count)


def count_unique(draws: np.ndarray, population: int) -> int:
    """Distinct values of `draws` (indices in [0, population)); O(n), no hashing or sort."""
    seen = np.zeros(population, dtype=bool)
    seen[draws] = True
    return int(np.count_nonzero(seen))


def select_posts(
    post_ids: np.ndarray, ranges: tuple[IdRange, ...] | list[IdRange], mode: Mode, seed: int
) -> Selection:
    """The selected list: ranges in config order, each range's draws in draw order."""
    check_ranges(ranges)
    ids = np.asarray(post_ids, dtype=np.int64)
    if (ids[1:] < ids[:-1]).any():  # posts.parquet is id-sorted by contract; O(n) to check
        ids = np.sort(ids)
    if ids.size and (ids[1:] == ids[:-1]).any():
        dup = int(ids[1:][ids[1:] == ids[:-1]][0])
        raise KxlError(f"posts table: id {dup} appears more than once; ids must be unique")
    # One Python-random stream for the whole list in choices mode, like the Delta script.
    stream = rng.python_random_generator(seed)
    parts, stats = [], []
    for i, r in enumerate(ranges):
        lo, hi = population_bounds(ids, r)
        draws = range_draws(mode, seed, i, r, hi - lo, stream)
        parts.append(pl.DataFrame({
            "id": ids[lo:hi][draws],
            "range_index": np.full(draws.size, i, dtype=np.int16),
            "draw_index": np.arange(draws.size, dtype=np.int64),
        }))
        unique = count_unique(draws, hi - lo)
        stats.append({"index": i, "start": r.start, "stop": r.stop, "count": r.count,
                      "population": hi - lo, "drawn": int(draws.size), "unique": unique,
                      "duplicates": int(draws.size) - unique})
    table = pl.concat(parts).with_columns(position=pl.int_range(0, pl.len(), dtype=pl.Int64))
    return Selection(table.select(list(SELECTED_SCHEMA)), summarise(stats, mode, seed))


def summarise(stats: list[dict[str, Any]], mode: Mode, seed: int) -> dict[str, Any]:
    drawn = sum(s["drawn"] for s in stats)
    duplicates = sum(s["duplicates"] for s in stats)
    return {"mode": mode, "seed": seed, "rng": RNG_DOC[mode], "selected": drawn,
            "unique": drawn - duplicates, "duplicates": duplicates, "ranges": stats}
