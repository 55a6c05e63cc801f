"""Stage 7: the data-order plan (docs/formats.md 7)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kxl.errors import KxlError
from kxl.plan.build import PLAN_SCHEMA, build_plan
from kxl.plan.config import PlanConfig
from kxl.plan.seeds import sample_seeds, splitmix64

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for benchmarks/
from benchmarks.plan_bench import loop_plan  # noqa: E402


def _data(n: int, n_buckets: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(10 * n + 10, n, replace=False)).astype(np.int64)
    bucket = rng.choice(n_buckets, n, p=rng.dirichlet(np.ones(n_buckets)))
    return ids, bucket


def _cfg(**kw) -> PlanConfig:
    return PlanConfig(**{"batch_size": 4, "grad_accum": 2, "world_size": 2, **kw})


def test_splitmix64_matches_the_published_generator() -> None:
    # splitmix64 seeded with 0: its first outputs (Vigna's reference C implementation)
    assert splitmix64(np.array([0], dtype=np.uint64))[0] == 0xE220A8397B1DCDAF
    gamma = 0x9E3779B97F4A7C15
    assert splitmix64(np.array([gamma], dtype=np.uint64))[0] == 0x6E789E6AA1B965F4
    s = sample_seeds(1337, 2, np.array([5, 6]))
    assert s.dtype == np.uint64 and s[0] != s[1]
    assert sample_seeds(1337, 3, np.array([5]))[0] != s[0]


@pytest.mark.parametrize("partial", ["keep", "drop", "fill"])
def test_vectorised_plan_equals_per_image_loop(partial: str) -> None:
    ids, bucket = _data(3000, 9)
    cfg = _cfg(partial_batch=partial, epochs=2, world_size=3)
    plan, _ = build_plan(ids, bucket, cfg, 1337)
    assert plan.schema == pl.Schema(PLAN_SCHEMA)
    assert plan.rows() == loop_plan(ids, bucket, cfg, 1337)


def test_every_image_once_per_epoch_and_one_bucket_per_micro_batch() -> None:
    ids, bucket = _data(5000, 13)
    plan, summary = build_plan(ids, bucket, _cfg(epochs=3), 7)
    for e in range(3):
        assert sorted(plan.filter(pl.col("epoch") == e)["post_id"].to_list()) == ids.tolist()
    mb = plan.group_by("step", "rank", "micro").agg(pl.col("bucket").n_unique(), pl.len())
    assert (mb["bucket"] == 1).all() and (mb["len"] <= 4).all()
    short = int((mb["len"] < 4).sum())
    assert short == 3 * int((np.bincount(bucket) % 4 > 0).sum())
    assert plan.select("step", "rank", "micro", "slot").rows() == sorted(
        plan.select("step", "rank", "micro", "slot").rows())
    assert summary["micro_batches"] == mb.height and summary["samples"] == 3 * len(ids)


def test_step_count_keeps_short_batches_like_sd_scripts() -> None:
    ids, bucket = _data(4000, 11)
    cfg = _cfg(world_size=4, grad_accum=3)
    plan, summary = build_plan(ids, bucket, cfg, 1)
    micro = sum(-(-c // 4) for c in np.bincount(bucket))
    assert summary["steps"] == -(-micro // 12) == plan["step"].max() + 1
    assert plan.group_by("step").len()["len"].max() <= 12 * 4


def test_drop_and_fill() -> None:
    ids, bucket = _data(2000, 7)
    rem = np.bincount(bucket) % 4
    dropped, s = build_plan(ids, bucket, _cfg(partial_batch="drop"), 3)
    assert dropped.height == len(ids) - rem.sum() == len(ids) - s["per_epoch"][0]["dropped_images"]
    filled, s = build_plan(ids, bucket, _cfg(partial_batch="fill"), 3)
    assert (filled.group_by("step", "rank", "micro").len()["len"] == 4).all()
    assert set(filled["post_id"].to_list()) == set(ids.tolist())
    assert s["per_epoch"][0]["filled_slots"] == int(np.where(rem > 0, 4 - rem, 0).sum())


def test_deterministic_and_seed_dependent() -> None:
    ids, bucket = _data(1000, 5)
    a, _ = build_plan(ids, bucket, _cfg(), 11)
    b, _ = build_plan(ids, bucket, _cfg(), 11)
    c, _ = build_plan(ids, bucket, _cfg(), 12)
    assert a.equals(b) and not a.equals(c)


def test_max_steps_overrides_epochs() -> None:
    ids, bucket = _data(600, 3)
    plan, summary = build_plan(ids, bucket, _cfg(max_steps=50), 5)
    assert summary["steps"] == 50 and plan["step"].max() == 49
    assert plan["epoch"].max() >= 1  # 600 images make ~19 steps per epoch


def _posts_per_step(w: int, a: int, ids: np.ndarray, bucket: np.ndarray) -> list[list[int]]:
    plan, _ = build_plan(ids, bucket, _cfg(world_size=w, grad_accum=a, epochs=2), 99)
    return plan.group_by("step").agg(pl.col("post_id").sort()).sort("step")["post_id"].to_list()


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([1, 2, 3, 4, 6, 8, 12]), st.data())
def test_same_world_times_accum_gives_same_posts_per_step(k: int, data: st.DataObject) -> None:
    ids, bucket = _data(data.draw(st.integers(1, 400)), data.draw(st.integers(1, 6)),
                        data.draw(st.integers(0, 3)))
    divisors = [d for d in range(1, k + 1) if k % d == 0]
    w1, w2 = data.draw(st.sampled_from(divisors)), data.draw(st.sampled_from(divisors))
    assert _posts_per_step(w1, k // w1, ids, bucket) == _posts_per_step(w2, k // w2, ids, bucket)


def test_rank_mapping_is_accelerate_sharding() -> None:
    ids, bucket = _data(800, 4)
    w1, _ = build_plan(ids, bucket, _cfg(world_size=1, grad_accum=6), 2)
    w3, _ = build_plan(ids, bucket, _cfg(world_size=3, grad_accum=2), 2)
    # micro-batch i of a step (W=1 numbering) is rank i % 3, micro i // 3 under W=3
    m1 = w1.filter(pl.col("slot") == 0).select("step", "micro", "post_id")
    m3 = w3.filter(pl.col("slot") == 0).with_columns(
        (pl.col("micro").cast(pl.Int32) * 3 + pl.col("rank")).cast(pl.Int16).alias("micro")
    ).select("step", "micro", "post_id")
    assert m1.sort("step", "micro").equals(m3.sort("step", "micro"))


def test_bad_input_is_refused() -> None:
    with pytest.raises(KxlError, match="id 5 appears more than once"):
        build_plan(np.array([5, 5]), np.array([0, 0]), _cfg(), 1)
    with pytest.raises(KxlError, match="no images"):
        build_plan(np.array([], dtype=np.int64), np.array([], dtype=np.int64), _cfg(), 1)
    with pytest.raises(KxlError, match="leaves no micro-batch"):
        build_plan(np.array([1, 2]), np.array([0, 1]), _cfg(partial_batch="drop"), 1)
    with pytest.raises(KxlError, match="plan.batch_size"):
        _cfg(batch_size=0)


@pytest.mark.slow
def test_full_scale_epsilon_plan_is_fast_and_has_the_card_step_count() -> None:
    import subprocess
    import time

    from benchmarks.plan_bench import FULL, epsilon_buckets

    # The peak memory is measured in a fresh process: this one's lifetime peak holds whatever
    # earlier tests loaded (the real-shape SDXL test loads ~15 GB).
    build = ("import sys; sys.path.insert(0, sys.argv[1]);"
             "from benchmarks.plan_bench import FULL, epsilon_buckets;"
             "from kxl.plan.build import build_plan; from kxl.plan.config import PlanConfig;"
             "ids, b = epsilon_buckets(FULL);"
             "build_plan(ids, b, PlanConfig(batch_size=4, grad_accum=16, world_size=4), 1337);"
             # VmHWM: this process image's own peak (ru_maxrss keeps the forking parent's)
             "print(next(ln.split()[1] for ln in open('/proc/self/status')"
             " if ln.startswith('VmHWM')))")
    root = str(Path(__file__).resolve().parents[2])
    peak = subprocess.run([sys.executable, "-c", build, root], capture_output=True, text=True,
                          check=True).stdout.split()[-1]
    assert int(peak) < 6 * 1024 * 1024  # KiB
    ids, bucket = epsilon_buckets(FULL)  # danbooru-like sizes over the 97 Epsilon buckets
    t = time.perf_counter()
    plan, summary = build_plan(ids, bucket, _cfg(world_size=4, grad_accum=16), 1337)
    assert time.perf_counter() - t < 60
    micro = int((-(-np.bincount(bucket) // 4)).sum())
    assert summary["steps"] == -(-micro // 64) == 20354 > -(-FULL // 256)
    assert plan.height == FULL and plan["post_id"].n_unique() == FULL
