"""The data half of the default pipeline, end to end (issue 2 and 3 acceptance)."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest
from pipeline_run import Workflow, jobs_planned, run_default

from kxl.hashing import sha256_file

pytestmark = [pytest.mark.e2e]

DATA_ARTIFACTS = [
    "results/posts/selected.parquet",
    "results/manifest/kept.parquet",
    "results/manifest/dropped.parquet",
    "results/captions/captions.parquet",
    "results/buckets/buckets.parquet",
    "results/plan/plan.parquet",
]


def test_rerun_does_nothing(default_run: Workflow) -> None:
    proc = default_run.snakemake("-n", "results/plan/plan.parquet")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changing_the_run_seed_reruns_exactly_its_dependants(default_run: Workflow) -> None:
    proc = default_run.snakemake("-n", "--config", "seed=7", "--", "results/plan/plan.parquet")
    planned = jobs_planned(proc.stdout)
    assert "select_posts" in planned and "make_plan" in planned
    assert not planned & {"synth_metadata", "export_metadata"}, planned


def test_every_artifact_has_verified_provenance(default_run: Workflow) -> None:
    proc = default_run.kxl("verify", "results")
    assert proc.returncode == 0, proc.stderr
    n = int(re.search(r"verified (\d+)", proc.stdout).group(1))
    assert n >= len(DATA_ARTIFACTS)


def test_selected_equals_kept_plus_dropped(default_run: Workflow) -> None:
    r = default_run.root / "results"
    selected = pl.read_parquet(r / "posts/selected.parquet")
    kept = pl.read_parquet(r / "manifest/kept.parquet")
    dropped = pl.read_parquet(r / "manifest/dropped.parquet")
    assert selected.height == kept.height + dropped.height
    summary = json.loads((r / "manifest/summary.json").read_text())
    assert summary["kept"] == kept.height


def test_captions_cover_kept_posts(default_run: Workflow) -> None:
    r = default_run.root / "results"
    kept = pl.read_parquet(r / "manifest/kept.parquet")
    caps = pl.read_parquet(r / "captions/captions.parquet")
    assert caps["id"].to_list() == kept["id"].to_list()
    assert caps["caption"].str.contains("|||", literal=True).all()


def test_plan_uses_every_dataset_image_once_per_epoch(default_run: Workflow) -> None:
    r = default_run.root / "results"
    plan = pl.read_parquet(r / "plan/plan.parquet")
    dataset = pl.read_parquet(r / "images/dataset.parquet")
    per_epoch = plan.group_by("epoch").agg(pl.col("post_id").sort())
    for ids in per_epoch["post_id"]:
        assert ids.to_list() == sorted(dataset["id"].to_list())


@pytest.mark.slow
def test_two_runs_are_byte_identical(default_run: Workflow, tmp_path_factory) -> None:
    other = run_default(
        tmp_path_factory.mktemp("run-b"),
        ["results/plan/plan.parquet", "results/captions/captions.parquet"],
    )
    for rel in DATA_ARTIFACTS:
        assert sha256_file(default_run.root / rel) == sha256_file(other.root / rel), rel
