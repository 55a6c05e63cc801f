"""Hand-made metadata tables in the docs/formats.md layout, one post per drop reason.

(A uniquely named module, not conftest.py, so tests can import it unambiguously.)
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from kxl.manifest.schemas import POST_TAGS_COLUMNS, TAGS_COLUMNS
from kxl.posts.select import SELECTED_SCHEMA
from kxl.tables import write_table

POSTS_SCHEMA = {
    "id": pl.Int64, "created_at": pl.String, "md5": pl.String, "file_ext": pl.String,
    "image_width": pl.Int32, "image_height": pl.Int32, "rating": pl.Int8, "score": pl.Int32,
    "fav_count": pl.Int32, "is_deleted": pl.Boolean, "is_banned": pl.Boolean,
    "file_url": pl.String,
}
TAGS_SCHEMA = {**TAGS_COLUMNS, "name": pl.String, "popularity": pl.Int64}

# id: (md5, file_ext, deleted, banned, file_url) -- what each post exercises is in the name.
POSTS = {
    10: ("a" * 32, "jpg", False, False, "u"),   # kept
    20: ("b" * 32, "jpg", True, False, "u"),    # deleted
    30: ("c" * 32, "png", False, True, "u"),    # banned
    40: (None, "jpg", False, False, "u"),       # gold_only (md5)
    50: ("d" * 32, "jpg", False, False, None),  # gold_only (file_url)
    60: ("e" * 32, "gif", False, False, "u"),   # not_image
    70: ("f" * 32, "png", False, False, "u"),   # kept, no tags
    80: ("g" * 32, "mp4", True, True, None),    # deleted (first of four matching reasons)
    90: ("h" * 32, "webp", False, False, "u"),  # kept
    100: ("i" * 32, None, False, False, "u"),   # not_image (null ext)
    110: ("j" * 32, "jpeg", False, False, "u"),  # in the db, never selected
}
# Selected in draw order: 999 is not in the db, the second 10 and 90 are duplicates.
SELECTED_IDS = [10, 20, 30, 40, 50, 60, 70, 999, 10, 80, 90, 100, 90]
EXPECTED_REASON = {
    20: "deleted", 30: "banned", 40: "gold_only", 50: "gold_only", 60: "not_image",
    999: "not_in_db", 80: "deleted", 100: "not_image",
}
# (post_id, tag_id) in file (= rowid) order: post 10's and 90's rows interleave; tag ids out
# of order on purpose (lists follow file order, not tag id). Post 20 (dropped) names an
# unknown tag.
POST_TAGS = [
    (10, 6), (90, 3), (10, 2), (10, 1), (20, 12345), (90, 1), (10, 5), (10, 4), (10, 3),
    (110, 1), (90, 7),
]
TAGS = [
    (1, 10, 6), (2, 90, 3), (3, 10, 2), (4, 10, 1), (5, 20, 12345), (6, 90, 1),
    (7, 10, 5), (8, 10, 4), (9, 10, 3), (10, 110, 1), (11, 90, 7),
]
TAGS = [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4), (6, 0), (7, 0)]  # (id, type)


def posts_frame() -> pl.DataFrame:
    ids = sorted(POSTS)
    col = list(zip(*(POSTS[i] for i in ids), strict=True))
    n = len(ids)
    return pl.DataFrame({
        "id": ids, "created_at": [f"2020-01-{i % 28 + 1:02d}T00:00:00" for i in ids],
        "md5": list(col[0]), "file_ext": list(col[1]),
        "image_width": [100 + i for i in ids], "image_height": [200 + i for i in ids],
        "rating": [i % 4 for i in ids], "score": [1] * n, "fav_count": [i * 2 for i in ids],
        "is_deleted": list(col[2]), "is_banned": list(col[3]), "file_url": list(col[4]),
    }, schema=POSTS_SCHEMA)


def selected_frame(ids: list[int]) -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame({"position": range(n), "id": ids, "range_index": [0] * n,
                         "draw_index": range(n)}, schema=SELECTED_SCHEMA)


def tags_frame() -> pl.DataFrame:
    return pl.DataFrame({"id": [t for t, _ in TAGS], "type": [k for _, k in TAGS],
                         "name": [f"tag{t}" for t, _ in TAGS], "popularity": [1] * len(TAGS)},
                        schema=TAGS_SCHEMA)


def post_tags_frame(rows: list[tuple[int, int]] = POST_TAGS) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=POST_TAGS_COLUMNS, orient="row")


def write_tables(tmp_path: Path) -> dict[str, Path]:
    """The four input tables written like the upstream stages write them."""
    paths = {k: tmp_path / f"{k}.parquet" for k in ("selected", "posts", "tags", "post_tags")}
    write_table(selected_frame(SELECTED_IDS), paths["selected"], SELECTED_SCHEMA)
    write_table(posts_frame(), paths["posts"], POSTS_SCHEMA)
    write_table(tags_frame(), paths["tags"], TAGS_SCHEMA)
    write_table(post_tags_frame(), paths["post_tags"], POST_TAGS_COLUMNS)
    return paths
