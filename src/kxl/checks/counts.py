"""Count gates: what the data and plan stages produced against what the config expects.

The published run saw 5,210,319 images in 20,354 optimizer steps over 97 buckets (SPEC section 1
and the card); a rebuild whose real data gives other counts is another run, so training must not
start on it unnoticed. Each expected count is optional (null = not checked); `tolerance` is
relative (0 = exact); `enforce: false` reports without failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from kxl.errors import KxlError


@dataclass(frozen=True)
class ExpectedCounts:
    selected_posts: int | None = None  # posts/summary.json "selected" (draws, duplicates incl.)
    selected_per_range: list[int] | None = None  # the same per posts.ranges entry
    images: int | None = None  # images/dataset.parquet rows: images training can read
    buckets: int | None = None  # distinct buckets holding images (buckets.parquet)
    steps: int | None = None  # optimizer steps of the plan (plan/summary.json)


@dataclass(frozen=True)
class CountsConfig:
    expected: ExpectedCounts = field(default_factory=ExpectedCounts)
    tolerance: float = 0.0
    enforce: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.tolerance < 1.0:
            raise KxlError(f"config counts.tolerance: must be in [0, 1), got {self.tolerance}")


def measure(posts_summary: dict[str, Any], dataset: pl.DataFrame, buckets: pl.DataFrame,
            plan_summary: dict[str, Any]) -> dict[str, Any]:
    """The run's counts, from the stages' own outputs (nothing is recomputed)."""
    return {
        "selected_posts": int(posts_summary["selected"]),
        "selected_per_range": [int(r["drawn"]) for r in posts_summary["ranges"]],
        "images": dataset.height,
        "buckets": int(buckets["bucket"].n_unique()),
        "steps": int(plan_summary["steps"]),
    }


def _off(actual: int, expected: int, tolerance: float) -> bool:
    return abs(actual - expected) > tolerance * expected


def problems(actual: dict[str, Any], cfg: CountsConfig) -> list[str]:
    """One line per count outside the tolerance, with both numbers."""
    out = []
    tol = f"tolerance {cfg.tolerance:.2%}"
    for name, want in vars(cfg.expected).items():
        if want is None:
            continue
        got = actual[name]
        if isinstance(want, list):
            if len(want) != len(got):
                out.append(f"{name}: config expects {len(want)} range(s), posts.ranges has "
                           f"{len(got)}")
                continue
            out += [f"{name}[{i}]: expected {w:,}, the run has {g:,} ({tol})"
                    for i, (w, g) in enumerate(zip(want, got, strict=True))
                    if _off(g, w, cfg.tolerance)]
        elif _off(got, want, cfg.tolerance):
            rel = (got - want) / want if want else float("inf")
            out.append(f"{name}: expected {want:,}, the run has {got:,} ({rel:+.2%}; {tol})")
    return out
