"""Per-shard parallelism: an ordered map over shards, in worker processes when asked."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_shards(fn: Callable[[T], R], tasks: Sequence[T], workers: int, desc: str) -> list[R]:
    """[fn(t) for t in tasks] in task order (so outputs never depend on scheduling), with a
    tqdm bar on stderr; spawned worker processes when workers > 1 (forking a process that
    already runs polars/numpy threads can deadlock)."""
    from tqdm import tqdm

    bar = dict(total=len(tasks), desc=desc, unit="shard", file=sys.stderr, mininterval=2.0)
    if workers <= 1 or len(tasks) <= 1:
        return [fn(t) for t in tqdm(tasks, **bar)]
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        return list(tqdm(pool.map(fn, tasks), **bar))
