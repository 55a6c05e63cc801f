"""The typed `posts:` config section (validated first by config/schema.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["sample", "choices"]


@dataclass(frozen=True)
class IdRange:
    """Post ids in [start, stop) (`stop` None = open); `count` posts or "all" of them."""

    start: int
    stop: int | None
    count: int | Literal["all"]


@dataclass(frozen=True)
class PostsConfig:
    """`mode`: sample (without replacement, kxl default) or choices (HakuBooru Delta script).

    `seed` overrides the run seed for this stage only (the Delta script used
    `seed_everything(1)` while its trainer used `--seed=1337`); None = the run seed.
    """

    ranges: tuple[IdRange, ...]
    mode: Mode = "sample"
    seed: int | None = None
