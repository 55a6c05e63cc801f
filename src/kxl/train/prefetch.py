"""Read-ahead for storage `none`: decode the plan's next micro-batches in worker processes.

Decoding inline caps a rank near one core's rate (Pillow's decode + BOX resize of a 4 MP webp:
~0.18 s, benchmarks/RESULTS.md "Feeding the GPUs"), whatever its GPU. The plan fixes which
micro-batches this process needs at which step, so from the resume position on the order of
requests is known: `ReadAhead` keeps up to `workers * prefetch` of them in flight in a pool of
spawned processes and hands them out strictly in plan order, so memory stays bounded (each is
n x h x w x 3 uint8). The workers run `kxl.train.data.decode_rows`, the function the inline path
runs, and import numpy, Pillow and polars but not torch (spawn, not fork: a forked torch process
can deadlock), so the arrays are the same bytes; the tensor is made here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

import numpy as np

from kxl.errors import KxlError
from kxl.train.data import DecodedImages, decode_rows

Request = tuple[int, np.ndarray]  # (bucket, post_ids) of one micro-batch


class ReadAhead:
    """A PixelSource over `source` whose `get` must be asked for `requests` in order.

    Use as a context manager: the pool starts on entry and is shut down on exit, normally or
    on an exception (queued work cancelled, no worker left behind). A worker's failure is one
    KxlError line naming the image, raised at the micro-batch that needed it."""

    def __init__(self, source: DecodedImages, requests: Iterable[Request], workers: int,
                 prefetch: int) -> None:
        if workers < 1 or prefetch < 1:
            raise KxlError(f"read-ahead needs workers >= 1 and prefetch >= 1, got {workers} and "
                           f"{prefetch}")
        self.source, self.requests = source, iter(requests)
        self.workers, self.depth = workers, workers * prefetch
        self.queue: deque[tuple[Request, Future[np.ndarray] | KxlError]] = deque()
        self.pool: Any = None

    def __enter__(self) -> ReadAhead:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(self.workers, multiprocessing.get_context("spawn"))
        self._fill()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self.queue.clear()

    def _fill(self) -> None:
        while len(self.queue) < self.depth:
            req = next(self.requests, None)
            if req is None:
                return
            try:  # a bad row is raised when its micro-batch is asked for, as inline
                rows = self.source.rows_of(*req)
            except KxlError as e:
                self.queue.append((req, e))
                continue
            job = self.pool.submit(decode_rows, self.source.root, rows, self.source.resample)
            self.queue.append((req, job))

    def get(self, bucket: int, post_ids: np.ndarray) -> Any:
        """uint8 torch tensor [n, h, w, 3], as DecodedImages.get gives it."""
        from concurrent.futures.process import BrokenProcessPool

        import torch

        if not self.queue:
            raise KxlError(f"read-ahead: bucket {bucket} post_id {int(post_ids[0])} asked for "
                           "after the last planned micro-batch (a kxl bug)")
        (want, ids), job = self.queue.popleft()
        if want != bucket or not np.array_equal(ids, post_ids):
            raise KxlError(f"read-ahead: asked for bucket {bucket} post_id {int(post_ids[0])}, "
                           f"the plan's next micro-batch is bucket {want} post_id "
                           f"{int(ids[0])} (a kxl bug)")
        self._fill()  # before waiting: the workers stay busy
        if isinstance(job, KxlError):
            raise job
        try:
            px = job.result()
        except KxlError as e:  # one line: not the worker's pickled traceback
            raise KxlError(str(e)) from None
        except BrokenProcessPool as e:
            raise KxlError(f"a read-ahead worker died while decoding bucket {bucket} post_id "
                           f"{int(post_ids[0])} ({e}); killed for memory? lower "
                           "train.data_workers or train.prefetch") from None
        return torch.from_numpy(px)
