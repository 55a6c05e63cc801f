"""Reading the plan: what training (and resume) index into."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import polars as pl

from kxl.errors import KxlError
from kxl.plan.build import PLAN_SCHEMA


def read_plan_from(path: str | os.PathLike[str], step: int, rank: int | None = None,
                   until: int | None = None) -> pl.DataFrame:
    """Rows with `step <= s < until` (for one rank if given), sorted by step, rank, micro, slot.

    The filter is pushed down to the parquet reader: row groups whose step statistics lie below
    `step` are skipped, so resuming late in a 5M-row plan does not read its start.
    """
    if not os.path.isfile(path):
        raise KxlError(f"{path}: plan not found (run `kxl make-plan` first)")
    pred = pl.col("step") >= step
    if until is not None:
        pred &= pl.col("step") < until
    if rank is not None:
        pred &= pl.col("rank") == rank
    df = pl.scan_parquet(path).filter(pred).collect()
    if list(df.schema.items()) != list(PLAN_SCHEMA.items()):
        raise KxlError(f"{path}: columns {dict(df.schema)} are not the plan schema; re-run "
                       "make-plan")
    return df


# What metrics.csv's rows_hash covers; the run report checks it against the plan (kxl.report).
ROWS_HASH_COLUMNS = ("rank", "micro", "slot", "post_id", "sample_seed")


def rows_hash(rows: pl.DataFrame) -> str:
    """sha256 (16 hex) of one step's plan rows over all ranks, in plan order: what it saw."""
    h = hashlib.sha256()
    for col in ROWS_HASH_COLUMNS:
        h.update(np.ascontiguousarray(rows[col].to_numpy()).tobytes())
    return h.hexdigest()[:16]
