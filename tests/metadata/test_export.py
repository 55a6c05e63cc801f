"""export-metadata: the three tables of docs/formats.md, validated, vectorised, streamed."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kxl import tables
from kxl.errors import KxlError
from kxl.hashing import sha256_file
from kxl.metadata import export
from kxl.metadata.export import (
    POST_TAGS_SCHEMA,
    POSTS_SCHEMA,
    TAGS_SCHEMA,
    Members,
    export_metadata,
)
from kxl.metadata.stream import TableStream
from kxl.tables import write_table

from .conftest import Exported

OUT = ("posts.parquet", "tags.parquet", "post_tags.parquet")


def sql(db: Path, *statements: str) -> None:
    con = sqlite3.connect(db)
    try:
        for s in statements:
            con.execute(s)
        con.commit()
    finally:
        con.close()


def one(db: Path, query: str) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute(query).fetchone()[0]
    finally:
        con.close()


def without_pk(table: str) -> tuple[str, ...]:
    """Rebuild `table` without its INTEGER PRIMARY KEY, so bad ids become possible."""
    return (f'CREATE TABLE "t2" AS SELECT * FROM "{table}"', f'DROP TABLE "{table}"',
            f'ALTER TABLE "t2" RENAME TO "{table}"')


def test_tables_match_the_db_and_the_formats_contract(default_db: Exported) -> None:
    posts, tags, pt = default_db.posts, default_db.tags, default_db.post_tags
    assert dict(posts.schema) == POSTS_SCHEMA
    assert dict(tags.schema) == TAGS_SCHEMA
    assert dict(pt.schema) == POST_TAGS_SCHEMA
    assert posts.height == default_db.sql("SELECT count(*) FROM post")[0][0]
    for df in (posts, tags):
        assert df["id"].is_sorted() and df["id"].n_unique() == df.height
    # post_tags: the relation rows themselves, in rowid order (no rowid column)
    assert pt.rows() == default_db.sql(
        "SELECT post_id, tag_id FROM posttagrelation ORDER BY rowid")
    # spot-check values against SQLite row by row for a few rows
    for i in (0, 1234, posts.height - 1):
        row = posts.row(i, named=True)
        ref = default_db.sql(f"SELECT created_at, md5, file_ext, image_width, rating, fav_count,"
                             f" is_deleted, is_banned, file_url FROM post WHERE id={row['id']}")[0]
        assert ref == (row["created_at"], row["md5"], row["file_ext"], row["image_width"],
                       row["rating"], row["fav_count"], int(row["is_deleted"]),
                       int(row["is_banned"]), row["file_url"])


def test_chunked_threaded_reads_give_the_same_bytes(default_db: Exported, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Many small id-range queries on 3 threads, and many small row groups, change nothing
    versus one big write (row groups regrouped exactly as write_table does)."""
    monkeypatch.setattr(export, "POST_CHUNK", 50_000)
    monkeypatch.setattr(export, "RELATION_CHUNK", 7_000)
    export_metadata(default_db.db, tmp_path / "a", threads=3)
    monkeypatch.setattr(tables, "_ROW_GROUP", 10_000)
    export_metadata(default_db.db, tmp_path / "b", threads=1)
    pt = default_db.post_tags
    write_table(pt, tmp_path / "ref.parquet", POST_TAGS_SCHEMA)
    ref = sha256_file(tmp_path / "ref.parquet")
    assert sha256_file(tmp_path / "b" / "post_tags.parquet") == ref
    for name in OUT:
        assert sha256_file(tmp_path / "a" / name) == sha256_file(default_db.out / name), name


@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(0, 300), max_size=6), group=st.integers(1, 120))
def test_stream_equals_write_table(tmp_path_factory: pytest.TempPathFactory,
                                   cuts: list[int], group: int) -> None:
    df = pl.DataFrame({"post_id": np.arange(300) // 7, "tag_id": np.arange(300) % 11},
                      schema=POST_TAGS_SCHEMA)
    root = tmp_path_factory.mktemp("stream")
    old = tables._ROW_GROUP
    tables._ROW_GROUP = group
    try:
        write_table(df, root / "ref.parquet", POST_TAGS_SCHEMA)
        bounds = [0, *sorted(cuts), 300]
        with TableStream(root / "s.parquet", POST_TAGS_SCHEMA) as s:
            for a, b in zip(bounds, bounds[1:], strict=False):
                s.write(df.slice(a, b - a))
    finally:
        tables._ROW_GROUP = old
    assert (root / "s.parquet").read_bytes() == (root / "ref.parquet").read_bytes()


def test_stream_bytes_do_not_depend_on_where_the_chunks_are_cut(tmp_path: Path) -> None:
    """The writer cuts pages (and falls back from dictionary encoding) at chunk boundaries:
    each row group is written from one contiguous chunk, so pieces give the one-piece bytes.
    (Without that, this case differed: 137k unique ids overflow the 1 MB dictionary.)"""
    schema = {"id": pl.Int64, "caption": pl.String}
    n, cut = 137_011, 131_072
    ids = np.sort(np.random.default_rng(0).choice(10_000_000, n, replace=False))
    df = pl.DataFrame({"id": ids, "caption": [f"c{i % 1000}" for i in range(n)]}, schema=schema)
    write_table(df, tmp_path / "ref.parquet", schema)
    with TableStream(tmp_path / "s.parquet", schema) as s:
        s.write(df.slice(0, cut))
        s.write(df.slice(cut))
    assert (tmp_path / "s.parquet").read_bytes() == (tmp_path / "ref.parquet").read_bytes()


def test_stream_of_an_empty_table_equals_write_table(tmp_path: Path) -> None:
    empty = pl.DataFrame(schema=POST_TAGS_SCHEMA)
    write_table(empty, tmp_path / "ref.parquet", POST_TAGS_SCHEMA)
    with TableStream(tmp_path / "a.parquet", POST_TAGS_SCHEMA):
        pass
    with TableStream(tmp_path / "b.parquet", POST_TAGS_SCHEMA) as s:
        s.write(empty)
    ref = (tmp_path / "ref.parquet").read_bytes()
    assert (tmp_path / "a.parquet").read_bytes() == ref == (tmp_path / "b.parquet").read_bytes()


def test_stream_leaves_nothing_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), TableStream(tmp_path / "x.parquet", POST_TAGS_SCHEMA) as s:
        s.write(pl.DataFrame({"post_id": [2], "tag_id": [3]}, schema=POST_TAGS_SCHEMA))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@settings(max_examples=50, deadline=None)
@given(universe=st.sets(st.integers(-5, 3000), max_size=50),
       probe=st.lists(st.integers(-10, 3010), max_size=50), huge=st.booleans())
def test_membership_matches_isin(universe: set[int], probe: list[int], huge: bool) -> None:
    shift = 1 << 40 if huge else 0  # beyond the lookup table: the bisection path
    u = np.array(sorted(universe), dtype=np.int64) + shift
    p = np.array(probe, dtype=np.int64) + shift
    assert (Members(u)(p) == np.isin(p, u)).all()


def count_calls(db: Path, out: Path) -> int:
    """Python and C function calls made (in every thread) while exporting `db`."""
    calls = 0

    def count(frame, event, arg):  # noqa: ANN001, ARG001
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    threading.setprofile(count)  # the reader threads too
    try:
        export_metadata(db, out, threads=1)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    return calls


def test_export_is_vectorised(default_db: Exported, small_db_template: Path, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """No Python work per row: with one query per table, exporting ~14x more rows (126k vs
    9k) makes about the same number of Python/C calls, far fewer than there are rows."""
    monkeypatch.setattr(export, "POST_CHUNK", 1 << 23)
    export_metadata(small_db_template, tmp_path / "warm")  # imports and caches out of the count
    small = count_calls(small_db_template, tmp_path / "s")
    big = count_calls(default_db.db, tmp_path / "b")
    n_rows = default_db.post_tags.height + default_db.posts.height
    assert n_rows > 100_000
    assert big < 1.2 * small + 500, (small, big)
    assert big < n_rows / 10


BAD = [
    (('DROP TABLE "tag"',), r"missing table 'tag'"),
    (('ALTER TABLE "post" DROP COLUMN "rating"',), r"table 'post' lacks column\(s\) \['rating'\]"),
    (('UPDATE "post" SET rating = 5 WHERE id = (SELECT min(id) FROM post)',),
     r"table 'post' column 'rating' at row id=\d+: 5 is not a rating code 0\.\.3"),
    (('UPDATE "post" SET rating = \'x\' WHERE id = (SELECT max(id) FROM post)',),
     r"column 'rating' at row id=\d+: value 'x' is not a valid Int8"),
    (('UPDATE "tag" SET type = 9 WHERE id = (SELECT max(id) FROM tag)',),
     r"table 'tag' column 'type' at row id=\d+: 9 is not a tag type 0\.\.4"),
    (('UPDATE "posttagrelation" SET post_id = 99999999 WHERE id = 17',),
     r"table 'posttagrelation' column 'post_id' at row id=17: post_id=99999999 has no row in "
     r"table 'post'"),
    (('UPDATE "posttagrelation" SET tag_id = 424242 WHERE id = 250',),
     r"table 'posttagrelation' column 'tag_id' at row id=250: tag_id=424242 has no row in "
     r"table 'tag'"),
    ((*without_pk("post"), 'INSERT INTO post SELECT * FROM post WHERE id = (SELECT max(id) '
      'FROM post)'), r"table 'post' column 'id' at row id=\d+: duplicate id"),
    ((*without_pk("tag"), 'UPDATE tag SET id = NULL WHERE rowid = 3'),
     r"table 'tag' column 'id' at rowid 3: NULL id"),
    ((*without_pk("posttagrelation"), 'UPDATE posttagrelation SET id = 5 WHERE id = 6'),
     r"table 'posttagrelation' column 'id' at row id=5: duplicate id"),
    (('UPDATE "posttagrelation" SET post_id = 4294967296 WHERE id = 33',),
     r"table 'posttagrelation' column 'post_id' at row id=33: post_id=4294967296 does not fit "
     r"Int32"),
    (('UPDATE "posttagrelation" SET tag_id = -2147483649 WHERE id = 40',),
     r"table 'posttagrelation' column 'tag_id' at row id=40: tag_id=-2147483649 does not fit "
     r"Int32"),
    ((*without_pk("posttagrelation"), 'UPDATE posttagrelation SET tag_id = 9999999 WHERE id = 8'),
     r"table 'posttagrelation' column 'tag_id' at row id=8: tag_id=9999999 has no row in "
     r"table 'tag'"),
    (('UPDATE "posttagrelation" SET tag_id = \'x\' WHERE id = 61',),
     r"table 'posttagrelation' column 'tag_id' at row id=61: value 'x' is not a valid Int64"),
    ((*without_pk("post"), 'UPDATE post SET created_at = NULL WHERE rowid = 9'),
     r"table 'post' column 'created_at' at row id=\d+: NULL where HakuBooru requires a value"),
]


@pytest.mark.parametrize("statements, message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_db_is_one_clear_error_and_writes_nothing(
    small_db: Path, tmp_path: Path, statements: tuple[str, ...], message: str
) -> None:
    sql(small_db, *statements)
    out = tmp_path / "out"
    with pytest.raises(KxlError, match=message) as err:
        export_metadata(small_db, out)
    assert str(small_db) in str(err.value) and "\n" not in str(err.value)
    assert not out.exists() or not list(out.iterdir())  # no table, no temporary file


def test_relation_ids_that_are_not_the_rowid_give_id_order(small_db: Path,
                                                            tmp_path: Path) -> None:
    """Without `INTEGER PRIMARY KEY` the ids are read and checked, and the rows come out in
    id order (here the reverse of insertion order); the ids themselves are not written."""
    sql(small_db, *without_pk("posttagrelation"), "UPDATE posttagrelation SET id = 100000 - id")
    export_metadata(small_db, tmp_path)
    pt = pl.read_parquet(tmp_path / "post_tags.parquet")
    assert dict(pt.schema) == POST_TAGS_SCHEMA
    con = sqlite3.connect(small_db)
    want = con.execute("SELECT post_id, tag_id FROM posttagrelation ORDER BY id").fetchall()
    by_rowid = con.execute("SELECT post_id, tag_id FROM posttagrelation ORDER BY rowid").fetchall()
    con.close()
    assert pt.rows() == want == by_rowid[::-1] and len(want) > 1000


def test_cli_reports_bad_input_on_one_line(small_db: Path, tmp_path: Path) -> None:
    sql(small_db, 'UPDATE "tag" SET type = 7 WHERE id = (SELECT min(id) FROM tag)')
    proc = subprocess.run([sys.executable, "-m", "kxl", "export-metadata", "--db", str(small_db),
                           "--out-dir", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "column 'type'" in lines[0] and "7 is not a tag type" in lines[0]


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "x.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(KxlError, match="not a readable SQLite DB"):
        export_metadata(bad, tmp_path / "out")
    with pytest.raises(KxlError, match="metadata DB not found"):
        export_metadata(tmp_path / "missing.db", tmp_path / "out")


def test_valid_small_db_exports(small_db: Path, tmp_path: Path) -> None:
    counts = export_metadata(small_db, tmp_path)
    assert counts["posts"] == 300 == one(small_db, "SELECT count(*) FROM post")
    assert counts["post_tags"] == one(small_db, "SELECT count(*) FROM posttagrelation")
