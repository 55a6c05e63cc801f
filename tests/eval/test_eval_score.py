"""The score formula on hand-made difference matrices, and the prompts/seeds of generation."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kxl.errors import KxlError
from kxl.eval.config import GenerateConfig
from kxl.eval.prompts import generation_jobs
from kxl.eval.score import character_scores, pair_scores


def test_scores_on_a_hand_made_matrix() -> None:
    # refs: 3 of character 0, 2 of character 1; generated: 2 of character 0, 1 of character 1
    diff = np.array([
        [0.10, 0.30, 0.05],
        [0.20, 0.10, 0.90],
        [0.25, 0.50, 0.90],
        [0.90, 0.00, 0.15],
        [0.90, 0.00, 0.40],
    ])
    ref = np.array([0, 0, 0, 1, 1])
    gen = np.array([0, 0, 1])
    score, mean, n = pair_scores(diff, ref, gen, threshold=0.2)
    # g0: 0.10, 0.20 (<= is same, as imgutils' ccip_same), 0.25 -> 2/3; g1: 0.10 only -> 1/3;
    # g2 vs refs of character 1: 0.15 yes, 0.40 no -> 1/2. Cross-character pairs never count.
    np.testing.assert_allclose(score, [2 / 3, 1 / 3, 1 / 2])
    np.testing.assert_allclose(mean, [(0.1 + 0.2 + 0.25) / 3, 0.3, 0.275])
    assert n.tolist() == [3, 3, 2]


def test_character_score_is_the_fraction_of_same_pairs() -> None:
    images = pl.DataFrame({
        "model": ["m"] * 3, "rank": [0, 0, 1], "tag_id": [10, 10, 11], "image": [0, 1, 0],
        "score": [2 / 3, 1 / 3, 0.5], "mean_difference": [0.2, 0.3, 0.4], "n_refs": [3, 3, 2],
    }, schema={"model": pl.String, "rank": pl.Int32, "tag_id": pl.Int64, "image": pl.Int32,
               "score": pl.Float64, "mean_difference": pl.Float64, "n_refs": pl.Int32})
    chars = pl.DataFrame({"tag_id": [10, 11], "character": ["a", "b"], "series": ["s", None]})
    out = character_scores(images, chars)
    assert out["score"].to_list() == pytest.approx([0.5, 0.5])  # (2 + 1) / 6 pairs, 1 / 2
    assert out["n_images"].to_list() == [2, 1] and out["character"].to_list() == ["a", "b"]


def test_generated_image_without_reference_is_an_error() -> None:
    with pytest.raises(KxlError, match="character 5 has no reference image"):
        pair_scores(np.zeros((2, 1)), np.array([0, 0]), np.array([5]), 0.5)
    with pytest.raises(KxlError, match=r"difference matrix is \(2, 2\)"):
        pair_scores(np.zeros((2, 2)), np.array([0, 0]), np.array([0]), 0.5)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 3), st.integers(0, 2**32 - 1),
       st.floats(0.0, 1.0))
def test_vectorised_score_matches_pair_counting(r: int, g: int, k: int, seed: int,
                                                thr: float) -> None:
    rng = np.random.Generator(np.random.PCG64(seed))
    ref = np.concatenate([np.arange(k), rng.integers(0, k, r)])
    gen = rng.integers(0, k, g)
    diff = rng.random((len(ref), g)).round(2)  # rounded: ties with the threshold happen
    score, mean, _ = pair_scores(diff, ref, gen, thr)
    for j in range(g):
        pairs = [diff[i, j] for i in range(len(ref)) if ref[i] == gen[j]]
        assert score[j] == pytest.approx(sum(d <= thr for d in pairs) / len(pairs))
        assert mean[j] == pytest.approx(sum(pairs) / len(pairs))


def test_prompts_follow_the_card_and_seeds_are_fixed() -> None:
    chars = pl.DataFrame({
        "rank": [0, 1], "tag_id": [10, 11], "gender": ["1girl", None],
        "character": ["hatsune_miku_(append)", "c_c"], "series": ["vocaloid", None],
    }, schema={"rank": pl.Int32, "tag_id": pl.Int64, "gender": pl.String,
               "character": pl.String, "series": pl.String})
    cfg = GenerateConfig(images_per_character=2, quality_tags="masterpiece, best quality",
                         year_tag="newest", rating_tag="safe", negative_prompt="worst quality")
    jobs = generation_jobs(chars, cfg, run_seed=1337)
    assert jobs["prompt"][0] == ("1girl, hatsune miku (append), vocaloid, masterpiece, "
                                 "best quality, newest, safe")
    assert jobs["prompt"][2] == "c_c, masterpiece, best quality, newest, safe"  # <= 3 chars
    assert jobs["negative_prompt"].unique().to_list() == ["worst quality"]
    seeds = jobs["seed"].to_list()
    assert len(set(seeds)) == 4 and all(0 <= s < 2**63 for s in seeds)
    again = generation_jobs(chars.reverse(), cfg, run_seed=1337).sort("rank", "image")
    assert again["seed"].to_list() == seeds  # per (character, image), not per position
    assert generation_jobs(chars, cfg, run_seed=1)["seed"].to_list() != seeds
