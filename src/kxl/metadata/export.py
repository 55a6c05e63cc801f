"""`kxl export-metadata`: validate a HakuBooru DB and export posts / tags / post_tags parquet.

Reads go through ADBC's SQLite driver, which fills Arrow columns in C (no Python object per
row), in key-range chunks fetched by a small thread pool; the relation table (220M rows at
full scale) is validated and written chunk by chunk so memory stays bounded.
"""

from __future__ import annotations

import os
import sqlite3
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from kxl.errors import KxlError
from kxl.metadata.stream import TableStream
from kxl.tables import write_table

POSTS_SCHEMA = {
    "id": pl.Int64, "created_at": pl.String, "md5": pl.String, "file_ext": pl.String,
    "image_width": pl.Int32, "image_height": pl.Int32, "rating": pl.Int8, "score": pl.Int32,
    "fav_count": pl.Int32, "is_deleted": pl.Boolean, "is_banned": pl.Boolean,
    "file_url": pl.String,
}
TAGS_SCHEMA = {"id": pl.Int64, "name": pl.String, "type": pl.Int8, "popularity": pl.Int64}
POST_TAGS_SCHEMA = {"rowid": pl.Int64, "post_id": pl.Int64, "tag_id": pl.Int64}
NULLABLE = {"md5", "file_url"}
# (table, exported columns as selected); the relation's own id is the rowid HakuBooru orders by.
SOURCES = {
    "post": tuple(POSTS_SCHEMA),
    "tag": tuple(TAGS_SCHEMA),
    "posttagrelation": ("id", "post_id", "tag_id"),
}
CODE_RANGES = {("post", "rating"): (0, 3, "a rating code 0..3 (general, sensitive, "
                                    "questionable, explicit)"),
               ("tag", "type"): (0, 4, "a tag type 0..4 (general, artist, character, "
                                 "copyright, meta)")}
POST_CHUNK = 1 << 20  # ids per post query
RELATION_CHUNK = 1 << 22  # rowids per relation query
FIX = "repair or re-download the DB (see docs/formats.md section 1)"


class Reader:
    """One validated SQLite DB; `where(table)` prefixes every message with file and table."""

    def __init__(self, db: str | os.PathLike[str], threads: int = 2) -> None:
        self.db = Path(db)
        self.threads = max(1, threads)
        if not self.db.is_file():
            raise KxlError(
                f"{self.db}: metadata DB not found; run synth-metadata or fetch-metadata")
        self.columns = self._inspect()

    def _inspect(self) -> dict[str, dict[str, tuple[str, int]]]:
        """Each needed table's columns as {name: (declared type, pk position)}."""
        try:
            con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
            try:
                found = {t: {r[1]: (r[2].upper(), r[5]) for r in
                             con.execute(f'PRAGMA table_info("{t}")')} for t in SOURCES}
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise KxlError(f"{self.db}: not a readable SQLite DB ({exc}); {FIX}") from exc
        for table, cols in SOURCES.items():
            if not found[table]:
                raise KxlError(f"{self.db}: missing table {table!r} (HakuBooru schema); {FIX}")
            missing = [c for c in cols if c not in found[table]]
            if missing:
                raise KxlError(f"{self.db}: table {table!r} lacks column(s) {missing}; {FIX}")
        return found

    def fail(self, table: str, column: str, key: object, problem: str) -> KxlError:
        return KxlError(f"{self.db}: table {table!r} column {column!r} at row id={key}: "
                        f"{problem}; {FIX}")

    def _is_rowid_alias(self, table: str) -> bool:
        """`id INTEGER PRIMARY KEY` is the rowid itself: never NULL, never duplicated."""
        pks = [c for c, (_, pk) in self.columns[table].items() if pk > 0]
        return pks == ["id"] and self.columns[table]["id"][0] == "INTEGER"

    def _query(self, sql: str, params: tuple[int, int], batch_rows: int) -> pl.DataFrame:
        import adbc_driver_sqlite.dbapi as adbc  # lazy: only export needs it

        try:
            with adbc.connect(str(self.db)) as con, con.cursor() as cur:
                # one batch per query, so column types are inferred from every row of it
                cur.adbc_statement.set_options(
                    **{"adbc.sqlite.query.batch_rows": str(batch_rows)})
                cur.execute(sql, params)
                return pl.from_arrow(cur.fetch_arrow_table())  # type: ignore[return-value]
        except Exception as exc:  # ADBC raises driver-specific types
            raise KxlError(f"{self.db}: cannot read ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0]}); {FIX}") from exc

    def chunks(self, table: str, chunk: int) -> Iterator[pl.DataFrame]:
        """The table's export columns in id order, `chunk` ids per query, read ahead."""
        self._check_ids(table)
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        # two queries: SQLite answers a lone min() or max() from the b-tree edge, but scans
        # the whole table for both in one SELECT
        lo = con.execute(f'SELECT min("id") FROM "{table}"').fetchone()[0]
        hi = con.execute(f'SELECT max("id") FROM "{table}"').fetchone()[0]
        con.close()
        if lo is None:
            return
        cols = ", ".join(f'"{c}"' for c in SOURCES[table])
        sql = f'SELECT {cols} FROM "{table}" WHERE "id" >= ? AND "id" < ? ORDER BY "id"'
        starts = range(lo, hi + 1, chunk)
        with ThreadPoolExecutor(self.threads) as pool:
            pending: deque = deque()
            for start in starts:
                pending.append(pool.submit(self._query, sql, (start, start + chunk), chunk))
                if len(pending) > self.threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _check_ids(self, table: str) -> None:
        """A table whose id is not the rowid may hold NULL or non-integer ids, which the
        id-range queries would skip silently: refuse them here."""
        if self._is_rowid_alias(table):
            return
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        bad = con.execute(f'SELECT rowid, "id" FROM "{table}" WHERE typeof("id") != '
                          "'integer' LIMIT 1").fetchone()
        con.close()
        if bad is not None:
            problem = "NULL id" if bad[1] is None else f"id {bad[1]!r} is not an integer"
            raise KxlError(f"{self.db}: table {table!r} column 'id' at rowid {bad[0]}: "
                           f"{problem}; {FIX}")


def _first(df: pl.DataFrame, mask: pl.Series, column: str) -> tuple[object, object]:
    row = df.filter(mask).row(0, named=True)
    return row["id"], row[column]


def conform(reader: Reader, table: str, df: pl.DataFrame, schema: dict) -> pl.DataFrame:
    """Cast a chunk to the export schema; any NULL, bad code or bad value is an error."""
    for col, dtype in schema.items():
        src = df[col]
        if col not in NULLABLE and src.null_count():
            key, _ = _first(df, src.is_null(), col)
            raise reader.fail(table, col, key, "NULL where HakuBooru requires a value")
        if dtype == pl.Boolean and src.dtype.is_integer():
            df = df.with_columns((src != 0).alias(col))
            continue
        cast = src.cast(dtype, strict=False)
        bad = cast.is_null() & src.is_not_null()
        if bad.any():
            key, value = _first(df, bad, col)
            raise reader.fail(table, col, key, f"value {value!r} is not a valid {dtype}")
        df = df.with_columns(cast)
    for (t, col), (low, high, what) in CODE_RANGES.items():
        if t == table:
            bad = (df[col] < low) | (df[col] > high)
            if bad.any():
                key, value = _first(df, bad, col)
                raise reader.fail(table, col, key, f"{value} is not {what}")
    return df


def _check_order(reader: Reader, table: str, ids: np.ndarray, prev: int | None) -> None:
    """Ids strictly increasing across chunks: catches duplicate ids (queries are id-ordered)."""
    if prev is not None and len(ids):
        ids = np.concatenate([[prev], ids])
    dup = np.flatnonzero(np.diff(ids) <= 0)
    if len(dup):
        raise reader.fail(table, "id", ids[dup[0] + 1], "duplicate id")


def read_table_checked(reader: Reader, table: str, schema: dict, chunk: int) -> pl.DataFrame:
    parts, prev = [], None
    for df in reader.chunks(table, chunk):
        df = conform(reader, table, df, schema)
        _check_order(reader, table, df["id"].to_numpy(), prev)
        prev = int(df["id"][-1]) if df.height else prev
        parts.append(df)
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def _member(ids: np.ndarray, universe: np.ndarray) -> np.ndarray:
    """ids in the sorted `universe`, by lookup table when dense enough, else by bisection."""
    top = int(universe[-1]) if len(universe) else -1
    if 0 <= top < 1 << 28 and (not len(universe) or universe[0] >= 0):
        lut = np.zeros(top + 2, dtype=bool)
        lut[universe] = True
        return lut[np.clip(ids, -1, top + 1)] & (ids >= 0)
    pos = np.searchsorted(universe, ids).clip(0, max(len(universe) - 1, 0))
    return universe[pos] == ids if len(universe) else np.zeros(len(ids), bool)


def export_relations(
    reader: Reader, out: Path, post_ids: np.ndarray, tag_ids: np.ndarray
) -> int:
    """Stream posttagrelation to `out`; every relation must point at an existing post and tag."""
    rows, prev = 0, None
    with TableStream(out, POST_TAGS_SCHEMA) as stream:
        for df in reader.chunks("posttagrelation", RELATION_CHUNK):
            df = conform(reader, "posttagrelation", df, {"id": pl.Int64, "post_id": pl.Int64,
                                                          "tag_id": pl.Int64})
            _check_order(reader, "posttagrelation", df["id"].to_numpy(), prev)
            for col, universe, target in (("post_id", post_ids, "post"),
                                          ("tag_id", tag_ids, "tag")):
                missing = ~_member(df[col].to_numpy(), universe)
                if missing.any():
                    key, value = _first(df, pl.Series(missing), col)
                    raise reader.fail("posttagrelation", col, key,
                                      f"{col}={value} has no row in table {target!r}")
            prev = int(df["id"][-1]) if df.height else prev
            rows += df.height
            stream.write(df.rename({"id": "rowid"}))
    return rows


def export_metadata(db: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                    threads: int = 2) -> dict[str, int]:
    """Validate `db` and write posts.parquet, tags.parquet, post_tags.parquet; row counts."""
    reader, out = Reader(db, threads), Path(out_dir)
    posts = read_table_checked(reader, "post", POSTS_SCHEMA, POST_CHUNK)
    tags = read_table_checked(reader, "tag", TAGS_SCHEMA, POST_CHUNK)
    n_rel = export_relations(reader, out / "post_tags.parquet", posts["id"].to_numpy(),
                             tags["id"].to_numpy())
    write_table(posts, out / "posts.parquet", POSTS_SCHEMA)
    write_table(tags, out / "tags.parquet", TAGS_SCHEMA)
    return {"posts": posts.height, "tags": tags.height, "post_tags": n_rel}
