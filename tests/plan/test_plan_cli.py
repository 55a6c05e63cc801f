"""`kxl make-plan`, `read_plan_from` (resume) and `kxl explain-step` on hand-made fixtures."""

from __future__ import annotations

import importlib
import json
import sys
import types
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
        "partial_batch": "keep", "caption_shuffle": True, "caption_tag_dropout": 0.15}


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    n = 40
    ids = np.arange(100, 100 + n, dtype=np.int64)
    bucket = np.arange(n) % 3
    cols = {c: np.full(n, 0) for c in BUCKETS_SCHEMA if c not in ("id", "bucket")}
    cols.update(bucket_w=32 + 32 * bucket, bucket_h=96 - 32 * bucket, orig_w=np.full(n, 50))
    df = pl.DataFrame({"id": ids, "bucket": bucket, **cols}).cast(BUCKETS_SCHEMA)
    write_table(df, tmp_path / "buckets/buckets.parquet", BUCKETS_SCHEMA)
    caps = pl.DataFrame({"id": ids, "caption": [f"1girl, a{i}|||b{i}, c{i}, d{i}" for i in ids]})
    schema = {"id": pl.Int64, "caption": pl.String}
    write_table(caps, tmp_path / "captions/captions.parquet", schema)
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


@pytest.fixture()
def augment_module(monkeypatch):
    """The captions engineer's augment if it exists, else a stand-in with the same signature."""
    try:
        return importlib.import_module("kxl.captions.augment")
    except ImportError:
        fake = types.ModuleType("kxl.captions.augment")
        fake.augment = lambda caption, seed, shuffle, dropout, **kw: (  # type: ignore[attr-defined]
            f"{caption} <{seed}:{shuffle}:{dropout}>")
        monkeypatch.setitem(sys.modules, "kxl.captions.augment", fake)
        return fake


def test_explain_step_prints_what_the_step_saw(results: Path, capsys, augment_module) -> None:
    plan = pl.read_parquet(results / "plan/plan.parquet").filter(pl.col("step") == 1)
    args = ["explain-step", "1", "--plan", str(results / "plan/plan.parquet"),
            "--captions", str(results / "captions/captions.parquet"),
            "--buckets", str(results / "buckets/buckets.parquet")]
    assert main(args) == 0
    out = capsys.readouterr().out
    n_micro = plan.select("rank", "micro").unique().height
    assert out.startswith(f"step 1 (epoch 0): 2 rank(s), {n_micro} micro-batch(es)")
    for r in plan.iter_rows(named=True):
        bucket = r["bucket"]
        seen = augment_module.augment(
            f"1girl, a{r['post_id']}|||b{r['post_id']}, c{r['post_id']}, d{r['post_id']}",
            r["sample_seed"], True, 0.15)
        line = (f"rank {r['rank']} micro {r['micro']} slot {r['slot']} post {r['post_id']} "
                f"bucket {32 + 32 * bucket}x{96 - 32 * bucket} ")
        assert line in out and f"seed {r['sample_seed']}\n    caption: {seen}\n" in out + "\n"
    assert main([*args, "--rank", "1"]) == 0
    assert "rank 0 " not in capsys.readouterr().out


def test_explain_step_errors_are_one_line(results: Path, capsys, augment_module) -> None:
    base = ["--plan", str(results / "plan/plan.parquet"),
            "--captions", str(results / "captions/captions.parquet"),
            "--buckets", str(results / "buckets/buckets.parquet")]
    assert main(["explain-step", "999", *base]) == 2
    assert "no rows for step 999" in capsys.readouterr().err
    pl.DataFrame({"id": [1], "caption": ["x"]}).write_parquet(results / "captions/captions.parquet")
    assert main(["explain-step", "0", *base]) == 2
    err = capsys.readouterr().err
    assert "captions.parquet: no row for post" in err and err.count("\n") == 1


def test_explain_step_reads_an_emulated_crash_plan(results: Path, capsys, augment_module) -> None:
    """docs/crash-forensics.md: `kxl explain-step 400 --plan results/audit/crash/plan.parquet`.
    The emulated plan's record (stage audit) holds the emulation's settings, not a plan section:
    the caption settings come from the plan it was derived from, through its record's input."""
    crash = results / "audit/crash/plan.parquet"
    assert main(["emulate-resume", "--plan", str(results / "plan/plan.parquet"),
                 "--resume-step", "2", "--reading", "restart-epoch", "--out", str(crash),
                 "--damage", str(results / "audit/crash/damage.json")]) == 0
    capsys.readouterr()
    base = ["--captions", str(results / "captions/captions.parquet"),
            "--buckets", str(results / "buckets/buckets.parquet")]
    assert main(["explain-step", "3", "--plan", str(crash), *base]) == 0
    out = capsys.readouterr().out
    post = pl.read_parquet(crash).filter(pl.col("step") == 3).row(0, named=True)
    seen = augment_module.augment(f"1girl, a{post['post_id']}|||b{post['post_id']}, "
                                  f"c{post['post_id']}, d{post['post_id']}",
                                  post["sample_seed"], True, 0.15)
    assert f"post {post['post_id']} " in out and seen in out
    (results / "plan/.prov/plan.parquet.json").unlink()  # the chain broken: one line
    assert main(["explain-step", "3", "--plan", str(crash), *base]) == 2
    err = capsys.readouterr().err
    assert "plan.parquet.json: no provenance record beside the plan" in err and err.count("\n") == 1
