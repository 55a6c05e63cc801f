"""kxl extract-images: safe tar reading, validation, drop reasons and the output tables."""

from __future__ import annotations

import io
import tarfile
import tracemalloc
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from images_fixtures import make_kept, make_tags, png_bytes, synth_cfg, write_shard
from PIL import Image

from kxl.errors import KxlError
from kxl.hashing import sha256_bytes
from kxl.images.extract import Limits, extract_images, validate_image
from kxl.images.synth import bomb_png, synth_shards

LIMITS = Limits(max_pixels=1 << 20, max_file_bytes=1 << 20)


def run(ids: list[int], shards: Path, out: Path, on_bad_shard: str = "error", workers: int = 1,
        limits: Limits = LIMITS) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    return extract_images(np.array(ids, dtype=np.int64), shards, out, "files", limits,
                          on_bad_shard, workers)


def reasons(dropped: pl.DataFrame) -> dict[int, str]:
    return dict(dropped.select("id", "reason").iter_rows())


def all_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()}


def test_unsafe_members_are_never_written(tmp_path: Path) -> None:
    shards, out = tmp_path / "shards", tmp_path / "deep" / "out"
    shards.mkdir()
    good = png_bytes()
    write_shard(shards / "data-0001.tar", [
        ("../1001.png", good, {}),
        ("/tmp/2001.png", good, {}),
        ("3001.png", b"", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}),
        ("5001.png", good, {}),
        ("4001.png", b"", {"type": tarfile.LNKTYPE, "linkname": "5001.png"}),
        ("6001.png", b"", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}),
        ("7001.png", b"", {"type": tarfile.DIRTYPE}),
        ("sub/8001.png", good, {}),
        ("9001.png", b"", {"type": tarfile.FIFOTYPE}),
        ("01001.png", good, {}),
        ("11001.gif", good, {}),
    ])
    before = all_files(tmp_path)
    ids = [1001, 2001, 3001, 4001, 5001, 6001, 7001, 8001, 9001, 11001]
    dataset, dropped, rejected = run(ids, shards, out)
    assert dataset["id"].to_list() == [5001]
    assert all_files(tmp_path) - before == {"deep/out/0001/5001.png"}
    assert set(reasons(dropped).values()) == {"missing_file"} and len(dropped) == len(ids) - 1
    detail = dict(dropped.select("id", "detail").iter_rows())
    assert "unsafe name '../1001.png'" in detail[1001]
    assert "symlink '3001.png' -> '/etc/passwd'" in detail[3001]
    assert "hardlink '4001.png'" in detail[4001]
    assert "not a regular file" in detail[6001] and "not a regular file" in detail[9001]
    assert "sub/8001.png" in detail[8001]
    assert len(rejected) == 10


def test_decompression_bomb_is_refused_on_its_header(tmp_path: Path) -> None:
    tracemalloc.start()
    verdict = validate_image(bomb_png(100_000), LIMITS)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert verdict[0] == "too_large"
    assert peak < 8 << 20  # 100k x 100k RGB would be 30 GB
    # Under Pillow's own guard but over max_pixels: our header check names the limit.
    reason, detail = validate_image(bomb_png(2000), LIMITS)
    assert reason == "too_large" and "2000x2000 = 4000000 pixels > max_pixels" in detail


def test_each_drop_reason(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    full = png_bytes(40, 30)
    jpeg = io.BytesIO()
    Image.new("RGB", (40, 30), (1, 2, 3)).save(jpeg, format="JPEG")
    gif = io.BytesIO()
    Image.new("P", (4, 4)).save(gif, format="GIF")
    write_shard(shards / "data-0002.tar", [
        ("1002.png", full, {}),
        ("2002.png", full[: len(full) // 2], {}),
        ("3002.jpg", jpeg.getvalue()[:200], {}),
        ("4002.webp", b"", {}),
        ("5002.png", bomb_png(), {}),
        ("6002.png", b"\0" * (LIMITS.max_file_bytes + 1), {}),
        ("7002.jpg", b"not an image at all", {}),
        ("8002.png", gif.getvalue(), {}),
        ("10002.jpg", jpeg.getvalue(), {}),
        ("10002.png", full, {}),  # a second member for the same id: the first wins
    ])
    ids = [1002, 2002, 3002, 4002, 5002, 6002, 7002, 8002, 9002, 10002]
    dataset, dropped, _ = run(ids, shards, tmp_path / "out")
    assert reasons(dropped) == {
        2002: "corrupt_image", 3002: "corrupt_image", 4002: "corrupt_image", 5002: "too_large",
        6002: "too_large", 7002: "corrupt_image", 8002: "corrupt_image", 9002: "missing_file",
    }
    assert dataset.rows() == [
        (1002, "files/0002/1002.png", 40, 30, sha256_bytes(full)),
        (10002, "files/0002/10002.jpg", 40, 30, sha256_bytes(jpeg.getvalue())),
    ]
    assert (tmp_path / "out/0002/10002.jpg").read_bytes() == jpeg.getvalue()


def test_not_a_tar_is_one_clear_error_or_drops_that_shard(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "data-0003.tar").write_bytes(b"this is not a tar archive" * 40)
    write_shard(shards / "data-0004.tar", [("1004.png", png_bytes(), {})])
    with pytest.raises(KxlError, match=r"shard data-0003.tar: not a readable tar.*on_bad_shard"):
        run([1003, 1004], shards, tmp_path / "out")
    # a tar cut short in the middle of a member is a bad shard too, not a bad image
    whole = write_shard(tmp_path / "t.tar", [("1005.png", png_bytes(64, 64) * 8, {})])
    (shards / "data-0005.tar").write_bytes(whole.read_bytes()[:1500])
    dataset, dropped, _ = run([1003, 2003, 1004, 1005], shards, tmp_path / "out",
                              on_bad_shard="drop")
    assert reasons(dropped) == {1003: "corrupt_shard", 2003: "corrupt_shard",
                                1005: "corrupt_shard"}
    assert dataset["id"].to_list() == [1004]
    assert all_files(tmp_path / "out") == {"0004/1004.png"}


def test_a_needed_shard_without_any_file_is_an_error(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "data-0004.tar", [("1004.png", png_bytes(), {})])
    with pytest.raises(KxlError, match=r"NNNN % 1000 == 5 for manifest id 1005"):
        run([1004, 1005], shards, tmp_path / "out")


def test_data_1xxx_files_serve_the_same_shard(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "data-0006.tar", [("1006.webp", png_bytes(), {})])
    write_shard(shards / "data-1006.tar", [("6000006.webp", png_bytes(3, 5), {})])
    dataset, dropped, _ = run([1006, 6000006], shards, tmp_path / "out")
    assert dropped.is_empty()
    assert dataset.select("id", "width", "height").rows() == [(1006, 8, 6), (6000006, 3, 5)]


def test_synthetic_round_trip_partitions_the_manifest(tmp_path: Path) -> None:
    kept = make_kept()
    cfg = synth_cfg(n_missing=2, n_truncated=2, n_zero_byte=1, n_oversized=1)
    synth_shards(kept, make_tags(), cfg, tmp_path / "shards")
    dataset, dropped, rejected = run(kept["id"].to_list(), tmp_path / "shards", tmp_path / "out")
    assert dropped["reason"].value_counts(sort=True).sort("reason").rows() == [
        ("corrupt_image", 3), ("missing_file", 2), ("too_large", 1),
    ]
    assert sorted(dataset["id"].to_list() + dropped["id"].to_list()) == kept["id"].to_list()
    assert dataset["id"].is_sorted() and dropped["id"].is_sorted() and not rejected
    for _, file, w, h, sha in dataset.iter_rows():
        data = (tmp_path / "out" / file.removeprefix("files/")).read_bytes()
        assert sha == sha256_bytes(data)
        with Image.open(io.BytesIO(data)) as im:
            assert im.size == (w, h) and max(w, h) <= 64


def test_worker_processes_give_the_same_tables(tmp_path: Path) -> None:
    kept = make_kept(40)
    synth_shards(kept, make_tags(), synth_cfg(n_truncated=1), tmp_path / "shards")
    one = run(kept["id"].to_list(), tmp_path / "shards", tmp_path / "a", workers=1)
    two = run(kept["id"].to_list(), tmp_path / "shards", tmp_path / "b", workers=2)
    assert one[0].equals(two[0]) and one[1].equals(two[1])
    assert all_files(tmp_path / "a") == all_files(tmp_path / "b")


def test_drop_details_are_stable_text(tmp_path: Path) -> None:
    """A GIF stored as .png: Pillow's error names the BytesIO by its memory address, which made
    two identical extractions write different dropped.parquet files (issue 21)."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="GIF")
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "data-0001.tar", [("1001.png", buf.getvalue(), {}),
                                           ("2001.png", b"\x89PNG\r\n\x1a\n" + b"x" * 40, {})])
    tables = []
    for name in ("a", "b"):
        _, dropped, _ = run([1001, 2001], shards, tmp_path / name)
        tables.append(dropped.sort("id"))
    assert reasons(tables[0]) == {1001: "corrupt_image", 2001: "corrupt_image"}
    assert tables[0].equals(tables[1])
    details = tables[0]["detail"].to_list()
    assert details[0] == "not a readable PNG/JPEG/WEBP image"
    assert not any("0x" in d or "object at" in d for d in details), details
