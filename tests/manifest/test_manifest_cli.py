"""`kxl build-manifest`: outputs, deterministic bytes, provenance and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from manifest_fixtures import POSTS_SCHEMA, TAGS_SCHEMA, post_tags_frame, posts_frame, tags_frame

from kxl.cli import main
from kxl.hashing import sha256_file
from kxl.manifest.schemas import POST_TAGS_COLUMNS
from kxl.provenance import record_path
from kxl.tables import write_table

CFG = '{"image_exts": ["jpg", "jpeg", "png", "webp"]}'
OLD_POST_TAGS = {"rowid": pl.Int64, "post_id": pl.Int64, "tag_id": pl.Int64}
OUTS = ("kept.parquet", "dropped.parquet", "summary.json")


def run(t: dict[str, Path], out: Path, cfg: str = CFG) -> int:
    return main([
        "build-manifest", "--selected", str(t["selected"]), "--posts", str(t["posts"]),
        "--tags", str(t["tags"]), "--post-tags", str(t["post_tags"]), "--config-json", cfg,
        "--out-kept", str(out / OUTS[0]), "--out-dropped", str(out / OUTS[1]),
        "--summary", str(out / OUTS[2]),
    ])


def test_outputs_are_deterministic_with_provenance(tables: dict[str, Path], tmp_path) -> None:
    assert run(tables, tmp_path / "a") == 0 and run(tables, tmp_path / "b") == 0
    for name in OUTS:
        assert sha256_file(tmp_path / "a" / name) == sha256_file(tmp_path / "b" / name)
        assert record_path(tmp_path / "a" / name).is_file()
    summary = json.loads((tmp_path / "a/summary.json").read_text())
    kept = pl.read_parquet(tmp_path / "a/kept.parquet")
    dropped = pl.read_parquet(tmp_path / "a/dropped.parquet")
    assert summary["kept"] == kept.height == 3
    assert summary["selected"] == kept.height + dropped.height == 13


def test_config_changes_the_result(tables: dict[str, Path], tmp_path: Path) -> None:
    assert run(tables, tmp_path, '{"image_exts": ["jpg"]}') == 0
    assert pl.read_parquet(tmp_path / "kept.parquet")["id"].to_list() == [10]


def rewrite(path: Path, df: pl.DataFrame, schema: dict) -> None:
    write_table(df, path, schema)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda t: None, None),  # the unchanged tables succeed (the test can tell the difference)
        (lambda t: rewrite(t["posts"], posts_frame().drop("file_url"),
                           {k: v for k, v in POSTS_SCHEMA.items() if k != "file_url"}),
         "posts.parquet: missing column 'file_url'"),
        (lambda t: rewrite(t["post_tags"], post_tags_frame().cast({"tag_id": pl.Int64}),
                           {**POST_TAGS_COLUMNS, "tag_id": pl.Int64}),
         "post_tags.parquet: column 'tag_id' has dtype Int64, expected Int32"),
        # a post_tags.parquet of the earlier (rowid, post_id, tag_id) Int64 layout
        (lambda t: rewrite(t["post_tags"], post_tags_frame().with_row_index("rowid").cast(
            pl.Int64), OLD_POST_TAGS),
         "post_tags.parquet: column 'post_id' has dtype Int64, expected Int32"),
        (lambda t: rewrite(t["tags"], tags_frame().with_columns(
            type=pl.when(pl.col("id") == 3).then(7).otherwise(pl.col("type")).cast(pl.Int8)),
            TAGS_SCHEMA), "tags.parquet: tag id 3 has type 7; types are 0..4"),
        (lambda t: t["tags"].unlink(), "tags.parquet: table not found"),
    ],
)
def test_bad_inputs_are_one_line(tables, tmp_path: Path, capsys, change, needle) -> None:
    change(tables)
    code = run(tables, tmp_path / "out")
    err = capsys.readouterr().err
    if needle is None:
        assert code == 0 and err == ""
        return
    assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not any((tmp_path / "out" / n).exists() for n in OUTS)  # nothing half-written


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        ('{"image_exts": "jpg"}', "config manifest.image_exts: expected a list"),
        ('{"image_ext": ["jpg"]}', "config manifest: unknown key(s) ['image_ext']"),
        ('{"image_exts": [', "config manifest: invalid JSON"),
    ],
)
def test_bad_config_is_one_line(tables, tmp_path: Path, capsys, cfg: str, needle: str) -> None:
    assert run(tables, tmp_path, cfg) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err
