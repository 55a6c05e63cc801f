"""`kxl export-metadata`: validate a HakuBooru DB and export posts / tags / post_tags parquet.

Reads go through ADBC's SQLite driver, which fills Arrow columns in C (no Python object per
row), in key-range chunks fetched by a small thread pool; the relation table (234M rows at
full scale) is validated and written chunk by chunk so memory stays bounded. When its id is
the rowid (HakuBooru's `INTEGER PRIMARY KEY`) only (post_id, tag_id) are read: the file's row
order is the rowid order, and a rowid can be neither NULL nor repeated.
"""

from __future__ import annotations

import os
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl

from kxl.atomic import atomic_path
from kxl.errors import KxlError
from kxl.metadata.stream import TableStream
from kxl.tables import write_table_at

POSTS_SCHEMA = {
    "id": pl.Int64, "created_at": pl.String, "md5": pl.String, "file_ext": pl.String,
    "image_width": pl.Int32, "image_height": pl.Int32, "rating": pl.Int8, "score": pl.Int32,
    "fav_count": pl.Int32, "is_deleted": pl.Boolean, "is_banned": pl.Boolean,
    "file_url": pl.String,
}
TAGS_SCHEMA = {"id": pl.Int64, "name": pl.String, "type": pl.Int8, "popularity": pl.Int64}
# In the relation's id (= rowid) order, which is the order HakuBooru's post.tag_list returns.
POST_TAGS_SCHEMA = {"post_id": pl.Int32, "tag_id": pl.Int32}
NULLABLE = {"md5", "file_url"}
# (table, columns it must have); the relation's own id is the rowid HakuBooru orders by.
SOURCES = {
    "post": tuple(POSTS_SCHEMA),
    "tag": tuple(TAGS_SCHEMA),
    "posttagrelation": ("id", "post_id", "tag_id"),
}
RELATION_COLUMNS = ("post_id", "tag_id")  # read when the relation's id is the rowid
CODE_RANGES = {("post", "rating"): (0, 3, "a rating code 0..3 (general, sensitive, "
                                    "questionable, explicit)"),
               ("tag", "type"): (0, 4, "a tag type 0..4 (general, artist, character, "
                                 "copyright, meta)")}
POST_CHUNK = 1 << 20  # ids per post query
RELATION_CHUNK = 1 << 22  # rowids per relation query
FIX = "repair or re-download the DB (see docs/formats.md section 1)"
INT32_MAX = (1 << 31) - 1


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

    def chunks(
        self, table: str, chunk: int, columns: tuple[str, ...] | None = None
    ) -> Iterator[tuple[int, pl.DataFrame]]:
        """(first id of the range, rows) in id order, `chunk` ids per query, read ahead.

        `columns` defaults to the table's export columns.
        """
        self._check_ids(table)
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        # two queries: SQLite answers a lone min() or max() from the b-tree edge, but scans
        # the whole table for both in one SELECT
        lo = con.execute(f'SELECT min("id") FROM "{table}"').fetchone()[0]
        hi = con.execute(f'SELECT max("id") FROM "{table}"').fetchone()[0]
        con.close()
        if lo is None:
            return
        cols = ", ".join(f'"{c}"' for c in columns or SOURCES[table])
        sql = f'SELECT {cols} FROM "{table}" WHERE "id" >= ? AND "id" < ? ORDER BY "id"'
        starts = range(lo, hi + 1, chunk)
        with ThreadPoolExecutor(self.threads) as pool:
            pending: deque = deque()
            for start in starts:
                pending.append(
                    (start, pool.submit(self._query, sql, (start, start + chunk), chunk)))
                if len(pending) > self.threads:
                    first, future = pending.popleft()
                    yield first, future.result()
            while pending:
                first, future = pending.popleft()
                yield first, future.result()

    def key_at(self, table: str, start: int, stop: int, offset: int) -> int:
        """The id of row `offset` of the id range [start, stop): names a row in a message when
        the chunk was read without its ids (error path only)."""
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            sql = (f'SELECT "id" FROM "{table}" WHERE "id" >= ? AND "id" < ? ORDER BY "id" '
                   "LIMIT 1 OFFSET ?")
            return con.execute(sql, (start, stop, offset)).fetchone()[0]
        finally:
            con.close()

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


def _first(df: pl.DataFrame, mask: pl.Series, column: str,
           key_of: Callable[[int], object] | None = None) -> tuple[object, object]:
    """(row id, value of `column`) of the first row where `mask` holds; `key_of(row index)`
    gives the id when `df` has no id column."""
    i = int(mask.arg_true()[0])
    return (df["id"][i] if key_of is None else key_of(i)), df[column][i]


def conform(reader: Reader, table: str, df: pl.DataFrame, schema: dict,
            key_of: Callable[[int], object] | None = None) -> pl.DataFrame:
    """Cast a chunk to the export schema; any NULL, bad code or bad value is an error."""
    for col, dtype in schema.items():
        src = df[col]
        if col not in NULLABLE and src.null_count():
            key, _ = _first(df, src.is_null(), col, key_of)
            raise reader.fail(table, col, key, "NULL where HakuBooru requires a value")
        if dtype == pl.Boolean and src.dtype.is_integer():
            df = df.with_columns((src != 0).alias(col))
            continue
        if src.dtype == dtype:
            continue
        cast = src.cast(dtype, strict=False)
        bad = cast.is_null() & src.is_not_null()
        if bad.any():
            key, value = _first(df, bad, col, key_of)
            raise reader.fail(table, col, key, f"value {value!r} is not a valid {dtype}")
        df = df.with_columns(cast)
    for (t, col), (low, high, what) in CODE_RANGES.items():
        if t == table:
            bad = (df[col] < low) | (df[col] > high)
            if bad.any():
                key, value = _first(df, bad, col, key_of)
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
    for _, df in reader.chunks(table, chunk):
        df = conform(reader, table, df, schema)
        _check_order(reader, table, df["id"].to_numpy(), prev)
        prev = int(df["id"][-1]) if df.height else prev
        parts.append(df)
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


class Members:
    """Membership in a sorted id set, built once: a dense lookup table when the ids are
    non-negative and below 2^28 (danbooru's are below 10M), else bisection."""

    def __init__(self, universe: np.ndarray) -> None:
        self.universe = universe
        self.lut: np.ndarray | None = None
        if not len(universe) or (universe[0] >= 0 and universe[-1] < 1 << 28):
            top = int(universe[-1]) if len(universe) else -1
            # one False slot past the top: clipped (too large) and -1 (negative) ids land there
            self.lut = np.zeros(top + 2, dtype=bool)
            self.lut[universe] = True

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        if self.lut is not None:
            if len(ids) and ids.min() < 0:
                return self.lut[np.clip(ids, -1, len(self.lut) - 1)]
            return self.lut.take(ids, mode="clip")
        if not len(self.universe):
            return np.zeros(len(ids), dtype=bool)
        pos = np.searchsorted(self.universe, ids).clip(0, len(self.universe) - 1)
        return self.universe[pos] == ids


def export_relations(
    reader: Reader, out: Path, post_ids: np.ndarray, tag_ids: np.ndarray
) -> int:
    """Stream posttagrelation to `out` as (post_id, tag_id) Int32 in id (= rowid) order; every
    relation must point at an existing post and tag."""
    table = "posttagrelation"
    # A rowid alias id is never NULL nor repeated and orders the range queries by itself:
    # then it is not read at all. Any other id is read and checked, and still not written.
    with_ids = not reader._is_rowid_alias(table)
    columns = SOURCES[table] if with_ids else RELATION_COLUMNS
    targets = {"post_id": (Members(post_ids), "post"), "tag_id": (Members(tag_ids), "tag")}
    rows, prev, chunk = 0, None, RELATION_CHUNK
    with TableStream(out, POST_TAGS_SCHEMA) as stream:
        for start, df in reader.chunks(table, chunk, columns):
            key_of = None if with_ids else partial(reader.key_at, table, start, start + chunk)
            df = conform(reader, table, df, dict.fromkeys(columns, pl.Int64), key_of)
            if with_ids:
                _check_order(reader, table, df["id"].to_numpy(), prev)
                prev = int(df["id"][-1]) if df.height else prev
            narrow = {}
            for col, (members, target) in targets.items():
                values = df[col].to_numpy()
                if len(values) and (values.min() < -INT32_MAX - 1 or values.max() > INT32_MAX):
                    key, value = _first(df, ~df[col].is_between(-INT32_MAX - 1, INT32_MAX),
                                        col, key_of)
                    raise reader.fail(table, col, key, f"{col}={value} does not fit Int32 "
                                      "(post_tags.parquet holds ids as Int32)")
                missing = ~members(values)
                if missing.any():
                    key, value = _first(df, pl.Series(missing), col, key_of)
                    raise reader.fail(table, col, key,
                                      f"{col}={value} has no row in table {target!r}")
                narrow[col] = values.astype(np.int32)
            rows += df.height
            stream.write(pl.DataFrame(narrow))
    return rows


def export_metadata(db: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                    threads: int = 2) -> dict[str, int]:
    """Validate `db` and write posts.parquet, tags.parquet, post_tags.parquet; row counts."""
    reader, out = Reader(db, threads), Path(out_dir)
    posts = read_table_checked(reader, "post", POSTS_SCHEMA, POST_CHUNK)
    tags = read_table_checked(reader, "tag", TAGS_SCHEMA, POST_CHUNK)
    # posts.parquet and tags.parquet are encoded on a side thread while the relations stream
    # (waits on SQLite leave a core free), and renamed into place only once the relations are
    # valid. The pool exits first, so a failure removes the temporary files after their writes.
    with ExitStack() as stack, ThreadPoolExecutor(1) as pool:
        writes = [pool.submit(write_table_at, df, stack.enter_context(atomic_path(out / name)),
                              schema, name)
                  for df, name, schema in ((posts, "posts.parquet", POSTS_SCHEMA),
                                           (tags, "tags.parquet", TAGS_SCHEMA))]
        n_rel = export_relations(reader, out / "post_tags.parquet", posts["id"].to_numpy(),
                                 tags["id"].to_numpy())
        for write in writes:
            write.result()
    return {"posts": posts.height, "tags": tags.height, "post_tags": n_rel}
