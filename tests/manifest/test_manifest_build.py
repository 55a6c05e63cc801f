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
    TAGS,
    post_tags_frame,
    posts_frame,
    selected_frame,
    tags_frame,
    write_tables,
)

from kxl import tables as tables_mod
from kxl.errors import KxlError
from kxl.manifest import build as build_mod
from kxl.manifest.build import build_manifest, build_manifest_from_files
from kxl.manifest.schemas import DROPPED_SCHEMA, KEPT_SCHEMA, POST_TAGS_COLUMNS, REASONS
from kxl.tables import write_table

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


def test_kept_rows_and_tag_lists_in_file_order() -> None:
    m = build()
    assert m.kept.schema == pl.Schema(KEPT_SCHEMA)
    assert m.kept["id"].to_list() == [10, 70, 90]
    assert m.kept["position"].to_list() == [0, 6, 10]
    row = m.kept.row(0, named=True)
    assert (row["md5"], row["file_ext"], row["width"], row["height"], row["fav_count"]) == (
        POSTS[10][0], "jpg", 110, 210, 20)
    # post 10's rows, in file order: tags 6, 2, 1, 5, 4, 3
    assert (row["tags_general"], row["tags_artist"], row["tags_character"],
            row["tags_copyright"], row["tags_meta"]) == ([6, 1], [2], [3], [4], [5])
    assert m.kept.row(1, named=True)["tags_general"] == []  # post 70 has no tags: empty lists
    assert m.kept.row(2, named=True)["tags_general"] == [1, 7]


TYPE_OF = dict(TAGS)


def reference_lists(rows: list[tuple[int, int]], post: int) -> list[list[int]]:
    """A post's tag lists by type, read row by row in file order (a plain restatement)."""
    lists: list[list[int]] = [[] for _ in range(5)]
    for p, t in rows:
        if p == post:
            lists[TYPE_OF[t]].append(t)
    return lists


LIST_COLUMNS = ["tags_general", "tags_artist", "tags_character", "tags_copyright", "tags_meta"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([10, 70, 90, 20]), st.sampled_from(sorted(TYPE_OF))),
                max_size=80),
       st.integers(1, 7))
def test_file_order_is_kept_within_each_post_when_posts_interleave(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[int, int]], group: int
) -> None:
    """The contract: a post's tags come in file order, however the posts' rows interleave in
    the file (and across row groups: the streaming scan reads several)."""
    paths = write_tables(tmp_path_factory.mktemp("interleaved"))
    old = tables_mod._ROW_GROUP
    tables_mod._ROW_GROUP = group
    try:
        write_table(post_tags_frame(rows), paths["post_tags"], POST_TAGS_COLUMNS)
    finally:
        tables_mod._ROW_GROUP = old
    for m in (build(relations=post_tags_frame(rows)),
              build_manifest_from_files(*(str(paths[k]) for k in NAMES), EXTS)):
        for kept in m.kept.iter_rows(named=True):
            got = [kept[c] for c in LIST_COLUMNS]
            assert got == reference_lists(rows, kept["id"]), kept["id"]


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
    rows = [*post_tags_frame().rows(), (70, 12345)]
    with pytest.raises(KxlError, match="row 11 .post 70. names tag id 12345, which is not in"):
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
