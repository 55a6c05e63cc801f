"""Stage 3: one reason per dropped row (first match wins), tag lists, summary, invariant."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from manifest_fixtures import (
    EXPECTED_REASON,
    POSTS,
    SELECTED_IDS,
    post_tags_frame,
    posts_frame,
    selected_frame,
    tags_frame,
)

from kxl.errors import KxlError
from kxl.manifest import build as build_mod
from kxl.manifest.build import build_manifest, build_manifest_from_files
from kxl.manifest.schemas import DROPPED_SCHEMA, KEPT_SCHEMA, REASONS

EXTS = ["jpg", "jpeg", "png", "webp"]
NAMES = {"selected": "selected", "posts": "posts", "tags": "tags", "post_tags": "post_tags"}


def build(selected_ids=SELECTED_IDS, posts=None, relations=None, exts=EXTS):
    posts = posts_frame() if posts is None else posts
    rel = post_tags_frame() if relations is None else relations
    return build_manifest(selected_frame(selected_ids), posts, tags_frame(), rel.lazy(), exts,
                          NAMES)


def test_every_reason_first_match_wins() -> None:
    m = build()
    got = dict(zip(m.dropped["position"], m.dropped["reason"], strict=True))
    expected = {p: EXPECTED_REASON[i] for p, i in enumerate(SELECTED_IDS) if i in EXPECTED_REASON}
    expected |= {8: "duplicate", 12: "duplicate"}  # second draws of 10 and 90
    assert got == expected
    assert set(m.dropped["reason"]) == set(REASONS)
    detail = dict(zip(m.dropped["position"], m.dropped["detail"], strict=True))
    assert detail[8] == "same id as position 0" and detail[12] == "same id as position 10"
    assert (detail[3], detail[4], detail[5], detail[11]) == (
        "md5 is null", "file_url is null", "file_ext=gif", "file_ext=null")
    # post 80 is deleted, banned, gold_only and not an image: the first reason is recorded
    assert detail[9] == "is_deleted"


def test_duplicate_precedes_every_other_reason() -> None:
    m = build([20, 20, 999, 999])
    assert m.dropped["reason"].to_list() == ["deleted", "duplicate", "not_in_db", "duplicate"]


def test_kept_rows_and_tag_lists_in_rowid_order() -> None:
    m = build()
    assert m.kept.schema == pl.Schema(KEPT_SCHEMA)
    assert m.kept["id"].to_list() == [10, 70, 90]
    assert m.kept["position"].to_list() == [0, 6, 10]
    row = m.kept.row(0, named=True)
    assert (row["md5"], row["file_ext"], row["width"], row["height"], row["fav_count"]) == (
        POSTS[10][0], "jpg", 110, 210, 20)
    # post 10 rows: rowid 1 tag 6, 3 tag 2, 4 tag 1, 7 tag 5, 8 tag 4, 9 tag 3
    assert (row["tags_general"], row["tags_artist"], row["tags_character"],
            row["tags_copyright"], row["tags_meta"]) == ([6, 1], [2], [3], [4], [5])
    assert m.kept.row(1, named=True)["tags_general"] == []  # post 70 has no tags: empty lists
    assert m.kept.row(2, named=True)["tags_general"] == [1, 7]


def test_rowid_order_is_restored_when_the_file_is_not_sorted() -> None:
    shuffled = post_tags_frame().sample(fraction=1.0, shuffle=True, seed=3)
    assert build(relations=shuffled).kept.equals(build().kept)


def test_summary_counts_and_invariant() -> None:
    m = build()
    s = m.summary
    assert s["selected"] == len(SELECTED_IDS) == s["kept"] + s["dropped_total"]
    assert s["dropped"] == {"duplicate": 2, "not_in_db": 1, "deleted": 2, "banned": 1,
                            "gold_only": 2, "not_image": 2}
    assert m.dropped.schema == pl.Schema(DROPPED_SCHEMA)
    assert m.dropped["position"].is_sorted()


def test_image_exts_come_from_config() -> None:
    m = build(exts=["gif", "jpg"])
    assert 60 in m.kept["id"].to_list()  # gif now an image
    assert m.summary["dropped"]["not_image"] == 3  # png 70, webp 90, null ext 100; not 60


def test_broken_invariant_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    real = build_mod.kept_table
    monkeypatch.setattr(build_mod, "kept_table", lambda c, lists: real(c, lists).head(2))
    with pytest.raises(KxlError, match="manifest invariant broken: selected 13 != kept 2"):
        build()


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda p: pl.concat([p, p.head(1)]), "posts: id 10 appears more than once"),
        (lambda p: p.with_columns(is_deleted=pl.when(pl.col("id") == 30).then(None)
                                  .otherwise(pl.col("is_deleted"))),
         "posts: column 'is_deleted' is null for id 30"),
    ],
)
def test_bad_posts_rows_are_one_line_errors(mutate, needle: str) -> None:
    with pytest.raises(KxlError) as exc:
        build(posts=mutate(posts_frame()))
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_unknown_tag_of_a_kept_post_is_an_error_but_of_a_dropped_one_is_not() -> None:
    build()  # post 20 (deleted) names tag 12345: not read, no error
    rows = [*post_tags_frame().rows(), (12, 70, 12345)]
    with pytest.raises(KxlError, match="rowid 12 .post 70. names tag id 12345, which is not in"):
        build(relations=pl.DataFrame(rows, schema=post_tags_frame().schema, orient="row"))


def test_positions_must_be_the_selected_list(tables: dict[str, Path]) -> None:
    sel = selected_frame(SELECTED_IDS).with_columns(position=pl.col("position") * 2)
    with pytest.raises(KxlError, match="positions are not 0..12"):
        build_manifest(sel, posts_frame(), tags_frame(), post_tags_frame().lazy(), EXTS, NAMES)


def test_from_files_matches_in_memory(tables: dict[str, Path]) -> None:
    m = build_manifest_from_files(*(str(tables[k]) for k in NAMES), EXTS)
    ref = build()
    assert m.kept.equals(ref.kept) and m.dropped.equals(ref.dropped)
    assert m.summary == ref.summary


def test_empty_selection_gives_empty_schema_valid_tables() -> None:
    m = build([])
    assert m.kept.height == m.dropped.height == 0
    assert m.kept.schema == pl.Schema(KEPT_SCHEMA)
    assert m.summary["dropped"] == dict.fromkeys(REASONS, 0)


def reference_reason(post: dict | None, seen: bool, exts: list[str]) -> str | None:
    """The reason rules of docs/formats.md, one row at a time (a plain restatement)."""
    if seen:
        return "duplicate"
    if post is None:
        return "not_in_db"
    if post["is_deleted"]:
        return "deleted"
    if post["is_banned"]:
        return "banned"
    if post["md5"] is None or post["file_url"] is None:
        return "gold_only"
    if post["file_ext"] not in exts:
        return "not_image"
    return None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans(),
                       st.sampled_from(["jpg", "png", "gif", "mp4", None])),
             min_size=1, max_size=30),
    st.lists(st.integers(0, 40), max_size=60),
)
def test_reasons_match_a_row_by_row_reference(flags, picks: list[int]) -> None:
    posts = posts_frame().head(0)
    rows = [{**posts_frame().row(0, named=True), "id": i, "is_deleted": d, "is_banned": b,
             "md5": None if g else "m", "file_url": None if u else "u", "file_ext": e}
            for i, (d, b, g, u, e) in enumerate(flags)]
    posts = pl.DataFrame(rows, schema=posts.schema)
    m = build(picks, posts=posts, relations=post_tags_frame().head(0))
    by_id = {r["id"]: r for r in rows}
    got = dict(zip(m.dropped["position"], m.dropped["reason"], strict=True))
    seen: set[int] = set()
    for pos, i in enumerate(picks):
        assert got.get(pos) == reference_reason(by_id.get(i), i in seen, EXTS), (pos, i)
        seen.add(i)
    assert m.kept.height + m.dropped.height == len(picks)
    assert m.kept["id"].is_sorted() and m.kept["id"].n_unique() == m.kept.height
