"""A verdict for every pair of compared models, over the characters both scored.

For models in `eval.generate.models` order and every i < j, b = model j is compared with
a = model i (so the pair of the first two is the report's gap, 2nd minus 1st):
- mean_score_gap: mean over characters of score_b - score_a (higher: b draws them better);
- mean_difference_gap: the same for the mean CCIP difference (lower: b is closer);
- wins / losses / ties: characters where b's score is above / below / equal to a's (scores
  within TIE of each other are ties: equal image scores summed in another order differ in the
  last bits);
- p_value: the two-sided exact sign test over characters (ties dropped; under "neither is
  better" wins ~ Binomial(wins + losses, 1/2)): p = min(1, 2 P(X <= min(wins, losses)));
- verdict: "better" (b over a) when p < ALPHA and wins > losses, "worse" when p < ALPHA and
  wins < losses, else "indistinguishable".

Why the sign test: it is exact and needs no seed (a bootstrap would), assumes nothing about the
scores' distribution (fractions of reference pairs, with many ties at 0 and 1), and counts
characters, the unit of a claim like "beats Delta over 3600 characters". Each pair is tested at
ALPHA on its own (no correction for the k(k-1)/2 pairs of k models).
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

ALPHA = 0.05
TIE = 1e-12


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign-test p-value (1.0 when there is nothing to test)."""
    n = wins + losses
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1))
    return min(1.0, 2 * tail / 2**n)  # exact integers: no underflow in the sum at n = 3600


def verdict(wins: int, losses: int, p_value: float) -> str:
    if p_value >= ALPHA or wins == losses:
        return "indistinguishable"
    return "better" if wins > losses else "worse"


def _side(scores: pl.DataFrame, name: str, tag: str) -> pl.DataFrame:
    return scores.filter(pl.col("model") == name).select(
        "rank", pl.col("score").alias(f"score_{tag}"),
        pl.col("mean_difference").alias(f"diff_{tag}"))


def pair_row(scores: pl.DataFrame, a: str, b: str) -> dict[str, Any]:
    """b against a over the characters (ranks) both have scores for."""
    both = _side(scores, a, "a").join(_side(scores, b, "b"), on="rank", how="inner")
    d = (both["score_b"] - both["score_a"]).to_numpy()
    wins, losses = int((d > TIE).sum()), int((d < -TIE).sum())
    p = sign_test(wins, losses)
    n = both.height
    return {
        "a": a, "b": b, "characters": n,
        "mean_score_gap": float(d.mean()) if n else None,
        "mean_difference_gap": float((both["diff_b"] - both["diff_a"]).mean()) if n else None,
        "wins": wins, "losses": losses, "ties": n - wins - losses,
        "p_value": p, "verdict": verdict(wins, losses, p),
    }


def pair_table(scores: pl.DataFrame, names: list[str]) -> list[dict[str, Any]]:
    """One row per pair (names[i], names[j]), i < j, in that order; `scores`: SCORES_SCHEMA."""
    return [pair_row(scores, a, b) for i, a in enumerate(names) for b in names[i + 1:]]
