"""`kxl explain-step`: a plan step with the captions as the training run's text encoder got them,
the caption settings read from the run (its LoKr's provenance record) or given by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kxl.buckets.schema import BUCKETS_SCHEMA
from kxl.captions.augment import augment
from kxl.cli import main
from kxl.provenance import record
from kxl.tables import write_table

PLAN = {"batch_size": 2, "grad_accum": 2, "world_size": 2, "epochs": 2}
TRAIN = {"lokr": {"preset": "kohaku.toml"}, "caption_shuffle": True, "caption_tag_dropout": 0.15}


def _caption(post: int) -> str:
    return f"1girl, a{post}|||b{post}, c{post}, d{post}"


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    """buckets, captions and plan of 40 posts, and a LoKr whose record holds TRAIN."""
    ids = np.arange(100, 140, dtype=np.int64)
    bucket = np.arange(40) % 3
    cols = {c: np.full(40, 0) for c in BUCKETS_SCHEMA if c not in ("id", "bucket")}
    cols.update(bucket_w=32 + 32 * bucket, bucket_h=96 - 32 * bucket, orig_w=np.full(40, 50))
    buckets = pl.DataFrame({"id": ids, "bucket": bucket, **cols}).cast(BUCKETS_SCHEMA)
    write_table(buckets, tmp_path / "buckets/buckets.parquet", BUCKETS_SCHEMA)
    caps = pl.DataFrame({"id": ids, "caption": [_caption(i) for i in ids]})
    write_table(caps, tmp_path / "captions/captions.parquet",
                {"id": pl.Int64, "caption": pl.String})
    assert main(["make-plan", "--buckets", str(tmp_path / "buckets/buckets.parquet"),
                 "--config-json", json.dumps(PLAN), "--seed", "1337",
                 "--out", str(tmp_path / "plan/plan.parquet"),
                 "--summary", str(tmp_path / "plan/summary.json")]) == 0
    lokr = tmp_path / "epsilon-lokr.safetensors"
    lokr.write_bytes(b"not read")
    record("train", [lokr], [], TRAIN)
    return tmp_path


def _args(results: Path, step: int, plan: Path | None = None) -> list[str]:
    return ["explain-step", str(step), "--plan", str(plan or results / "plan/plan.parquet"),
            "--captions", str(results / "captions/captions.parquet"),
            "--buckets", str(results / "buckets/buckets.parquet"),
            "--lokr", str(results / "epsilon-lokr.safetensors")]


def test_explain_step_prints_what_the_step_saw(results: Path, capsys) -> None:
    plan = pl.read_parquet(results / "plan/plan.parquet").filter(pl.col("step") == 1)
    assert main(_args(results, 1)) == 0
    out = capsys.readouterr().out
    n_micro = plan.select("rank", "micro").unique().height
    assert out.startswith(f"step 1 (epoch 0): 2 rank(s), {n_micro} micro-batch(es), 8 sample(s)")
    for r in plan.iter_rows(named=True):
        bucket, post = r["bucket"], r["post_id"]
        # the run's settings (shuffle, 15% dropout): sd-scripts drops the keep separator
        seen = augment(_caption(post), r["sample_seed"], True, 0.15)
        assert "|||" not in seen
        line = (f"rank {r['rank']} micro {r['micro']} slot {r['slot']} post {post} "
                f"bucket {32 + 32 * bucket}x{96 - 32 * bucket} ")
        assert line in out and f"seed {r['sample_seed']}\n    caption: {seen}\n" in out + "\n"
    assert main([*_args(results, 1), "--rank", "1"]) == 0
    assert "rank 0 " not in capsys.readouterr().out


def test_config_json_gives_the_settings_by_hand(results: Path, capsys) -> None:
    # no shuffle, no dropout: the caption as stored, whatever the run's record says
    (results / ".prov/epsilon-lokr.safetensors.json").unlink()
    given = json.dumps({"caption_shuffle": False, "caption_tag_dropout": 0})
    assert main([*_args(results, 0), "--config-json", given]) == 0
    out = capsys.readouterr().out
    posts = pl.read_parquet(results / "plan/plan.parquet").filter(pl.col("step") == 0)["post_id"]
    assert [f"caption: {_caption(p)}" in out for p in posts] == [True] * 8


def test_without_the_settings_one_line_says_what_to_pass(results: Path, capsys) -> None:
    rec = results / ".prov/epsilon-lokr.safetensors.json"
    old = json.loads(rec.read_text())
    old["config"] = {"lokr": TRAIN["lokr"]}  # a run from before the settings moved to train:
    rec.write_text(json.dumps(old))
    assert main(_args(results, 0)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no train.caption_shuffle" in err and "--config-json" in err
    rec.unlink()  # training has not run
    assert main(_args(results, 0)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no provenance record of the training run" in err
    assert "pass --lokr with a trained run's LoKr, or --config-json" in err
    for bad in ('{"caption_shuffle": "yes", "caption_tag_dropout": 0.1}', "[1]", "{"):
        assert main([*_args(results, 0), "--config-json", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("kxl explain-step: error: --config-json: ") and err.count("\n") == 1


def test_explain_step_errors_are_one_line(results: Path, capsys) -> None:
    assert main(_args(results, 999)) == 2
    assert "no rows for step 999" in capsys.readouterr().err
    pl.DataFrame({"id": [1], "caption": ["x"]}).write_parquet(results / "captions/captions.parquet")
    assert main(_args(results, 0)) == 2
    err = capsys.readouterr().err
    assert "captions.parquet: no row for post" in err and err.count("\n") == 1


def test_explain_step_reads_an_emulated_crash_plan(results: Path, capsys) -> None:
    """docs/crash-forensics.md: `kxl explain-step 400 --plan results/audit/crash/plan.parquet`:
    the emulated plan's steps, with the training run's caption settings."""
    crash = results / "audit/crash/plan.parquet"
    assert main(["emulate-resume", "--plan", str(results / "plan/plan.parquet"),
                 "--resume-step", "2", "--reading", "restart-epoch", "--out", str(crash),
                 "--damage", str(results / "audit/crash/damage.json")]) == 0
    capsys.readouterr()
    assert main(_args(results, 3, crash)) == 0
    out = capsys.readouterr().out
    post = pl.read_parquet(crash).filter(pl.col("step") == 3).row(0, named=True)
    seen = augment(_caption(post["post_id"]), post["sample_seed"], True, 0.15)
    assert f"post {post['post_id']} " in out and f"caption: {seen}\n" in out + "\n"
