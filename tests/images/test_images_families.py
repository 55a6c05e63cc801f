"""Shard families: the HF dataset's data-0XXX/data-1XXX shards plus its update shards."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from images_fixtures import png_bytes, write_shard

from kxl.cli import main
from kxl.config import from_dict
from kxl.errors import KxlError
from kxl.hashing import sha256_bytes
from kxl.images import extract as extract_mod
from kxl.images.config import HuggingfaceImages, ImagesConfig, ShardFamily
from kxl.images.extract import Limits, extract_images
from kxl.images.families import check_families, write_index
from kxl.images.fetch import remote_files
from kxl.tables import write_table

ROOT = Path(__file__).resolve().parents[2]
LIMITS = Limits(max_pixels=1 << 20, max_file_bytes=1 << 20)
ORIGINAL = ShardFamily("original", "images/data-{shard:04d}.tar", 1000)
RECENT = ShardFamily("recent", "images/data-1{shard:03d}.tar", 1000)
UPDATE = ShardFamily("update-20240319", "updates/20240319/data-{shard}.tar", 10)
HF = HuggingfaceImages("KBlueLeaf/danbooru2023-webp-4Mpixel", "main", [ORIGINAL, RECENT, UPDATE])


def test_remote_files_of_a_few_ids_across_families() -> None:
    ids = np.array([7, 1007, 7_145_703, 7_349_999, 6_858_397])
    # id % 1000: 7, 7, 703, 999, 397; id % 10: 7, 7, 3, 9, 7
    assert remote_files(ids, HF) == [
        ("images/data-0007.tar", "original/data-0007.tar"),
        ("images/data-0397.tar", "original/data-0397.tar"),
        ("images/data-0703.tar", "original/data-0703.tar"),
        ("images/data-0999.tar", "original/data-0999.tar"),
        ("images/data-1007.tar", "recent/data-1007.tar"),
        ("images/data-1397.tar", "recent/data-1397.tar"),
        ("images/data-1703.tar", "recent/data-1703.tar"),
        ("images/data-1999.tar", "recent/data-1999.tar"),
        ("updates/20240319/data-3.tar", "update-20240319/data-3.tar"),
        ("updates/20240319/data-7.tar", "update-20240319/data-7.tar"),
        ("updates/20240319/data-9.tar", "update-20240319/data-9.tar"),
    ]


@pytest.mark.parametrize(("family", "key", "says"), [
    (ShardFamily("u", "updates/data-{id}.tar", 10), "[1].pattern", "uses field(s) ['id']"),
    (ShardFamily("u", "updates/data-{shard:q}.tar", 10), "[1].pattern", "cannot be formatted"),
    (ShardFamily("u", "updates/data-{shard", 10), "[1].pattern", "not a format string"),
    (ShardFamily("u", "../data-{shard}.tar", 10), "[1].pattern", "relative repo path"),
    (ShardFamily("u", "/data-{shard}.tar", 10), "[1].pattern", "relative repo path"),
    (ShardFamily("u", "updates/data-{shard}.zip", 10), "[1].pattern", "file name matches"),
    (ShardFamily("u", "updates/data.tar", 10), "[1].pattern", "for shards 0 and 1"),
    (ShardFamily("u", "updates/{shard}/data.tar", 10), "[1].pattern", "for shards 0 and 1"),
    (ShardFamily("u", "images/data-{shard:04d}.tar", 10), "[1].pattern", "already a file of"),
    (ShardFamily("original", "u/data-{shard}.tar", 10), "[1].name", "earlier family"),
    (ShardFamily("Up date", "u/data-{shard}.tar", 10), "[1].name", "must match"),
    (ShardFamily("u", "u/data-{shard}.tar", 0), "[1].modulus", "not in 1..100000"),
])
def test_a_bad_family_is_one_line_naming_its_key(family: ShardFamily, key: str,
                                                 says: str) -> None:
    where = "config images.huggingface.families"
    with pytest.raises(KxlError) as err:
        check_families([ORIGINAL, family], where)
    msg = str(err.value)
    assert msg.startswith(where + key + ":") and says in msg and "\n" not in msg


def test_fetch_with_a_bad_pattern_fails_before_any_download(tmp_path: Path, capsys) -> None:
    kept = pl.DataFrame({"id": [7, 17]}, schema={"id": pl.Int64})
    write_table(kept, tmp_path / "kept.parquet", kept.schema)
    cfg = {"repo_id": "r/x", "revision": "main", "families": [
        {"name": "original", "pattern": "images/data-{shard:04d}.tar", "modulus": 1000},
        {"name": "update", "pattern": "updates/data-{post}.tar", "modulus": 10}]}
    assert main(["fetch-images", "--kept", str(tmp_path / "kept.parquet"), "--config-json",
                 json.dumps(cfg), "--out-dir", str(tmp_path / "shards")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "images.huggingface.families[1].pattern" in err
    assert not (tmp_path / "shards").exists()


@pytest.mark.parametrize("name", ["config.yaml", "epsilon.yaml"])
def test_shipped_images_sections_validate_and_parse(name: str) -> None:
    import jsonschema

    section = yaml.safe_load((ROOT / "config" / name).read_text())["images"]
    schema = yaml.safe_load((ROOT / "config/schema.yaml").read_text())
    jsonschema.validate(section, schema["properties"]["images"])
    cfg = from_dict(ImagesConfig, section, "images")
    check_families(cfg.huggingface.families, "images.huggingface.families")
    if name == "epsilon.yaml":  # the full run reads the update shards too
        assert cfg.huggingface.families == [ORIGINAL, RECENT, UPDATE]


def fetched(root: Path, files: dict[str, list[tuple[str, bytes, dict]]]) -> Path:
    """A shards folder as fetch-images leaves it (real files instead of symlinks)."""
    root.mkdir()
    write_index(root, HF)
    for rel, members in files.items():
        (root / rel).parent.mkdir(exist_ok=True)
        write_shard(root / rel, members)
    return root


RED, BLUE = png_bytes(8, 6, (200, 0, 0)), png_bytes(3, 5, (0, 0, 200))
LINK = {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}
IDS = [1007, 2007, 3007, 4007, 6007, 7_145_707, 7_145_717, 5003]


def layout(root: Path, update7: list[tuple[str, bytes, dict]] | None = None) -> Path:
    return fetched(root, {
        "original/data-0003.tar": [("1003.webp", RED, {})],
        "original/data-0007.tar": [(f"{i}.webp", RED, {}) for i in (1007, 2007, 3007, 4007, 6007)],
        "original/data-0707.tar": [("1707.webp", RED, {})],
        "original/data-0717.tar": [],
        "recent/data-1003.tar": [],
        "recent/data-1007.tar": [("3007.webp", BLUE, {})],
        "recent/data-1707.tar": [],
        "recent/data-1717.tar": [],
        "update-20240319/data-3.tar": [("7145703.webp", RED, {})],
        "update-20240319/data-7.tar": update7 if update7 is not None else [
            ("7145707.webp", BLUE, {}), ("2007.webp", BLUE, {}), ("4007.webp", b"", {}),
            ("6007.webp", b"", LINK), ("7145717.webp", RED, {})],
    })


def test_ids_are_found_in_every_covering_file_and_the_last_family_wins(tmp_path: Path,
                                                                       monkeypatch) -> None:
    shards = layout(tmp_path / "shards")
    opened: list[str] = []
    read: list[tuple[str, str]] = []
    members, read_member = extract_mod._members, extract_mod._read

    def spy_members(path: Path):
        opened.append(path.relative_to(shards).as_posix())
        return members(path)

    def spy_read(tf: tarfile.TarFile, m: tarfile.TarInfo) -> bytes:
        read.append((Path(str(tf.name)).relative_to(shards.resolve()).as_posix(), m.name))
        return read_member(tf, m)

    monkeypatch.setattr(extract_mod, "_members", spy_members)
    monkeypatch.setattr(extract_mod, "_read", spy_read)
    dataset, dropped, rejected = extract_images(np.array(IDS), shards, tmp_path / "out", "files",
                                                LIMITS, "error")
    assert dataset.rows() == [
        (1007, "files/0007/1007.webp", 8, 6, sha256_bytes(RED)),  # original only
        (2007, "files/0007/2007.webp", 3, 5, sha256_bytes(BLUE)),  # update beats original
        (3007, "files/0007/3007.webp", 3, 5, sha256_bytes(BLUE)),  # recent beats original
        (6007, "files/0007/6007.webp", 8, 6, sha256_bytes(RED)),  # update's member rejected
        (7_145_707, "files/0707/7145707.webp", 3, 5, sha256_bytes(BLUE)),  # update only
        (7_145_717, "files/0717/7145717.webp", 8, 6, sha256_bytes(RED)),
    ]
    assert (tmp_path / "out/0007/2007.webp").read_bytes() == BLUE
    assert dropped.rows() == [
        (4007, "corrupt_image", "zero-byte file"),  # the winner is bad: no older copy instead
        (5003, "missing_file", "no 5003.* member in original/data-0003.tar, "
                               "recent/data-1003.tar, update-20240319/data-3.tar"),
    ]
    assert rejected == ["update-20240319/data-7.tar: symlink '6007.webp' -> '/etc/passwd'"]
    # every covering file's headers are scanned once; member data only of winners, once each
    assert sorted(opened) == sorted(
        ["original/data-0003.tar", "recent/data-1003.tar", "update-20240319/data-3.tar",
         "original/data-0007.tar", "recent/data-1007.tar", "update-20240319/data-7.tar",
         "original/data-0707.tar", "recent/data-1707.tar", "original/data-0717.tar",
         "recent/data-1717.tar"]
        + ["original/data-0007.tar", "recent/data-1007.tar", "update-20240319/data-7.tar"])
    assert sorted(read) == [
        ("original/data-0007.tar", "1007.webp"), ("original/data-0007.tar", "6007.webp"),
        ("recent/data-1007.tar", "3007.webp"), ("update-20240319/data-7.tar", "2007.webp"),
        ("update-20240319/data-7.tar", "4007.webp"), ("update-20240319/data-7.tar", "7145707.webp"),
        ("update-20240319/data-7.tar", "7145717.webp")]


def test_worker_processes_give_the_same_tables_with_families(tmp_path: Path) -> None:
    shards = layout(tmp_path / "shards")
    one = extract_images(np.array(IDS), shards, tmp_path / "a", "files", LIMITS, "error", 1)
    two = extract_images(np.array(IDS), shards, tmp_path / "b", "files", LIMITS, "error", 2)
    assert one[0].equals(two[0]) and one[1].equals(two[1]) and one[2] == two[2]


def test_an_unreadable_update_shard_stops_or_drops_every_id_it_covers(tmp_path: Path) -> None:
    shards = layout(tmp_path / "shards", update7=[])
    (shards / "update-20240319/data-7.tar").write_bytes(b"not a tar" * 100)
    with pytest.raises(KxlError, match=r"shard update-20240319/data-7.tar: not a readable tar"):
        extract_images(np.array(IDS), shards, tmp_path / "out", "files", LIMITS, "error")
    dataset, dropped, _ = extract_images(np.array(IDS), shards, tmp_path / "out", "files", LIMITS,
                                         "drop")
    # it might have held a newer copy of any id it covers, so none of them is kept
    assert dict(dropped.select("id", "reason").iter_rows()) == {
        **{i: "corrupt_shard" for i in IDS if i % 10 == 7}, 5003: "missing_file"}
    assert dataset.is_empty() and not list((tmp_path / "out").rglob("*.webp"))


def test_a_needed_family_file_that_is_absent_is_an_error(tmp_path: Path) -> None:
    shards = layout(tmp_path / "shards")
    (shards / "update-20240319/data-3.tar").unlink()
    with pytest.raises(KxlError, match=r"no update-20240319/data-3.tar \(family update-20240319, "
                                       r"id % 10 == 3\) for manifest id 5003; re-run fetch"):
        extract_images(np.array(IDS), shards, tmp_path / "out", "files", LIMITS, "error")
    (shards / "families.json").write_text('{"families": [{"name": "x", "pattern": "{x}.tar", '
                                          '"modulus": 1}]}')
    with pytest.raises(KxlError, match=r"families.json families\[0\].pattern: .* \['x'\]"):
        extract_images(np.array(IDS), shards, tmp_path / "out", "files", LIMITS, "error")


def test_fetch_then_extract_an_update_shard_offline(tmp_path: Path) -> None:
    from test_images_cli import fetch, hf_cache

    ids = [1007, 7_145_707]
    kept = pl.DataFrame({"id": ids}, schema={"id": pl.Int64})
    write_table(kept, tmp_path / "kept.parquet", kept.schema)
    tars = {"images/data-0007.tar": [("1007.webp", RED, {})], "images/data-1007.tar": [],
            "images/data-0707.tar": [], "images/data-1707.tar": [],
            "updates/20240319/data-7.tar": [("7145707.webp", BLUE, {}), ("1007.webp", BLUE, {})],
            "updates/20240319/data-3.tar": [("7145703.webp", RED, {})]}
    files = {name: write_shard(tmp_path / f"t{i}.tar", m).read_bytes()
             for i, (name, m) in enumerate(tars.items())}
    cfg = json.loads(json.dumps(HF, default=vars))
    proc = fetch(tmp_path, hf_cache(tmp_path / "hub", files), tmp_path / "kept.parquet", cfg)
    assert proc.returncode == 0, proc.stderr
    shards = tmp_path / "images/shards"
    assert sorted(p.relative_to(shards).as_posix() for p in shards.rglob("*")) == [
        "families.json", "original", "original/data-0007.tar", "original/data-0707.tar",
        "recent", "recent/data-1007.tar", "recent/data-1707.tar", "update-20240319",
        "update-20240319/data-7.tar"]
    dataset, dropped, _ = extract_images(np.array(ids), shards, tmp_path / "out", "files", LIMITS,
                                         "error")
    assert dropped.is_empty()
    assert dataset.select("id", "width", "height").rows() == [(1007, 3, 5), (7_145_707, 3, 5)]


def test_single_family_layout_takes_a_duplicate_id_from_the_last_file_by_name(
        tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "data-0006.tar", [("1006.webp", RED, {}), ("2006.webp", RED, {})])
    write_shard(shards / "data-1006.tar", [("1006.webp", BLUE, {})])
    dataset, dropped, _ = extract_images(np.array([2006, 1006, 3006]), shards, tmp_path / "out",
                                         "files", LIMITS, "error")
    assert dataset.select("id", "width").rows() == [(1006, 3), (2006, 8)]
    assert dropped.rows() == [
        (3006, "missing_file", "no 3006.* member in data-0006.tar, data-1006.tar")]
