"""Crash forensics (issue 20 section 3): the plan of a run resumed as sd-scripts 0.8.7 resumed
(data order restarted), and what it did to the data. Expected values are worked out by hand from
the readings' definitions on small hand-made plans, not by the code under test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from kxl.audit.crash import emulate_resume, first_divergent_step, resume_damage
from kxl.errors import KxlError
from kxl.plan.build import PLAN_SCHEMA
from kxl.tables import read_table, write_table

KXL = Path(sys.executable).with_name("kxl")


def plan_of(steps_per_epoch: list[int], batch: int = 2) -> pl.DataFrame:
    """W = A = 1: step s holds posts 100 * epoch + batch * (s - epoch start) + slot (each epoch
    shows the same posts 0.. in order, offset so the epochs are told apart by post id % 100)."""
    rows, step = [], 0
    for epoch, n in enumerate(steps_per_epoch):
        for i in range(n):
            for slot in range(batch):
                post = batch * i + slot
                rows.append({"step": step, "rank": 0, "micro": 0, "slot": slot, "epoch": epoch,
                             "post_id": post, "bucket": post % 3, "sample_seed": 7 * post + epoch})
            step += 1
    return pl.DataFrame(rows).cast(PLAN_SCHEMA)


def posts(plan: pl.DataFrame, step: int) -> list[int]:
    return plan.filter(pl.col("step") == step).sort("slot")["post_id"].to_list()


def test_restart_epoch_reruns_the_epoch_from_its_start_until_the_planned_end() -> None:
    plan = plan_of([10])  # one epoch, as Epsilon
    em = emulate_resume(plan, 6, "restart-epoch")
    assert em["step"].max() == 9 and em.schema == plan.schema
    for s in range(6):
        assert posts(em, s) == posts(plan, s)
    for s in range(6, 10):  # steps 6..9 see what steps 0..3 saw
        assert posts(em, s) == posts(plan, s - 6)
    d = resume_damage(plan, em, window=5)
    # posts of steps 0..3 (8) seen twice; posts of steps 6..9 (8) never; steps 4, 5 once
    assert (d["twice"], d["never"], d["extra_views"], d["missed_views"]) == (8, 8, 8, 8)
    assert d["first_divergent_step"] == 6
    assert d["by_window"] == [
        {"window": 0, "posts": 10, "twice": 8, "fewer": 0, "never": 0, "extra_views": 8,
         "missed_views": 0},
        {"window": 5, "posts": 10, "twice": 0, "fewer": 8, "never": 8, "extra_views": 0,
         "missed_views": 8}]
    twice_posts = set(range(8))
    for row in d["by_bucket"]:
        members = {p for p in range(20) if p % 3 == row["bucket"]}
        assert row["twice"] == len(members & twice_posts)


def test_restart_epoch_in_a_later_epoch_restarts_that_epoch() -> None:
    plan = plan_of([5, 5])  # epoch 1 = steps 5..9
    em = emulate_resume(plan, 7, "restart-epoch")
    assert [posts(em, s) for s in (7, 8, 9)] == [posts(plan, s) for s in (5, 6, 7)]
    assert em.filter(pl.col("step") == 7)["epoch"].to_list() == [1, 1]


def test_restart_run_runs_the_whole_plan_again_after_the_resume() -> None:
    plan = plan_of([10])
    em = emulate_resume(plan, 6, "restart-run")
    assert em["step"].max() == 15
    assert [posts(em, s) for s in range(6, 16)] == [posts(plan, s) for s in range(10)]
    d = resume_damage(plan, em, window=10)
    assert (d["twice"], d["never"], d["steps"]) == (12, 0, {"planned": 10, "emulated": 16})


def test_first_divergent_step_and_bad_input() -> None:
    plan = plan_of([10])
    assert first_divergent_step(plan, plan) is None
    with pytest.raises(KxlError, match=r"resume_step 10: must be inside the plan's steps"):
        emulate_resume(plan, 10, "restart-epoch")
    with pytest.raises(KxlError, match="one of"):
        emulate_resume(plan, 3, "fresh-shuffle")  # type: ignore[arg-type]
    with pytest.raises(KxlError, match="window 0"):
        resume_damage(plan, plan, 0)


def test_cli_writes_a_plan_file_and_the_damage(tmp_path: Path) -> None:
    write_table(plan_of([10]), tmp_path / "plan.parquet", PLAN_SCHEMA)
    proc = subprocess.run(
        [str(KXL), "emulate-resume", "--plan", str(tmp_path / "plan.parquet"),
         "--resume-step", "6", "--reading", "restart-epoch", "--window", "5",
         "--out", str(tmp_path / "crash.parquet"), "--damage", str(tmp_path / "damage.json")],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "8 post(s) seen twice, 8 never seen; first divergent step 6" in proc.stdout
    assert read_table(tmp_path / "crash.parquet", PLAN_SCHEMA).height == 20
    damage = json.loads((tmp_path / "damage.json").read_text())
    assert (damage["resume_step"], damage["reading"], damage["twice"]) == (6, "restart-epoch", 8)


@pytest.mark.slow  # ~1 min: the full-scale plan (5.2M images, 20,354 steps)
def test_epsilon_numbers_from_the_full_scale_plan() -> None:
    """docs/crash-forensics.md's table: for one epoch, restart-epoch at k sees the posts of
    steps < N - k twice and never the posts of steps >= k (k >= N / 2)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks.plan_bench import FULL, epsilon_buckets
    from kxl.plan.build import build_plan
    from kxl.plan.config import PlanConfig

    ids, bucket = epsilon_buckets(FULL)
    plan, _ = build_plan(ids, bucket, PlanConfig(batch_size=4, grad_accum=16, world_size=4,
                                                 epochs=1), 1337)
    n = int(plan["step"].max()) + 1
    doc = (Path(__file__).resolve().parents[2] / "docs/crash-forensics.md").read_text()
    for k in (13600, 15300):
        d = resume_damage(plan, emulate_resume(plan, k, "restart-epoch"), window=1700)
        assert d["twice"] == plan.filter(pl.col("step") < n - k).height
        assert d["never"] == plan.filter(pl.col("step") >= k).height
        assert f"| restart-epoch | {k} | {d['twice']:,} | {d['never']:,} |" in doc
