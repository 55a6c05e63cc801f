"""The images CLIs: synth -> extract tables and provenance; fetch from a local HF cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from images_fixtures import make_kept, make_tags, png_bytes, write_shard

from kxl.cli import main
from kxl.images.extract import DATASET_SCHEMA, DROPPED_SCHEMA
from kxl.provenance import record_path
from kxl.tables import read_table, write_table

KXL = str(Path(sys.executable).parent / "kxl")
SYNTH = {"seed": 0, "max_side": 64, "n_missing": 1, "n_truncated": 1, "n_zero_byte": 1,
         "n_oversized": 1}
ORIGINAL = {"name": "original", "pattern": "images/data-{shard:04d}.tar", "modulus": 1000}
RECENT = {"name": "recent", "pattern": "images/data-1{shard:03d}.tar", "modulus": 1000}
HF = {"repo_id": "KBlueLeaf/danbooru2023-webp-4Mpixel", "revision": "main",
      "families": [ORIGINAL, RECENT]}
IMAGES = {"max_pixels": 1 << 20, "max_file_bytes": 1 << 24, "on_bad_shard": "error",
          "synthetic": SYNTH, "huggingface": HF}


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    paths = {"kept": tmp_path / "manifest/kept.parquet", "tags": tmp_path / "metadata/tags.parquet"}
    kept = make_kept(30)
    write_table(kept, paths["kept"], kept.schema)
    write_table(make_tags(), paths["tags"], make_tags().schema)
    return paths


def test_synth_then_extract(tmp_path: Path, inputs: dict[str, Path], capsys) -> None:
    img = tmp_path / "images"
    assert main(["synth-images", "--kept", str(inputs["kept"]), "--tags", str(inputs["tags"]),
                 "--config-json", json.dumps(SYNTH), "--out-dir", str(img / "shards")]) == 0
    assert main(["extract-images", "--kept", str(inputs["kept"]), "--shards-dir",
                 str(img / "shards"), "--config-json", json.dumps(IMAGES), "--out-dir",
                 str(img / "files"), "--dataset", str(img / "dataset.parquet"),
                 "--dropped", str(img / "dropped.parquet")]) == 0
    dataset = read_table(img / "dataset.parquet", DATASET_SCHEMA)
    dropped = read_table(img / "dropped.parquet", DROPPED_SCHEMA)
    assert dataset.height + dropped.height == 30 and dropped.height == 4
    assert all((img / f).is_file() for f in dataset["file"])  # relative to images/
    for out in ("shards", "files", "dataset.parquet", "dropped.parquet"):
        assert record_path(img / out).is_file(), out
    assert not [p for p in img.iterdir() if ".tmp-" in p.name]
    assert "kept 26 of 30" in capsys.readouterr().out


def test_bad_config_is_one_line(tmp_path: Path, inputs: dict[str, Path], capsys) -> None:
    bad = {**SYNTH, "colour": "red"}
    assert main(["synth-images", "--kept", str(inputs["kept"]), "--tags", str(inputs["tags"]),
                 "--config-json", json.dumps(bad), "--out-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown key(s) ['colour']" in err
    assert not (tmp_path / "s").exists()


def hf_cache(root: Path, files: dict[str, bytes], commit: str = "a" * 40) -> Path:
    """A hub cache as huggingface_hub lays it out: refs/main -> snapshots/<commit>/<path>."""
    repo = root / "datasets--KBlueLeaf--danbooru2023-webp-4Mpixel"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs/main").write_text(commit)
    for name, data in files.items():
        p = repo / "snapshots" / commit / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def shard_bytes(tmp_path: Path, name: str, pid: int) -> bytes:
    return write_shard(tmp_path / name, [(f"{pid}.webp", png_bytes(), {})]).read_bytes()


def fetch(tmp_path: Path, cache: Path, kept: Path, cfg: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf-home")}
    return subprocess.run(
        [KXL, "fetch-images", "--kept", str(kept), "--config-json", json.dumps(cfg),
         "--out-dir", str(tmp_path / "images/shards")],
        env=env, capture_output=True, text=True, cwd=tmp_path,
    )


def test_fetch_links_only_the_needed_shards_offline(tmp_path: Path) -> None:
    kept = make_kept(3).with_columns(id=pl.Series([1007, 2007, 6000008]))
    write_table(kept, tmp_path / "kept.parquet", kept.schema)
    files = {f"images/data-{n}.tar": shard_bytes(tmp_path, f"s{n}", pid)
             for n, pid in (("0007", 1007), ("1007", 2007), ("0008", 8), ("1008", 6000008),
                            ("0009", 9), ("1009", 6000009))}
    cache = hf_cache(tmp_path / "hub", files)
    proc = fetch(tmp_path, cache, tmp_path / "kept.parquet", HF)
    assert proc.returncode == 0, proc.stderr
    shards = tmp_path / "images/shards"
    links = sorted(p.relative_to(shards).as_posix() for p in shards.rglob("*.tar"))
    assert links == ["original/data-0007.tar", "original/data-0008.tar",
                     "recent/data-1007.tar", "recent/data-1008.tar"]
    assert all(p.is_symlink() and p.read_bytes() == files[f"images/{p.name}"]
               for p in shards.rglob("*.tar"))
    index = json.loads((shards / "families.json").read_text())
    assert index["families"] == [ORIGINAL, RECENT]
    # `main` is a branch: the commit it resolved to is recorded and the user told to pin it
    assert index["commit"] == "a" * 40
    assert f"resolved to {'a' * 40}" in proc.stdout
    # then extraction reads them like synthetic shards
    assert main(["extract-images", "--kept", str(tmp_path / "kept.parquet"), "--shards-dir",
                 str(shards), "--config-json", json.dumps(IMAGES), "--out-dir",
                 str(tmp_path / "images/files"), "--dataset", str(tmp_path / "images/d.parquet"),
                 "--dropped", str(tmp_path / "images/x.parquet")]) == 0
    dataset = pl.read_parquet(tmp_path / "images/d.parquet")
    assert dataset["id"].to_list() == [1007, 2007, 6000008]
    assert pl.read_parquet(tmp_path / "images/x.parquet")["reason"].to_list() == []


def test_fetch_pinned_commit_and_missing_file(tmp_path: Path) -> None:
    kept = make_kept(1).with_columns(id=pl.Series([1007]))
    write_table(kept, tmp_path / "kept.parquet", kept.schema)
    commit = "b" * 40
    cache = hf_cache(tmp_path / "hub", {"images/data-0007.tar": shard_bytes(tmp_path, "s", 1007)},
                     commit)
    ok = fetch(tmp_path, cache, tmp_path / "kept.parquet",
               {**HF, "revision": commit, "families": [ORIGINAL]})
    assert ok.returncode == 0, ok.stderr
    proc = fetch(tmp_path, cache, tmp_path / "kept.parquet", HF)  # data-1007.tar not cached
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "cannot get images/data-1007.tar" in last and "HF_HUB_CACHE" in last
    assert not [p for p in (tmp_path / "images").iterdir() if ".tmp-" in p.name]


def test_shards_from_two_commits_are_refused(tmp_path: Path) -> None:
    from kxl.config import from_dict
    from kxl.errors import KxlError
    from kxl.images.config import HuggingfaceImages
    from kxl.images.fetch import resolved_commit, snapshot_commit

    snap = tmp_path / "datasets--KBlueLeaf--danbooru2023-webp-4Mpixel/snapshots"
    a, b = "a" * 40, "b" * 40
    assert snapshot_commit(snap / a / "images/data-0007.tar") == a
    with pytest.raises(KxlError, match="not inside an HF cache"):
        snapshot_commit(tmp_path / "data-0007.tar")
    cfg = from_dict(HuggingfaceImages, HF, "images.huggingface")
    one = {"images/data-0007.tar": snap / a / "images/data-0007.tar",
           "images/data-1007.tar": snap / a / "images/data-1007.tar"}
    assert resolved_commit(one, cfg) == a
    two = {**one, "images/data-0008.tar": snap / b / "images/data-0008.tar"}
    with pytest.raises(KxlError, match=f"data-0008.tar from {b}; the revision moved"):
        resolved_commit(two, cfg)
