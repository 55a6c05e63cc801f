"""Per-shard parallelism: ordered maps over shards, in worker processes when asked."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class ShardPool:
    """Ordered maps that share one set of spawned worker processes (started on the first map
    that needs them, stopped on exit). Forking a process that already runs polars/numpy
    threads can deadlock, hence spawn."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def __enter__(self) -> ShardPool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def map(self, fn: Callable[[T], R], tasks: Sequence[T], desc: str) -> list[R]:
        """[fn(t) for t in tasks] in task order (so outputs never depend on scheduling), with
        a tqdm bar on stderr."""
        from tqdm import tqdm

        bar = dict(total=len(tasks), desc=desc, unit="shard", file=sys.stderr, mininterval=2.0)
        if self.workers <= 1 or len(tasks) <= 1:
            return [fn(t) for t in tqdm(tasks, **bar)]
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=ctx)
        return list(tqdm(self._pool.map(fn, tasks), **bar))


def map_shards(fn: Callable[[T], R], tasks: Sequence[T], workers: int, desc: str) -> list[R]:
    """One ordered map (see ShardPool.map) in its own pool."""
    with ShardPool(workers) as pool:
        return pool.map(fn, tasks, desc)
