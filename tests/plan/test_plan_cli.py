"""`kxl make-plan` and `read_plan_from` (resume) on hand-made fixtures (`kxl explain-step`, a
stage-train command: tests/train/test_explain.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from kxl.buckets.schema import BUCKETS_SCHEMA
from kxl.cli import main
from kxl.plan.read import read_plan_from
from kxl.tables import write_table

PLAN = {"batch_size": 2, "grad_accum": 2, "world_size": 2, "epochs": 2, "max_steps": None,
        "partial_batch": "keep"}


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    n = 40
    ids = np.arange(100, 100 + n, dtype=np.int64)
    bucket = np.arange(n) % 3
    cols = {c: np.full(n, 0) for c in BUCKETS_SCHEMA if c not in ("id", "bucket")}
    cols.update(bucket_w=32 + 32 * bucket, bucket_h=96 - 32 * bucket, orig_w=np.full(n, 50))
    df = pl.DataFrame({"id": ids, "bucket": bucket, **cols}).cast(BUCKETS_SCHEMA)
    write_table(df, tmp_path / "buckets/buckets.parquet", BUCKETS_SCHEMA)
    rc = main(["make-plan", "--buckets", str(tmp_path / "buckets/buckets.parquet"),
               "--config-json", json.dumps(PLAN), "--seed", "1337",
               "--out", str(tmp_path / "plan/plan.parquet"),
               "--summary", str(tmp_path / "plan/summary.json")])
    assert rc == 0
    return tmp_path


def test_make_plan_outputs(results: Path) -> None:
    summary = json.loads((results / "plan/summary.json").read_text())
    plan = pl.read_parquet(results / "plan/plan.parquet")
    assert summary["steps"] == plan["step"].max() + 1 and summary["samples"] == plan.height == 80
    assert {k: summary[k] for k in ("world_size", "grad_accum", "batch_size", "images")} == {
        "world_size": 2, "grad_accum": 2, "batch_size": 2, "images": 40}
    assert (results / "plan/.prov/plan.parquet.json").is_file()
    # the caption augmentation is training's (train.caption_*), not the plan's
    assert not {k for k in summary if k.startswith("caption")}


def test_read_plan_from_resumes_at_step(results: Path) -> None:
    path = results / "plan/plan.parquet"
    full = pl.read_parquet(path)
    for k in (0, 3, int(full["step"].max())):
        got = read_plan_from(path, k)
        assert got.equals(full.filter(pl.col("step") >= k))
        r1 = read_plan_from(path, k, rank=1)
        assert r1.equals(full.filter((pl.col("step") >= k) & (pl.col("rank") == 1)))
    assert read_plan_from(path, 2, until=3).equals(full.filter(pl.col("step") == 2))


def test_read_plan_skips_row_groups(tmp_path: Path) -> None:
    # a plan split into several row groups: the step filter prunes by row-group statistics
    from kxl.plan.build import PLAN_SCHEMA, build_plan
    from kxl.plan.config import PlanConfig

    plan, _ = build_plan(np.arange(4000), np.zeros(4000, dtype=np.int64), PlanConfig(4, 1, 1), 0)
    pq.write_table(plan.to_arrow(), tmp_path / "p.parquet", row_group_size=500)
    meta = pq.ParquetFile(tmp_path / "p.parquet").metadata
    mins = [meta.row_group(i).column(0).statistics.min for i in range(meta.num_row_groups)]
    assert mins == sorted(mins) and meta.num_row_groups == 8  # sorted by step: stats prune
    got = read_plan_from(tmp_path / "p.parquet", 900)
    assert got["step"].min() == 900 and got.height == 400
    assert plan.schema == pl.Schema(PLAN_SCHEMA)

