"""One test per captioner rule (kxl.captions.kohaku module doc), on hand-made tables."""

from __future__ import annotations

import warnings

import polars as pl
import pytest

from kxl.captions import kohaku
from kxl.captions.io import KEPT_COLUMNS, TAGS_COLUMNS
from kxl.captions.kohaku import CaptionsConfig, make_captions
from kxl.errors import KxlError

TYPES = {"g": 0, "a": 1, "ch": 2, "co": 3, "m": 4}


def tags_table(*names: tuple[str, str]) -> pl.DataFrame:
    """Tags (type key, name) get ids 1, 2, ... in the order given."""
    rows = [(i + 1, name, TYPES[t]) for i, (t, name) in enumerate(names)]
    return pl.DataFrame(rows, schema=list(TAGS_COLUMNS), orient="row").cast(TAGS_COLUMNS)


def post(
    post_id: int = 1, *, rating: int | None = 0, fav: int | None = 0,
    created: str | None = "2021-01-01T00:00:00.000-05:00", **lists: list[int],
) -> dict[str, object]:
    row: dict[str, object] = {"id": post_id, "rating": rating, "fav_count": fav,
                              "created_at": created}
    for key in ("general", "artist", "character", "copyright", "meta"):
        row[f"tags_{key}"] = lists.get(key, [])
    return row


def caption(tags: pl.DataFrame, *posts: dict[str, object], **cfg: object) -> list[str]:
    kept = pl.DataFrame(list(posts), schema=KEPT_COLUMNS)
    return make_captions(kept, tags, CaptionsConfig(**cfg))["caption"].to_list()  # type: ignore[arg-type]


NEWEST_SAFE_WORST = "newest, safe, worst quality"


def test_rule1_rowid_order_within_a_type_and_repeats_kept() -> None:
    tags = tags_table(("g", "aaaa"), ("g", "bbbb"), ("g", "cccc"))
    assert caption(tags, post(general=[3, 1, 2, 3])) == [
        f", |||cccc, aaaa, bbbb, cccc, {NEWEST_SAFE_WORST}"
    ]


def test_rule2_special_tags_only_from_general_in_their_order() -> None:
    tags = tags_table(("g", "solo"), ("g", "male_focus"), ("g", "1girl"),
                      ("ch", "multiple_others"), ("g", "multiple_girls_x"))
    assert caption(tags, post(general=[1, 2, 5, 3], character=[4])) == [
        "male focus, 1girl, multiple others, |||solo, multiple girls x, " + NEWEST_SAFE_WORST
    ]


def test_rule3_banned_artists_and_blacklisted_meta_dropped_case_sensitively() -> None:
    names = [("a", "banned_artist"), ("a", "BANNED_x"), ("a", "un_banned")]
    names += [("m", k + "_x") for k in kohaku.META_BLACKLIST] + [("m", "Bad_id"), ("m", "highres")]
    tags = tags_table(*names)
    meta_ids = list(range(4, len(names) + 1))
    assert caption(tags, post(artist=[1, 2, 3], meta=meta_ids)) == [
        f"BANNED x, |||Bad id, highres, {NEWEST_SAFE_WORST}"
    ]


def test_rule3_filters_do_not_touch_other_types() -> None:
    tags = tags_table(("g", "bad_anatomy"), ("ch", "banned_girl"), ("a", "commentary_guy"))
    assert caption(tags, post(general=[1], character=[2], artist=[3])) == [
        f"banned girl, commentary guy, |||bad anatomy, {NEWEST_SAFE_WORST}"
    ]


def test_rule4_underscores_only_for_names_longer_than_three_code_points() -> None:
    tags = tags_table(("g", "^_^"), ("g", "^_^;"), ("g", "é_è"), ("g", "\U0001f642_\U0001f642"),
                      ("g", "saber_(fate)"), ("g", "a__b"))
    got = caption(tags, post(general=[1, 2, 3, 4, 5, 6]), tag_word_sep="-")
    assert got == [", |||^_^, ^-^;, é_è, \U0001f642_\U0001f642, saber-(fate), a--b, "
                   + NEWEST_SAFE_WORST]


def test_rule4_whitespace_only_names_skipped_as_python_strip_does() -> None:
    blanks = ["", " ", "\t\n", "\u3000", "\x1c", "\x85", "\u2028"]
    kept_names = ["\u200b", " a "]  # U+200B is not whitespace to Python
    tags = tags_table(*[("g", n) for n in blanks + kept_names])
    ids = list(range(1, len(blanks) + len(kept_names) + 1))
    assert caption(tags, post(general=ids)) == [f", |||\u200b,  a , {NEWEST_SAFE_WORST}"]


def test_py_whitespace_constant_is_exactly_str_isspace() -> None:
    expected = {chr(c) for c in range(0x110000) if chr(c).isspace()}
    assert set(kohaku.PY_WHITESPACE) == expected


def test_rule5_part_order_and_rule9_layout() -> None:
    tags = tags_table(("g", "1girl"), ("g", "smile"), ("a", "artist_x"), ("ch", "char_x"),
                      ("co", "series_x"), ("m", "highres"))
    got = caption(tags, post(general=[2, 1], artist=[3], character=[4], copyright=[5], meta=[6]))
    assert got == [f"1girl, char x, series x, artist x, |||smile, highres, {NEWEST_SAFE_WORST}"]
    custom = caption(tags, post(general=[2]), tag_separator=";", keep_separator="##")
    assert custom == [";##smile;newest;safe;worst quality"]


@pytest.mark.parametrize(
    ("created", "tag"),
    [("2004-12-31T23:59:59.000-05:00", "early"), ("2005-01-01T00:00:00.000-05:00", "old"),
     ("2010-12-31T23:59:59.000-05:00", "old"), ("2011-01-01", "early"), ("2014-12-31", "early"),
     ("2015-01-01", "mid"), ("2017-12-31", "mid"), ("2018-01-01", "recent"),
     ("2020-12-31", "recent"), ("2021-01-01", "newest"), ("2024-12-31T23:59:59Z", "newest"),
     ("2025-01-01", None), ("garbage", "early"), ("", "early"), (None, "early"),
     ("2005-02-29T00:00:00", "early"), ("1999-01-01", "early")],
)
def test_rule6_year_tags(created: str | None, tag: str | None) -> None:
    got = caption(tags_table(), post(created=created))[0]
    assert got == ", |||" + ", ".join(t for t in (tag, "safe", "worst quality") if t)


def test_rule7_rating_tags_in_order_and_joined_with_the_separator() -> None:
    posts = [post(i + 1, rating=r, created="2030-01-01") for i, r in enumerate([0, 1, 2, 3])]
    got = caption(tags_table(), *posts, quality_max_id=0, tag_separator="/")
    assert got == ["/|||safe", "/|||sensitive", "/|||nsfw", "/|||explicit/nsfw"]
    assert caption(tags_table(), post(8_000_000, rating=None, fav=None, created="2030")) == [
        ", |||"
    ]


@pytest.mark.parametrize("rating", [0, 1, 2, 3])
def test_rule8_quality_is_strictly_greater_than_the_percentile(rating: int) -> None:
    thresholds = kohaku.FAV_THRESHOLDS[rating]
    names = kohaku.QUALITY_TAGS
    posts, expected = [], []
    for level, t in enumerate(thresholds):
        posts += [post(len(posts) + 1, rating=rating, fav=t, created="2030"),
                  post(len(posts) + 2, rating=rating, fav=t + 1, created="2030")]
        below = names[level + 1] if level + 1 < len(names) else "worst quality"
        expected += [below, names[level]]
    got = [c.rsplit(", ", 1)[1] for c in caption(tags_table(), *posts)]
    assert got == expected


def test_rule8_no_quality_tag_above_the_id_cutoff() -> None:
    posts = [post(7_100_000, fav=1000, created="2030"), post(7_100_001, fav=1000, created="2030")]
    assert caption(tags_table(), *posts) == [", |||safe, masterpiece", ", |||safe"]
    assert caption(tags_table(), *posts, quality_max_id=7_500_000)[1] == ", |||safe, masterpiece"


def test_constants_equal_hakubooru_metainfo() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from hakubooru import metainfo
    assert metainfo.special_tags == kohaku.SPECIAL_TAGS
    assert list(kohaku.META_BLACKLIST) == metainfo.meta_keywords_black_list
    ratings = ["general", "sensitive", "questionable", "explicit"]
    assert [list(t) for t in kohaku.RATING_TAGS] == [metainfo.rating_map[r] for r in ratings]
    table = metainfo.fav_count_percentile_full
    assert tuple(
        tuple(table[r][p] for p in (90, 75, 60, 45, 30, 10)) for r in ratings
    ) == kohaku.FAV_THRESHOLDS


def test_bad_inputs_raise_one_line_errors_naming_the_row() -> None:
    tags = tags_table(("g", "solo"), ("a", "someone"))
    with pytest.raises(KxlError, match=r"post 1 column tags_general holds tag id 2, which has"):
        caption(tags, post(general=[2]))
    with pytest.raises(KxlError, match=r"post 1 column tags_meta holds tag id 9, which is not in"):
        caption(tags, post(meta=[9]))
    with pytest.raises(KxlError, match=r"post 5 has rating 7"):
        caption(tags, post(5, rating=7))
    with pytest.raises(KxlError, match=r"post 3 has rating=None fav_count=0"):
        caption(tags, post(3, rating=None))
    with pytest.raises(KxlError, match=r"post id 4 appears twice"):
        caption(tags, post(4), post(4))
    with pytest.raises(KxlError, match=r"post 6: created_at '12:30' has no year"):
        caption(tags, post(6, created="12:30"))
    dup = pl.concat([tags, tags])
    with pytest.raises(KxlError, match=r"tag id 1 appears twice"):
        caption(dup, post())
    for err in (KxlError,):
        try:
            caption(tags, post(meta=[9]))
        except err as exc:
            assert "\n" not in str(exc)


def test_output_is_sorted_by_id_and_empty_input_gives_empty_table() -> None:
    tags = tags_table(("g", "solo"))
    kept = pl.DataFrame([post(9), post(2)], schema=KEPT_COLUMNS)
    assert make_captions(kept, tags, CaptionsConfig())["id"].to_list() == [2, 9]
    empty = make_captions(kept.clear(), tags, CaptionsConfig())
    assert empty.height == 0 and empty.schema == {"id": pl.Int64, "caption": pl.String}


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_chunking_and_threads_give_the_same_captions(monkeypatch: pytest.MonkeyPatch,
                                                     threads: int) -> None:
    tags = tags_table(("g", "solo"), ("g", "1girl"), ("m", "highres"))
    posts = [post(i, general=[1 + i % 2], meta=[3] * (i % 3), fav=i) for i in range(1, 50)]
    whole = caption(tags, *posts)
    monkeypatch.setattr(kohaku, "CHUNK", 7)
    monkeypatch.setattr(kohaku, "THREADS", threads)
    assert caption(tags, *posts) == whole
    # posts given out of id order: sorted first, chunks still come in id order
    assert caption(tags, *posts[::-1]) == whole


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_raise_the_first_bad_chunks_error(monkeypatch: pytest.MonkeyPatch,
                                                  threads: int) -> None:
    """Chunks finish in any order, but errors come in chunk order, as without threads."""
    tags = tags_table(("g", "solo"))
    posts = [post(i, general=[99 if i in (20, 40) else 1]) for i in range(1, 50)]
    monkeypatch.setattr(kohaku, "CHUNK", 7)
    monkeypatch.setattr(kohaku, "THREADS", threads)
    with pytest.raises(KxlError, match=r"post 20 column tags_general holds tag id 99"):
        caption(tags, *posts)


def test_a_type_without_any_tags_still_refuses_unknown_ids() -> None:
    tags = tags_table(("g", "solo"))  # no meta tags at all
    assert caption(tags, post(general=[1])) == [f", |||solo, {NEWEST_SAFE_WORST}"]
    with pytest.raises(KxlError, match=r"column tags_meta holds tag id 1, which has another"):
        caption(tags, post(meta=[1]))


def test_unknown_ids_are_refused_even_with_an_empty_tags_table() -> None:
    with pytest.raises(KxlError, match=r"post 1 column tags_general holds tag id 5, which is not"):
        caption(tags_table(), post(general=[5]))
    with pytest.raises(KxlError, match=r"post 1 column tags_general holds tag id -3, which is not"):
        caption(tags_table(("g", "solo")), post(general=[1, -3]))
