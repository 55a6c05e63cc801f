"""The synthetic DB has exactly HakuBooru 0.0.2's schema and reads back through HakuBooru.

The reference is HakuBooru itself (its peewee models create the tables; its `Post.tag_list`
gives the tag order), run in a subprocess so that its module-global DB never leaks into
other tests. It is a test-only dependency; without it those tests skip.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from kxl.metadata.schema import INDEXES, TABLES

from .conftest import Exported

needs_hakubooru = pytest.mark.skipif(
    importlib.util.find_spec("hakubooru") is None, reason="hakubooru (test reference) absent"
)


def master(db: Path) -> set[tuple[str, str, str, str]]:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return set(con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
    finally:
        con.close()


def run_hakubooru(code: str) -> str:
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code],
                          capture_output=True, text=True, check=True, timeout=120)
    return proc.stdout.strip().splitlines()[-1]


def test_db_holds_exactly_the_declared_ddl(default_db: Exported) -> None:
    expected = {("table", n, n, sql) for n, sql in TABLES.items()}
    expected |= {("index", n, sql.split(" ON ")[1].split('"')[1], sql)
                 for n, sql in INDEXES.items()}
    assert master(default_db.db) == expected


@needs_hakubooru
def test_ddl_is_what_hakubooru_creates(tmp_path: Path, default_db: Exported) -> None:
    ref = tmp_path / "ref.db"
    run_hakubooru(f"from hakubooru.dataset.db import load_db; load_db({str(ref)!r}); print('ok')")
    assert master(ref) == master(default_db.db)


@needs_hakubooru
def test_hakubooru_reads_tag_lists_in_post_tags_rowid_order(default_db: Exported) -> None:
    """docs/formats.md: rowid order within a post is the order `post.tag_list` returns."""
    ids = default_db.posts["id"].gather([0, 1, 500, 1999, 3999]).to_list()
    code = (
        "import json\n"
        "from hakubooru.dataset.db import load_db, Post\n"
        f"load_db({str(default_db.db)!r})\n"
        f"print(json.dumps({{i: [t.id for t in Post.get_by_id(i).tag_list] for i in {ids}}}))"
    )
    got = {int(k): v for k, v in json.loads(run_hakubooru(code)).items()}
    pt = default_db.post_tags.filter(pl.col("post_id").is_in(ids))
    want = {i: pt.filter(pl.col("post_id") == i)["tag_id"].to_list() for i in ids}
    assert got == want
    assert all(len(v) > 5 for v in got.values())
