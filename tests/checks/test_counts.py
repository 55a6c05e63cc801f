"""Count gates (issue 18 section 5): the run's counts against the config's, before training."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from kxl.checks.counts import CountsConfig, ExpectedCounts, measure, problems
from kxl.cli import main

ROOT = Path(__file__).resolve().parents[2]
POSTS = {"selected": 10, "ranges": [{"drawn": 4}, {"drawn": 6}]}
PLAN = {"steps": 3}


def _inputs(tmp_path: Path) -> list[str]:
    (tmp_path / "posts.json").write_text(json.dumps(POSTS))
    (tmp_path / "plan.json").write_text(json.dumps(PLAN))
    pl.DataFrame({"id": list(range(9))}).write_parquet(tmp_path / "dataset.parquet")
    pl.DataFrame({"id": list(range(9)), "bucket": [0, 0, 1, 1, 1, 2, 2, 2, 2]}).write_parquet(
        tmp_path / "buckets.parquet")
    return ["check-counts", "--posts-summary", str(tmp_path / "posts.json"),
            "--dataset", str(tmp_path / "dataset.parquet"),
            "--buckets", str(tmp_path / "buckets.parquet"),
            "--plan-summary", str(tmp_path / "plan.json"), "--out", str(tmp_path / "counts.json")]


def test_measure_reads_the_stage_outputs(tmp_path: Path) -> None:
    _inputs(tmp_path)
    got = measure(POSTS, pl.read_parquet(tmp_path / "dataset.parquet"),
                  pl.read_parquet(tmp_path / "buckets.parquet"), PLAN)
    assert got == {"selected_posts": 10, "selected_per_range": [4, 6], "images": 9,
                   "buckets": 3, "steps": 3}


def test_problems_name_both_numbers_and_respect_the_tolerance() -> None:
    actual = {"selected_posts": 10, "selected_per_range": [4, 6], "images": 9, "buckets": 3,
              "steps": 20360}
    exact = CountsConfig(ExpectedCounts(images=10, steps=20354, selected_per_range=[4, 7]))
    assert problems(actual, exact) == [
        "selected_per_range[1]: expected 7, the run has 6 (tolerance 0.00%)",
        "images: expected 10, the run has 9 (-10.00%; tolerance 0.00%)",
        "steps: expected 20,354, the run has 20,360 (+0.03%; tolerance 0.00%)",
    ]
    loose = CountsConfig(ExpectedCounts(steps=20354), tolerance=0.001)
    assert problems(actual, loose) == []
    assert problems(actual, CountsConfig()) == []  # nothing expected, nothing checked
    short = CountsConfig(ExpectedCounts(selected_per_range=[4]))
    assert problems(actual, short) == [
        "selected_per_range: config expects 1 range(s), posts.ranges has 2"]


def test_cli_gate_fails_in_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    args = _inputs(tmp_path)
    cfg = {"expected": {"images": 9, "buckets": 3, "steps": 4}, "tolerance": 0.0,
           "enforce": True}
    assert main([*args, "--config-json", json.dumps(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("kxl check-counts: error: count gate: steps: expected 4, the run has 3 "
                       "(-25.00%; tolerance 0.00%); fix the data or config `counts` (expected "
                       "values, tolerance, or enforce: false)")
    assert not (tmp_path / "counts.json").exists()
    # enforce: false reports and passes; the report keeps what was off
    assert main([*args, "--config-json", json.dumps({**cfg, "enforce": False})]) == 0
    report = json.loads((tmp_path / "counts.json").read_text())
    assert report["problems"] == ["steps: expected 4, the run has 3 (-25.00%; tolerance 0.00%)"]
    cfg["expected"]["steps"] = 3
    assert main([*args, "--config-json", json.dumps(cfg)]) == 0


def test_epsilon_states_the_published_counts() -> None:
    """SPEC section 1 / the card: 5.35M posts (1M + 2M + 2.35M), 5,210,319 images, 20,354 steps
    (5,210,319 / 256 = 20,352.8: one more than rounding up, as sd-scripts' short last batch per
    bucket adds micro-batches); 97 buckets (the run's bucket list)."""
    cfg = yaml.safe_load((ROOT / "config/epsilon.yaml").read_text())["counts"]
    exp = cfg["expected"]
    assert exp["images"] == 5_210_319 and exp["steps"] == 20_354 > 5_210_319 / 256
    assert exp["selected_per_range"] == [1_000_000, 2_000_000, 2_350_000]
    assert exp["selected_posts"] == sum(exp["selected_per_range"]) == 5_350_000
    assert exp["buckets"] == 97 and cfg["enforce"] is True


def test_bad_tolerance_is_one_line() -> None:
    from kxl.errors import KxlError

    with pytest.raises(KxlError, match=r"counts.tolerance: must be in \[0, 1\), got 1.5"):
        CountsConfig(tolerance=1.5)
