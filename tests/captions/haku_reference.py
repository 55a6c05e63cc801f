"""Test helpers: a HakuBooru-schema DB built with hakubooru 0.0.2's own models, its real
captioner run on it, and a tiny sqlite reader that turns the same DB into kxl's kept/tags
tables (docs/formats.md) - so both sides read the very same rows."""

from __future__ import annotations

import sqlite3
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from kxl.captions.io import KEPT_COLUMNS, TAGS_COLUMNS

with warnings.catch_warnings():  # db.py warns "Remember to update your db file" on import
    warnings.simplefilter("ignore")
    import hakubooru.dataset.db as hdb
    from hakubooru.caption import KohakuCaptioner

RATINGS = ("general", "sensitive", "questionable", "explicit")
TYPE_CODES = {"general": 0, "artist": 1, "character": 2, "copyright": 3, "meta": 4}


@dataclass
class FakeDB:
    """Rows to insert. tags: (id, name, type code); posts: (id, created_at, rating 0..3,
    fav_count); relations: (post_id, tag_id) in insertion (= rowid) order."""

    tags: list[tuple[int, str, int]] = field(default_factory=list)
    posts: list[tuple[int, str, int, int]] = field(default_factory=list)
    relations: list[tuple[int, int]] = field(default_factory=list)


def build_db(path: Path, data: FakeDB) -> None:
    """Create `path` with hakubooru's `load_db` (its schema and indexes) and insert `data`."""
    db = hdb.load_db(str(path))
    try:
        with db.atomic():
            tag_rows = [
                {"id": i, "name": n, "type": t, "popularity": 0} for i, n, t in data.tags
            ]
            for chunk in _chunks(tag_rows):
                hdb.Tag.insert_many(chunk).execute()
            for chunk in _chunks([_post_row(*p) for p in data.posts]):
                hdb.Post.insert_many(chunk).execute()
            rel_rows = [{"post": p, "tag": t} for p, t in data.relations]
            for chunk in _chunks(rel_rows):
                hdb.PostTagRelation.insert_many(chunk).execute()
    finally:
        db.close()


def reference_captions(path: Path) -> dict[int, str]:
    """`KohakuCaptioner().caption(post, None)` for every post of the DB at `path`."""
    db = hdb.load_db(str(path))
    try:
        captioner = KohakuCaptioner()
        return {p.id: captioner.caption(p, None) for p in hdb.Post.select().order_by(hdb.Post.id)}
    finally:
        db.close()


def read_db(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The DB as (kept, tags) tables in the docs/formats.md layout (only captions' columns)."""
    con = sqlite3.connect(path)
    try:
        posts = con.execute("SELECT id, created_at, rating, fav_count FROM post").fetchall()
        tags = con.execute("SELECT id, name, type FROM tag").fetchall()
        rels = con.execute(
            "SELECT rowid, post_id, tag_id FROM posttagrelation ORDER BY rowid"
        ).fetchall()
    finally:
        con.close()
    tag_df = pl.DataFrame(tags, schema=["id", "name", "type"], orient="row").cast(TAGS_COLUMNS)
    rel_df = pl.DataFrame(
        rels, schema={"rowid": pl.Int64, "post_id": pl.Int64, "tag_id": pl.Int64}, orient="row"
    ).join(tag_df.select(pl.col("id").alias("tag_id"), "type"), on="tag_id", maintain_order="left")
    kept = pl.DataFrame(
        posts,
        schema={"id": pl.Int64, "created_at": pl.String, "rating": pl.Int8, "fav_count": pl.Int32},
        orient="row",
    )
    for name, code in TYPE_CODES.items():
        lists = (
            rel_df.filter(pl.col("type") == code)
            .group_by("post_id", maintain_order=True)
            .agg(pl.col("tag_id").alias(f"tags_{name}"))
        )
        kept = kept.join(lists, left_on="id", right_on="post_id", how="left")
        kept = kept.with_columns(pl.col(f"tags_{name}").fill_null([]))
    return kept.select(list(KEPT_COLUMNS)).sort("id"), tag_df


def _post_row(post_id: int, created_at: str, rating: int, fav_count: int) -> dict[str, object]:
    return {
        "id": post_id, "created_at": created_at, "uploader_id": 1, "source": "",
        "md5": f"{post_id:032x}", "has_children": False, "is_deleted": False,
        "is_banned": False, "has_active_children": False, "bit_flags": 0, "has_large": True,
        "has_visible_children": False, "image_width": 1024, "image_height": 1024,
        "file_size": 1, "file_ext": "png", "rating": rating, "score": 0, "up_score": 0,
        "down_score": 0, "fav_count": fav_count,
    }


def _chunks(rows: list[dict[str, object]], size: int = 100) -> list[list[dict[str, object]]]:
    # SQLite limits bound parameters per statement; ~20 columns x 100 rows stays below it.
    return [rows[i : i + size] for i in range(0, len(rows), size)]
