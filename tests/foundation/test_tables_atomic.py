from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from kxl.atomic import atomic_dir, atomic_path, atomic_symlink, write_json
from kxl.errors import KxlError
from kxl.hashing import sha256_file
from kxl.tables import read_columns, read_table, require_columns, write_table

SCHEMA = {"id": pl.Int64, "name": pl.String}


def test_write_table_is_byte_deterministic(tmp_path: Path) -> None:
    df = pl.DataFrame({"name": ["a", "b"], "id": [2, 1]})
    write_table(df, tmp_path / "a.parquet", SCHEMA)
    write_table(df, tmp_path / "b.parquet", SCHEMA)
    assert sha256_file(tmp_path / "a.parquet") == sha256_file(tmp_path / "b.parquet")
    back = read_table(tmp_path / "a.parquet", SCHEMA)
    assert back.columns == ["id", "name"]
    assert back["id"].to_list() == [2, 1]


def test_schema_mismatch_is_one_line(tmp_path: Path) -> None:
    df = pl.DataFrame({"id": [1.0], "name": ["x"]})
    with pytest.raises(KxlError, match="column 'id' has dtype Float64, expected Int64"):
        write_table(df, tmp_path / "t.parquet", SCHEMA)
    assert not list(tmp_path.iterdir())


def test_missing_table_is_named(tmp_path: Path) -> None:
    with pytest.raises(KxlError, match="table not found"):
        read_table(tmp_path / "nope.parquet")


def test_failed_write_leaves_nothing_under_final_name(tmp_path: Path) -> None:
    final = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_write_json_is_sorted_and_stable(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "a.json").read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'


def test_atomic_dir_replaces_a_full_folder_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "new.txt").write_text("half")
        raise RuntimeError("crash mid-write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in final.iterdir()] == ["old.txt"]
    with atomic_dir(final) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in final.iterdir()] == ["new.txt"]


def test_atomic_symlink_repoints_an_existing_link(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("A")
    b.write_text("B")
    link = tmp_path / "sub" / "link"
    atomic_symlink(a, link)
    atomic_symlink(b, link)
    assert link.read_text() == "B" and os.readlink(link) == str(b)
    assert [p.name for p in link.parent.iterdir()] == ["link"]


def test_read_columns_reads_only_the_needed_ones_and_names_file_and_column(
        tmp_path: Path) -> None:
    path = tmp_path / "up.parquet"
    pl.DataFrame({"id": [3, 1], "name": ["c", "a"], "extra": [0.5, 1.5]}).write_parquet(path)
    assert read_columns(path, {"name": pl.String}).to_dict(as_series=False) == {"name": ["c", "a"]}
    with pytest.raises(KxlError) as exc:
        read_columns(path, {"id": pl.Int64, "file": pl.String})
    assert str(exc.value) == (f"{path}: missing column 'file' (docs/formats.md); "
                              "have ['id', 'name', 'extra']")
    with pytest.raises(KxlError, match=r"up.parquet: column 'id' has dtype Int64, expected Int32"):
        read_columns(path, {"id": pl.Int32})


def test_require_columns_uses_the_same_message_for_a_frame() -> None:
    df = pl.DataFrame({"id": [1]})
    with pytest.raises(KxlError) as exc:
        require_columns(df, {"file": pl.String}, "dataset.parquet")
    assert str(exc.value) == "dataset.parquet: missing column 'file' (docs/formats.md); have ['id']"
