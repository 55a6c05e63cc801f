"""Every pair of compared models (kxl.eval.pairs) on a hand-made score table: gaps, win counts,
the exact sign test and the verdict, with the expected numbers worked out by hand."""

from __future__ import annotations

import polars as pl
import pytest

from kxl.eval.pairs import pair_table, sign_test

# 7 characters; a: 0.5 each; b: above a on 6, equal on 1; c: mixed against a, below b on 6.
SCORES = {
    "a": [0.50, 0.50, 0.50, 0.50, 0.50, 0.50, 0.50],
    "b": [0.60, 0.70, 0.80, 0.60, 0.90, 0.50, 0.55],
    "c": [0.40, 0.60, 0.45, 0.55, 0.30, 0.50, 0.50],
}
DIFFS = {"a": 0.30, "b": 0.20, "c": 0.25}  # mean CCIP difference, the same for every character


def _table() -> pl.DataFrame:
    rows = [(m, r, 100 + r, f"char{r}", None, s, DIFFS[m], 4, 10)
            for m, col in SCORES.items() for r, s in enumerate(col)]
    rows.append(("other", 0, 100, "char0", None, 1.0, 0.0, 4, 10))  # a model not compared
    df = pl.DataFrame(rows, orient="row", schema={
        "model": pl.String, "rank": pl.Int32, "tag_id": pl.Int64, "character": pl.String,
        "series": pl.String, "score": pl.Float64, "mean_difference": pl.Float64,
        "n_images": pl.Int32, "n_refs": pl.Int32})
    return df.sample(fraction=1.0, shuffle=True, seed=3)  # rows in no particular order


@pytest.mark.parametrize(("wins", "losses", "p"), [
    (6, 0, 2 / 64),             # 2 * C(6,0) / 2^6
    (0, 6, 2 / 64),
    (7, 0, 2 / 128),
    (2, 5, 2 * 29 / 128),       # 2 * (C(7,0) + C(7,1) + C(7,2)) / 2^7 = 0.453125
    (1, 5, 2 * 7 / 64),         # 0.21875
    (3, 3, 1.0),                # the tail passes one half: capped at 1
    (0, 0, 1.0),                # only ties: nothing to test
])
def test_sign_test_exact_values(wins: int, losses: int, p: float) -> None:
    assert sign_test(wins, losses) == pytest.approx(p, rel=1e-12)


def test_sign_test_at_the_full_scale_stays_finite() -> None:
    # 3600 characters, 1850 wins: z = (1850 - 1800) / 30 = 1.67 -> p ~ 0.1 (normal approx.)
    assert 0.09 < sign_test(1850, 1750) < 0.11
    assert 0.0 <= sign_test(3600, 0) < 1e-300  # 2 / 2^3600 underflows to 0, no error


def test_every_ordered_pair_with_hand_computed_numbers() -> None:
    rows = pair_table(_table(), ["a", "b", "c"])
    assert [(r["a"], r["b"]) for r in rows] == [("a", "b"), ("a", "c"), ("b", "c")]
    ab, ac, bc = rows
    # b - a = .1 .2 .3 .1 .4 0 .05: 6 wins, 1 tie, mean 1.15 / 7; p = 2/64 -> better
    assert (ab["characters"], ab["wins"], ab["losses"], ab["ties"]) == (7, 6, 0, 1)
    assert ab["mean_score_gap"] == pytest.approx(1.15 / 7)
    assert ab["mean_difference_gap"] == pytest.approx(-0.10)
    assert ab["p_value"] == pytest.approx(0.03125) and ab["verdict"] == "better"
    # c - a = -.1 .1 -.05 .05 -.2 0 0: 2 wins, 3 losses, 2 ties, mean -0.2 / 7; p = 1
    assert (ac["wins"], ac["losses"], ac["ties"]) == (2, 3, 2)
    assert ac["mean_score_gap"] == pytest.approx(-0.2 / 7)
    assert ac["mean_difference_gap"] == pytest.approx(-0.05)
    assert ac["p_value"] == pytest.approx(1.0) and ac["verdict"] == "indistinguishable"
    # c - b = -.2 -.1 -.35 -.05 -.6 0 -.05: 6 losses, 1 tie, mean -1.35 / 7; p = 2/64 -> worse
    assert (bc["wins"], bc["losses"], bc["ties"]) == (0, 6, 1)
    assert bc["mean_score_gap"] == pytest.approx(-1.35 / 7)
    assert bc["mean_difference_gap"] == pytest.approx(0.05)
    assert bc["p_value"] == pytest.approx(0.03125) and bc["verdict"] == "worse"


def test_first_pair_is_the_reports_gap_and_order_follows_the_config() -> None:
    table = _table()
    first = pair_table(table, ["c", "a"])[0]
    mean = {m: sum(s) / 7 for m, s in SCORES.items()}
    assert first["mean_score_gap"] == pytest.approx(mean["a"] - mean["c"])  # 2nd minus 1st
    assert (first["wins"], first["losses"]) == (3, 2)
    assert pair_table(table, ["a"]) == []


def test_scores_equal_up_to_rounding_are_ties() -> None:
    table = _table().with_columns(
        pl.when((pl.col("model") == "b") & (pl.col("rank") == 5))
        .then(pl.lit(0.7 - 0.2)).otherwise(pl.col("score")).alias("score"))
    assert 0.7 - 0.2 != 0.5  # 0.49999999999999994: still a tie with a's 0.5, not a loss
    assert pair_table(table, ["a", "b"])[0]["ties"] == 1
