"""Plan slicing per process, and bad inputs named in one line."""

from __future__ import annotations

import polars as pl
import pytest

from kxl.errors import KxlError
from kxl.tables import read_table
from kxl.train.data import PLAN_SCHEMA, PixelCache, PlanData


def _tables(inputs):
    return (
        read_table(inputs["plan"], PLAN_SCHEMA),
        read_table(inputs["captions"]),
        read_table(inputs["buckets"]),
    )


def test_ranks_partition_the_plan_rows(tiny_inputs) -> None:
    plan, cap, bk = _tables(tiny_inputs)
    one = PlanData(plan, cap, bk, 0, 1)
    halves = [PlanData(plan, cap, bk, r, 2) for r in (0, 1)]
    assert one.layout.world_size == 2 and one.layout.micros_per_step == 2
    for step in one.steps:
        all_ids = [list(mb.post_ids) for mb in one.micro_batches(int(step))]
        split = [list(mb.post_ids) for h in halves for mb in h.micro_batches(int(step))]
        assert sorted(map(tuple, all_ids)) == sorted(map(tuple, split))
        assert one.rows_hash(int(step)) == halves[1].rows_hash(int(step))
    mb = one.micro_batches(0)[0]
    assert mb.time_ids.shape == (2, 6) and len(mb.captions) == 2


def test_world_must_divide_plan_world(tiny_inputs) -> None:
    with pytest.raises(KxlError, match="not a multiple of 3"):
        PlanData(*_tables(tiny_inputs), 0, 3)


def test_missing_caption_named(tiny_inputs) -> None:
    plan, cap, bk = _tables(tiny_inputs)
    victim = int(plan["post_id"][3])
    with pytest.raises(KxlError, match=f"post_id {victim} .* captions.parquet"):
        PlanData(plan, cap.filter(pl.col("id") != victim), bk, 0, 1)


def test_mixed_bucket_micro_batch_named(tiny_inputs) -> None:
    plan, cap, bk = _tables(tiny_inputs)
    bad = plan.with_columns(
        pl.when(pl.arange(0, len(plan)) == 0)
        .then(pl.col("bucket") + 7)
        .otherwise(pl.col("bucket"))
        .cast(pl.Int32)
        .alias("bucket")
    )
    with pytest.raises(KxlError, match="step 0 rank 0 micro 0 mixes buckets"):
        PlanData(bad, cap, bk, 0, 1)


def test_pixel_cache_reads_rows_and_names_missing(tiny_inputs) -> None:
    from safetensors.numpy import load_file

    cache = PixelCache(tiny_inputs["cache"])
    ref = load_file(str(tiny_inputs["cache"] / "000.safetensors"))
    ids = ref["ids"][[2, 0]]
    got = cache.get(0, ids).numpy()
    assert (got == ref["pixels"][[2, 0]]).all()
    with pytest.raises(KxlError, match="post_id 5 not in the bucket cache"):
        cache.get(0, ids * 0 + 5)
    with pytest.raises(KxlError, match="007.safetensors: bucket cache missing"):
        cache.get(7, ids)
