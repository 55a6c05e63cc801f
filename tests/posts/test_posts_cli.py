"""`kxl select-posts`: outputs, deterministic bytes, provenance, one-line errors, config files."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import polars as pl
import pytest
import yaml

from kxl.cli import main
from kxl.config import from_dict
from kxl.hashing import sha256_file
from kxl.posts.config import PostsConfig
from kxl.provenance import record_path
from kxl.tables import write_table

ROOT = Path(__file__).resolve().parents[2]
CFG = {"mode": "sample", "ranges": [{"start": 0, "stop": 500, "count": 20},
                                    {"start": 500, "stop": None, "count": "all"}]}


@pytest.fixture
def posts(tmp_path: Path) -> Path:
    path = tmp_path / "posts.parquet"
    df = pl.DataFrame({"id": list(range(0, 1000, 3)), "md5": ["x"] * 334})
    write_table(df, path, {"id": pl.Int64, "md5": pl.String})
    return path


def run(posts: Path, out: Path, cfg: dict | str = CFG, seed: int = 1337) -> int:
    text = cfg if isinstance(cfg, str) else json.dumps(cfg)
    return main(["select-posts", "--posts", str(posts), "--config-json", text, "--seed",
                 str(seed), "--out", str(out / "selected.parquet"),
                 "--summary", str(out / "summary.json")])


def test_writes_selection_summary_and_provenance(posts: Path, tmp_path: Path) -> None:
    assert run(posts, tmp_path / "a") == 0
    sel = pl.read_parquet(tmp_path / "a/selected.parquet")
    summary = json.loads((tmp_path / "a/summary.json").read_text())
    assert sel.height == summary["selected"] == 20 + 167
    assert summary["seed"] == 1337 and summary["mode"] == "sample"
    assert record_path(tmp_path / "a/selected.parquet").is_file()


def test_same_inputs_same_bytes_and_seed_changes_them(posts: Path, tmp_path: Path) -> None:
    for d, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert run(posts, tmp_path / d, seed=seed) == 0
    digest = {d: sha256_file(tmp_path / d / "selected.parquet") for d in "abc"}
    assert digest["a"] == digest["b"] != digest["c"]
    assert (tmp_path / "a/summary.json").read_bytes() == (tmp_path / "b/summary.json").read_bytes()


def test_stage_seed_overrides_the_run_seed(posts: Path, tmp_path: Path) -> None:
    run(posts, tmp_path / "a", {**CFG, "seed": 1}, seed=1337)
    run(posts, tmp_path / "b", CFG, seed=1)
    assert sha256_file(tmp_path / "a/selected.parquet") == sha256_file(
        tmp_path / "b/selected.parquet")


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        ("{not json", "config posts: invalid JSON"),
        ({**CFG, "mode": "shuffle"}, "config posts.mode: 'shuffle' is not one of"),
        ({**CFG, "bogus": 1}, "unknown key(s) ['bogus']"),
        ({"mode": "sample", "ranges": [{"start": 0, "stop": 10, "count": "most"}]},
         "config posts.ranges[0].count"),
        ({"mode": "sample", "ranges": [{"start": 0, "stop": 500, "count": 999}]},
         "config posts.ranges[0] [0, 500): count 999 > population 167"),
    ],
)
def test_bad_config_is_one_line(posts: Path, tmp_path: Path, capsys, cfg, needle: str) -> None:
    assert run(posts, tmp_path, cfg) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert not (tmp_path / "selected.parquet").exists()


def test_missing_id_column_is_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "posts.parquet"
    write_table(pl.DataFrame({"post_id": [1, 2]}), bad, {"post_id": pl.Int64})
    assert run(bad, tmp_path) == 2
    err = capsys.readouterr().err
    assert "posts.parquet: missing column 'id'" in err and err.count("\n") == 1


def test_null_ids_are_refused(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "posts.parquet"
    write_table(pl.DataFrame({"id": [1, None]}, schema={"id": pl.Int64}), bad, {"id": pl.Int64})
    assert run(bad, tmp_path) == 2
    assert "column 'id' has 1 null(s), first at row 1" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["config.yaml", "epsilon.yaml"])
def test_shipped_configs_validate_and_parse(name: str) -> None:
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    schema = yaml.safe_load((ROOT / "config/schema.yaml").read_text())
    posts_schema = schema["properties"]["posts"]
    jsonschema.validate(config["posts"], posts_schema)
    cfg = from_dict(PostsConfig, config["posts"], "posts")
    assert cfg.ranges[-1].stop is None and cfg.ranges[-1].count == "all"


def test_schema_accepts_the_delta_reproduction() -> None:
    # The README recipe (see report): choices, stage seed 1, ranges in the script's order.
    delta = {"mode": "choices", "seed": 1, "ranges": [
        {"start": 5000000, "stop": None, "count": "all"},
        {"start": 3000000, "stop": 5000000, "count": 1000000},
        {"start": 0, "stop": 3000000, "count": 1000000}]}
    schema = yaml.safe_load((ROOT / "config/schema.yaml").read_text())["properties"]["posts"]
    jsonschema.validate(delta, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**delta, "seed": -1}, schema)
    assert from_dict(PostsConfig, delta, "posts").seed == 1
