"""Character-set selection: ranking, thresholds, references, series and gender."""

from __future__ import annotations

import polars as pl
import pytest
from eval_fixtures import TAGS, dataset_table, kept_table

from kxl.errors import KxlError
from kxl.eval.characters import select_characters
from kxl.eval.config import CharactersConfig

# alice (10): 5 posts (4 solo), bob (11): 4 posts (all solo), cyd (12): 3 posts, dee (13): 4 posts
# but only 1 solo. Post 9 has no image in the dataset and must not count.
ROWS = [
    (1, [1], [10], [20], 5), (2, [1], [10], [20], 9), (3, [2], [10], [21], 1),
    (4, [1], [10], [20], 3), (5, [1], [10, 13], [20], 50),
    (6, [2], [11], [21], 2), (7, [2], [11], [21], 2), (8, [1], [11], [20], 4),
    (9, [2], [11], [], 0), (10, [2], [11], [21], 8),
    (11, [3], [12], [], 1), (12, [3], [12], [], 1), (13, [], [12], [], 1),
    (14, [1], [13, 10], [20], 1), (15, [1], [13, 11], [], 1), (16, [1], [13], [21], 1),
]
DATASET = [r[0] for r in ROWS if r[0] != 9]


def select(**kw: int) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    cfg = CharactersConfig(**{"min_posts": 3, "min_refs": 2, "max_refs": 3, "top_n": 10,
                              "allow_fewer": True, **kw})
    return select_characters(kept_table(ROWS), TAGS, dataset_table(DATASET), cfg)


def test_ranking_by_dataset_post_count_then_name() -> None:
    chars, _, summary = select()
    # alice 6 (posts 1-5, 14), bob 4 (6, 7, 8, 10, 15 -> 5 minus post 9 without image), dee 4
    assert chars["character"].to_list() == ["alice_(wonder)", "bob", "cyd_x"]
    assert chars["post_count"].to_list() == [6, 5, 3]
    assert chars["rank"].to_list() == [0, 1, 2]
    assert summary["too_few_refs"] == ["dee"]  # 4 posts but only 1 solo reference


def test_min_posts_and_top_n() -> None:
    chars, _, summary = select(min_posts=5)
    assert chars["character"].to_list() == ["alice_(wonder)", "bob"]
    chars, refs, _ = select(top_n=1)
    assert chars["character"].to_list() == ["alice_(wonder)"]
    assert set(refs["tag_id"].to_list()) == {10}


def test_references_are_solo_best_first_and_capped() -> None:
    _, refs, _ = select()
    alice = refs.filter(pl.col("tag_id") == 10)
    # solo alice posts 1 (fav 5), 2 (9), 3 (1), 4 (3); post 5 and 14 have two characters
    assert alice["post_id"].to_list() == [2, 1, 4]
    assert alice["ref_index"].to_list() == [0, 1, 2]
    bob = refs.filter(pl.col("tag_id") == 11)
    assert 9 not in bob["post_id"].to_list()  # no image in the dataset
    assert bob["post_id"].to_list() == [10, 8, 6]  # fav 8, 4, then 2/2 tie broken by id
    assert refs["file"][0] == "files/0002/2.png"


def test_min_refs_excludes_and_names() -> None:
    chars, _, summary = select(min_refs=4, max_refs=50)
    assert chars["character"].to_list() == ["alice_(wonder)", "bob"]
    assert chars["n_refs"].to_list() == [4, 4]
    assert summary["too_few_refs"] == ["dee", "cyd_x"]  # in rank order (4 posts, 3 posts)


def test_top_n_is_exact_unless_fewer_are_allowed() -> None:
    # 3 characters qualify (alice, bob, cyd_x; dee has too few references)
    with pytest.raises(KxlError) as exc:
        select(top_n=4, allow_fewer=False)
    assert str(exc.value) == (
        "eval.characters: 3 character(s) qualify (>= 3 posts in the dataset and >= 2 "
        "references; 1 more with too few references), top_n asks for exactly 4; lower top_n "
        "or set allow_fewer: true")
    chars, _, _ = select(top_n=3, allow_fewer=False)
    assert chars.height == 3
    chars, _, summary = select(top_n=4, allow_fewer=True)
    assert chars.height == 3 and summary["selected"] == 3


def test_max_refs_below_min_refs_is_a_config_error() -> None:
    with pytest.raises(KxlError, match=r"max_refs 3 < min_refs 4"):
        select(min_refs=4)


def test_series_and_gender_are_the_most_frequent() -> None:
    chars, _, _ = select()
    by = {r["character"]: r for r in chars.iter_rows(named=True)}
    assert by["alice_(wonder)"]["series"] == "series_a"  # 5 x series_a, 1 x series_b
    assert by["alice_(wonder)"]["gender"] == "1girl"
    assert by["bob"]["series"] == "series_b" and by["bob"]["gender"] == "1boy"
    assert by["cyd_x"]["series"] is None and by["cyd_x"]["gender"] == "1other"


def test_deterministic_under_input_order() -> None:
    a = select()
    shuffled = kept_table(ROWS[::-1])
    cfg = CharactersConfig(min_posts=3, min_refs=2, max_refs=3, top_n=10, allow_fewer=True)
    b = select_characters(shuffled, TAGS, dataset_table(DATASET[::-1]), cfg)
    assert a[0].equals(b[0]) and a[1].equals(b[1])


def test_unknown_character_tag_is_a_one_line_error() -> None:
    bad = kept_table([*ROWS, (99, [], [777], [], 0)])
    with pytest.raises(KxlError, match=r"post 99 has character tag 777") as exc:
        select_characters(bad, TAGS, dataset_table([*DATASET, 99]), CharactersConfig(1, 1, 1, 1))
    assert "\n" not in str(exc.value)


def test_missing_column_names_table_and_column() -> None:
    with pytest.raises(KxlError, match=r"dataset.parquet: missing column 'file'"):
        select_characters(kept_table(ROWS), TAGS, dataset_table(DATASET).drop("file"),
                          CharactersConfig())
