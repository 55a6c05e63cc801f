"""Typed config sections of stage metadata (config keys `metadata.synthetic` and
`metadata.huggingface`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SyntheticConfig:
    """A synthetic HakuBooru-schema DB: `n_posts` posts with ids in [1, max_id]."""

    seed: int
    n_posts: int
    max_id: int


@dataclass(frozen=True)
class HuggingFaceConfig:
    """One file of a HF dataset repo at a pinned revision, optionally sha256-checked."""

    repo_id: str
    filename: str
    revision: str
    sha256: str | None = None


# The full-scale synthetic DB used by benchmarks: every id of danbooru2023 up to 7,349,999
# (ids start at 1, so 7,349,999 posts), ~30 tags per post, ~220M relation rows.
FULL_SCALE = SyntheticConfig(seed=0, n_posts=7_349_999, max_id=7_349_999)
